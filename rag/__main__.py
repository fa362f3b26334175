"""`python -m rag …`: the RAG pipeline's command line.

`corpus` reads and checks a Wikipedia corpus (this file); `ingest`, `search`, `ask` and `bench` live in
`rag/commands.py`. Each subcommand registers its parser and sets `func`.
"""
from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

from models.errors import run_cli

SKIP_LABELS = {"redirect": "redirecionamentos", "namespace": "fora do domínio principal",
               "disambiguation": "desambiguações", "empty": "vazios", "malformed": "malformados"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m rag", description="RAG em português sobre a Wikipédia.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMANDO")
    add_corpus_command(sub)
    from .commands import add_rag_commands

    add_rag_commands(sub)
    return parser


def add_corpus_command(subparsers) -> None:
    p = subparsers.add_parser(
        "corpus", help="lê um corpus (parquet, JSONL, dump XML ou dataset do Hub) e resume ou verifica",
        description="Lê artigos {id, url, title, text} de shards .parquet (wikimedia/wikipedia), .jsonl "
                    "(inclusive wikiextractor --json, .gz/.bz2), dump ptwiki-*-pages-articles.xml(.bz2) "
                    "ou org/dataset:config do Hugging Face Hub (só online), e mostra quantos artigos e palavras há.")
    p.add_argument("source", metavar="SRC", help="arquivo, diretório ou org/dataset:config (ex.: data/wiki_pt)")
    p.add_argument("--json", action="store_true", help='imprime {"articles", "skipped", "words"} em JSON')
    p.add_argument("--skip-bad", action="store_true", help="ignora linhas/grupos malformados em vez de parar")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="para depois de N artigos")
    p.add_argument("--check", action="store_true",
                   help="verifica o corpus publicado e as perguntas (esquema, ids, tamanhos, evidências, vazamento)")
    p.add_argument("--qa", default=None, metavar="DIR", help="diretório das perguntas para --check (padrão: SRC/../qa)")
    p.set_defaults(func=cmd_corpus)


def cmd_corpus(args) -> int:
    if args.check:
        return _cmd_check(args)
    from .corpus import CorpusStats, iter_articles

    stats = CorpusStats()
    show_progress = not args.json and sys.stderr.isatty()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        articles = iter_articles(args.source, skip_bad=args.skip_bad, stats=stats, limit=args.limit)
        if show_progress:
            from tqdm import tqdm

            articles = tqdm(articles, desc="lendo", unit=" artigos", file=sys.stderr)
        for _ in articles:
            pass
    for w in caught:
        print(f"aviso: {w.message}", file=sys.stderr)

    summary = {"articles": stats.articles, "skipped": dict(sorted(stats.skipped.items())), "words": stats.words}
    if stats.truncated:
        summary["truncated"] = True
    if args.json:
        print(json.dumps(summary, ensure_ascii=False))
        return 0
    print(f"{_thousands(stats.articles)} artigos, {_thousands(stats.words)} palavras")
    if stats.skipped:
        parts = ", ".join(f"{SKIP_LABELS.get(k, k)}: {v}" for k, v in sorted(stats.skipped.items()))
        print(f"ignorados: {parts}")
    for file, where, error in stats.bad_lines[:5]:
        print(f"  malformado: {file} ({where}): {error}")
    if stats.truncated:
        print("atenção: a fonte termina no meio; só os artigos completos foram lidos")
    return 0


def _thousands(n: int) -> str:
    return f"{n:,}".replace(",", ".")  # pt-BR digit grouping: 12.345


def _cmd_check(args) -> int:
    from .checks import check_corpus

    qa_dir = Path(args.qa) if args.qa else Path(args.source).parent / "qa"
    problems = check_corpus(args.source, qa_dir)
    if args.json:
        print(json.dumps({"problems": problems}, ensure_ascii=False))
    elif problems:
        for problem in problems:
            print(f"- {problem}")
        print(f"{len(problems)} problema(s) em {args.source} / {qa_dir}")
    else:
        print(f"ok: nenhum problema em {args.source} e {qa_dir}")
    return 1 if problems else 0


def _dispatch(argv) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


def main(argv=None) -> int:
    """Entry point: a ProjectError becomes `erro: …` on stderr and exit code 2, without a traceback."""
    return run_cli(_dispatch, argv)


if __name__ == "__main__":
    sys.exit(main())
