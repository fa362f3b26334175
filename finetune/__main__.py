"""`python -m finetune …`: prepare, train, export, run (all stages, resumable), evaluate."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from models.errors import ProjectError, run_cli


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m finetune",
                                     description="Wikipédia PT → instruções → QLoRA/LoRA → fusão → GGUF → quantização.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMANDO")

    p = sub.add_parser("prepare", help="gera o JSONL de instruções a partir do corpus e das perguntas de treino")
    p.add_argument("--corpus", default="data/wiki_pt")
    p.add_argument("--qa", default="data/qa", help="pasta com train.jsonl e test.jsonl")
    p.add_argument("-o", "--out", default="data/instructions/ptwiki.jsonl")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--phrasings", type=int, default=3, help="paráfrases por pergunta de treino")

    p = sub.add_parser("train", help="treina um adapter LoRA/QLoRA a partir de uma receita YAML")
    p.add_argument("--config", required=True)
    p.add_argument("--resume", action="store_true", help="continua do último checkpoint")
    p.add_argument("--max-steps", type=int, default=None)

    p = sub.add_parser("export", help="funde o adapter, converte para GGUF, quantiza e registra o modelo")
    p.add_argument("adapter")
    p.add_argument("--quant", default="Q4_K_M", help="tipos separados por vírgula (ex.: Q4_K_M,Q8_0)")
    p.add_argument("--name", required=True, help="nome do modelo no registro")
    p.add_argument("--base", default=None, help="modelo base (padrão: o da receita do adapter)")

    p = sub.add_parser("run", help="prepare → train → export → evaluate, retomando a etapa em que parou")
    p.add_argument("--config", required=True)
    p.add_argument("--eval-limit", type=int, default=None)
    p.add_argument("--skip-eval", action="store_true")

    p = sub.add_parser("evaluate", help="antes × depois: perguntas de teste, perguntas gerais e perplexidade")
    p.add_argument("--model", required=True)
    p.add_argument("--baseline", required=True)
    p.add_argument("--qa", default="data/qa")
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--out", default=None)
    return parser


def _eval(model, baseline, qa_dir, out, limit):
    from .data import read_jsonl
    from .evaluate import evaluate

    qa_dir = Path(qa_dir)
    general = read_jsonl(qa_dir / "general.jsonl") if (qa_dir / "general.jsonl").exists() else []
    result = evaluate(model, baseline, read_jsonl(qa_dir / "test.jsonl"), general, Path(out), limit)
    from .evaluate import render

    print(render(result))
    return result


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "prepare":
        from .data import prepare

        print(json.dumps(prepare(args.corpus, args.qa, args.out, seed=args.seed, phrasings=args.phrasings),
                         ensure_ascii=False, indent=2))
        return 0
    if args.command == "train":
        from .recipe import load_recipe
        from .train import train

        recipe = load_recipe(args.config, {"max_steps": args.max_steps})
        print(json.dumps(train(recipe, resume=args.resume), indent=2))
        return 0
    if args.command == "export":
        from .export import export

        result = export(args.adapter, [q.strip() for q in args.quant.split(",") if q.strip()], args.name, base_model=args.base)
        print(json.dumps(result, ensure_ascii=False, indent=2))
        print(list(result["outputs"].values())[0])
        return 0
    if args.command == "run":
        return _run(args)
    if args.command == "evaluate":
        _eval(args.model, args.baseline, args.qa, args.out or f"runs/eval-{args.model}", args.limit)
        return 0
    return 1


def _run(args) -> int:
    """Each stage is skipped when its output exists, so a killed run continues where it stopped."""
    from .data import prepare
    from .export import export
    from .recipe import load_recipe
    from .train import last_checkpoint, train

    recipe = load_recipe(args.config)
    data = recipe.path("data")
    if not data.exists():
        print(f"==> prepare: {data}", file=sys.stderr)
        print(json.dumps(prepare(str(recipe.path("corpus")), str(recipe.path("qa_dir")), data, seed=recipe.seed)), file=sys.stderr)
    adapter = recipe.out / "adapter"
    if not (adapter / "adapter_config.json").exists():
        resume = bool(last_checkpoint(recipe.out / "checkpoints")) if (recipe.out / "checkpoints").exists() else False
        print(f"==> train{' (retomando)' if resume else ''}: {recipe.name}", file=sys.stderr)
        train(recipe, resume=resume)
    from models.registry import all_models

    if recipe.name not in all_models() or not all_models()[recipe.name].local_path.exists():
        print("==> export", file=sys.stderr)
        export(adapter, list(recipe.export_quant), recipe.name, base_model=recipe.base_model)
    if not args.skip_eval:
        print("==> evaluate", file=sys.stderr)
        _eval(recipe.name, recipe.base_model, recipe.path("qa_dir"), recipe.out / "eval", args.eval_limit)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
