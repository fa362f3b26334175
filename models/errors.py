"""The project's single error type: a message a user can act on, shown without a traceback."""
from __future__ import annotations


class ProjectError(Exception):
    """An error caused by input or environment that the user can fix.

    `message` is user-facing (pt-BR) and fits on one line; `hint` optionally says what to run.
    CLIs print ``erro: <message>`` and exit with ``exit_code``; the app shows it in the column.
    """

    exit_code = 2

    def __init__(self, message: str, hint: str | None = None):
        self.message = message.strip()
        self.hint = hint
        super().__init__(self.one_line())

    def one_line(self) -> str:
        text = self.message.replace("\n", " ")
        return f"{text} ({self.hint})" if self.hint else text


def run_cli(main, argv=None) -> int:
    """Run a CLI entry point: ProjectError becomes `erro: …` on stderr and exit code 2; Ctrl-C exits 130."""
    import sys

    try:
        return main(argv) or 0
    except ProjectError as exc:
        print(f"erro: {exc.one_line()}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("\ninterrompido pelo usuário (o que já estava salvo foi mantido)", file=sys.stderr)
        return 130
