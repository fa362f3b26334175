"""fp32 versus bf16 mixed precision for the CPU LoRA recipe: seconds per step and loss, measured in one run.

Trains the default recipe's model and LoRA settings for a few steps on the first N examples of the shipped
instruction file, once per precision, one after the other in the same process tree (the fp32 run is the
baseline). On a CPU with AVX512-BF16 or AMX, bf16 autocast is faster; elsewhere it can be slower.

    python benchmarks/finetune_precision.py [--steps 8] [--examples 400]

Output: benchmarks/results/finetune_precision.{json,md}.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from models.errors import run_cli  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(ROOT / "finetune" / "configs" / "qwen2.5-0.5b-ptwiki.yaml"))
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--examples", type=int, default=400)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "finetune_precision"))
    args = parser.parse_args(argv)

    from finetune.recipe import load_recipe
    from finetune.train import train
    from quantize.evaluate import hardware

    base = load_recipe(args.config)
    work = Path(tempfile.mkdtemp(prefix="ft-precision-"))
    data = work / "data.jsonl"
    lines = base.path("data").read_text(encoding="utf-8").splitlines()[: args.examples]
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    rows = []
    try:
        for precision in ("fp32", "bf16"):
            recipe = load_recipe(args.config, {"precision": precision, "max_steps": args.steps, "data": str(data),
                                               "output_dir": str(work / precision), "save_steps": 10_000, "logging_steps": 2})
            s = train(recipe, progress=False)
            rows.append({k: s[k] for k in ("precision", "steps", "seconds_per_step", "tokens_per_s", "train_loss",
                                            "final_loss", "peak_rss_gb")})
    finally:
        shutil.rmtree(work, ignore_errors=True)
    fp32 = rows[0]
    for r in rows:
        r["speedup_vs_fp32"] = round(fp32["seconds_per_step"] / r["seconds_per_step"], 3)
    result = {"model": base.base_model, "batch_size": base.batch_size, "max_length": base.max_length,
              "lora_r": base.lora_r, "examples": args.examples, "hardware": hardware(), "rows": rows}
    out = Path(args.out)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2, ensure_ascii=False))
    md = [f"# fp32 vs bf16 LoRA on CPU — {base.base_model}, {args.steps} steps, batch {base.batch_size}",
          "", f"Hardware: {result['hardware'].get('cpu')} ({result['hardware'].get('cores')} cores)", "",
          "| precision | s/step | tokens/s | speed-up vs fp32 | train loss | last logged loss | peak RSS GB |",
          "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        md.append(f"| {r['precision']} | {r['seconds_per_step']} | {r['tokens_per_s']} | {r['speedup_vs_fp32']}× | "
                  f"{r['train_loss']:.4f} | {r['final_loss']:.4f} | {r['peak_rss_gb']} |")
    out.with_suffix(".md").write_text("\n".join(md) + "\n", encoding="utf-8")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
