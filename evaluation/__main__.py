"""`python -m evaluation …`: the fine-tune vs RAG study (run, report, mc) and the arena leaderboard."""
from __future__ import annotations

import argparse
import json
import sys

from models.errors import run_cli


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m evaluation",
        description="Estudo: Base vs Fine-tuned vs RAG vs Fine-tuned + RAG, em cada quantização, com intervalos de "
                    "confiança. Tudo gerado pelo llama.cpp; respostas em cache (pode parar e retomar).")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMANDO")

    def common(p):
        p.add_argument("--config", default="evaluation/configs/default.yaml", help="YAML do estudo (padrão: %(default)s)")
        p.add_argument("--limit", type=int, default=None, metavar="N", help="só as N primeiras perguntas de cada conjunto")
        p.add_argument("--sample", type=int, default=None, metavar="N",
                       help="N perguntas de cada conjunto espalhadas por ele inteiro (1 a cada len/N), sem viés de ordem; "
                            "0 = todas (sobrepõe 'sample' da configuração)")
        p.add_argument("--out", default=None, help="diretório de resultados (padrão: evaluation/results/<nome>)")
        p.add_argument("--quiet", action="store_true", help="sem barras de progresso")
        p.add_argument("--quants", default=None, metavar="Q1,Q2", help="sobrepõe as quantizações da configuração")
        p.add_argument("--variants", default=None, metavar="V1,V2", help="sobrepõe as variantes da configuração")

    p = sub.add_parser("run", help="gera (ou reaproveita) as respostas da matriz, roda a múltipla escolha e o relatório")
    common(p)
    p.add_argument("--force", action="store_true", help="refaz respostas já em cache")
    p.add_argument("--no-mc", action="store_true", help="pula a tarefa de múltipla escolha")
    p.add_argument("--judge", default=None, metavar="MODELO", help="liga o juiz LLM par a par (nome do registro)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("report", help="refaz o relatório (Markdown, JSON, PNG) a partir das respostas em cache")
    common(p)
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("mc", help="só a tarefa de múltipla escolha por log-verossimilhança")
    common(p)
    p.add_argument("--force", action="store_true")
    p.set_defaults(func=cmd_mc)

    p = sub.add_parser("arena", help="placar da Arena (Bradley–Terry com IC e Elo) a partir dos votos")
    p.add_argument("--votes", default=None, help="arquivo JSONL de votos (padrão: o do app)")
    p.set_defaults(func=cmd_arena)
    return parser


def _config(args):
    from .study import StudyConfig

    cfg = StudyConfig.load(args.config)
    if args.limit is not None:
        cfg.limit = args.limit
    if args.sample is not None:
        cfg.sample = args.sample
    if args.out:
        cfg.out = args.out
    if args.quants:
        cfg.quants = [q.strip() for q in args.quants.split(",") if q.strip()]
    if args.variants:
        cfg.variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    if getattr(args, "judge", None):
        cfg.judge = args.judge
    return cfg


def cmd_run(args) -> int:
    from .report import build_report
    from .study import run_study

    cfg = _config(args)
    counts = run_study(cfg, progress=not args.quiet, force=args.force)
    print(f"respostas: {counts['generated']} geradas, {counts['cached']} do cache (das quais {counts.get('rescored', 0)} "
          f"reavaliadas sem gerar de novo); {len(counts['skipped'])} células puladas",
          file=sys.stderr)
    if cfg.mc and not args.no_mc:
        from .study import run_mc

        run_mc(cfg, progress=not args.quiet, force=args.force)
    if cfg.judge:
        from .judge import run_judge

        run_judge(cfg, progress=not args.quiet)
    report = build_report(cfg, counts)
    for line in report["verdict"]:
        print(line)
    print(cfg.out_dir / "report.md")
    return 0


def cmd_report(args) -> int:
    from .report import build_report

    cfg = _config(args)
    report = build_report(cfg)
    for line in report["verdict"]:
        print(line)
    print(cfg.out_dir / "report.md")
    return 0


def cmd_mc(args) -> int:
    from .study import run_mc

    cfg = _config(args)
    res = run_mc(cfg, progress=not args.quiet, force=args.force)
    print(json.dumps(res, ensure_ascii=False, indent=1))
    return 0


def cmd_arena(args) -> int:
    from pathlib import Path

    from .arena import leaderboard, read_votes

    votes = read_votes(Path(args.votes) if args.votes else None)
    print(json.dumps(leaderboard(votes), ensure_ascii=False, indent=1))
    return 0


def main(argv=None) -> int:
    return run_cli(lambda a: (lambda ns: ns.func(ns))(build_parser().parse_args(a)), argv)


if __name__ == "__main__":
    sys.exit(main())
