"""Training throughput of the project's trainer (trl SFTTrainer + peft LoRA) versus a plain transformers Trainer + peft.

Both train the recipe's model, LoRA, batch, max_length, lr/scheduler, precision, seed and gradient checkpointing
on the first N examples of its instruction file for --steps steps, baseline first, each in a fresh process (own
peak RSS). The baseline renders the same prompt/completion pairs (chat template, loss on the response only),
tokenizes and truncates them as trl does, and pads with DataCollatorForSeq2Seq.

Timed the same way for both: from the end of step 1 (warm-up) to the end of the last step, so loading, dataset
preparation and the adapter save are outside. tokens/s = non-padding tokens (attention_mask sum) fed in steps
2..N / that time.

    python benchmarks/finetune_throughput.py [--steps 8] [--examples 400]

Output: benchmarks/results/finetune_throughput.{json,md}.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from models.errors import run_cli  # noqa: E402


def _probe() -> dict:
    """Patch transformers.Trainer (SFTTrainer's base too): stamp each optimizer step's end, count the tokens fed."""
    from transformers import Trainer, TrainerCallback

    stats = {"ends": [], "tokens": [], "loss_tokens": [], "cur": [0, 0]}

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            stats["ends"].append(time.perf_counter())
            stats["tokens"].append(stats["cur"][0])
            stats["loss_tokens"].append(stats["cur"][1])
            stats["cur"] = [0, 0]

    train, training_step = Trainer.train, Trainer.training_step

    def timed_train(self, *a, **k):
        self.add_callback(Clock())
        return train(self, *a, **k)

    def counted_step(self, model, inputs, *a, **k):  # once per micro-batch
        mask = inputs.get("attention_mask")
        stats["cur"][0] += int(mask.sum()) if mask is not None else inputs["input_ids"].numel()
        stats["cur"][1] += int((inputs["labels"] != -100).sum())
        return training_step(self, model, inputs, *a, **k)

    Trainer.train, Trainer.training_step = timed_train, counted_step
    return stats


def baseline(recipe) -> float:
    """Plain transformers Trainer + peft on the recipe's data and settings; returns the mean train loss."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import (AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig, DataCollatorForSeq2Seq, Trainer,
                              TrainingArguments, set_seed)

    from finetune.data import load_instruction_file
    from finetune.train import resolve_base, to_prompt_completion, use_4bit, use_bf16

    base = resolve_base(recipe, progress=False)
    tok = AutoTokenizer.from_pretrained(base)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "right"  # as trl's collator
    rows = []
    for ex in to_prompt_completion(load_instruction_file(recipe.path("data")), tok, recipe.system_prompt):
        prompt, ids = tok(ex["prompt"])["input_ids"], tok(ex["prompt"] + ex["completion"])["input_ids"]
        n = next((i for i, (a, b) in enumerate(zip(prompt, ids)) if a != b), min(len(prompt), len(ids)))
        ids, labels = ids[: recipe.max_length], ([-100] * n + ids[n:])[: recipe.max_length]
        if any(x != -100 for x in labels):  # trl drops examples left with no loss token by truncation
            rows.append({"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels})
    cuda, quant = torch.cuda.is_available(), use_4bit(recipe)
    kwargs = {"dtype": torch.bfloat16 if cuda else torch.float32}
    if quant:
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16 if cuda else torch.float32)
    model = AutoModelForCausalLM.from_pretrained(base, **kwargs)
    if quant:
        model = prepare_model_for_kbit_training(model)
    set_seed(recipe.seed)
    lora = LoraConfig(r=recipe.lora_r, lora_alpha=recipe.lora_alpha, lora_dropout=recipe.lora_dropout,
                      target_modules=list(recipe.target_modules), task_type="CAUSAL_LM", bias="none")
    model = get_peft_model(model, lora)
    if quant:  # trl keeps QLoRA adapter weights in bf16
        for p in (p for p in model.parameters() if p.requires_grad):
            p.data = p.data.to(torch.bfloat16)
    if gradient_checkpointing():
        model.enable_input_require_grads()  # trl does this for peft + gradient checkpointing
    model.config.use_cache = False
    args = TrainingArguments(
        output_dir=str(recipe.out), per_device_train_batch_size=recipe.batch_size,
        gradient_accumulation_steps=recipe.gradient_accumulation, learning_rate=recipe.learning_rate,
        lr_scheduler_type=recipe.lr_scheduler, warmup_steps=recipe.warmup_ratio, num_train_epochs=recipe.epochs,
        max_steps=recipe.max_steps, logging_steps=recipe.logging_steps, save_strategy="no", seed=recipe.seed,
        data_seed=recipe.seed, report_to=[], bf16=use_bf16(recipe), gradient_checkpointing=gradient_checkpointing(),
        use_cpu=not cuda, disable_tqdm=True, dataloader_num_workers=0)
    trainer = Trainer(model=model, args=args, train_dataset=Dataset.from_list(rows),
                      data_collator=DataCollatorForSeq2Seq(tok, padding=True, label_pad_token_id=-100))
    return trainer.train().training_loss


def gradient_checkpointing() -> bool:
    """What finetune.train gets: it leaves SFTConfig's default (True in the installed trl)."""
    from trl import SFTConfig

    return SFTConfig.__dataclass_fields__["gradient_checkpointing"].default


def run_one(kind: str, config: str, overrides: dict) -> dict:
    """One trainer in this (fresh) process."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    stats = _probe()
    from finetune.recipe import load_recipe
    from finetune.train import _peak_rss_gb, train

    recipe = load_recipe(config, overrides)
    if kind.startswith("project"):
        s = train(recipe, progress=False)
        row = {"train_loss": s["train_loss"], "train_reported": {k: s[k] for k in ("seconds_per_step", "tokens_per_s")}}
    else:
        row = {"train_loss": baseline(recipe)}
    ends, n = stats["ends"], len(stats["ends"]) - 1
    window = ends[-1] - ends[0]
    return {"trainer": kind, "timed_steps": n, "seconds_per_step": round(window / n, 3),
            "tokens_timed": sum(stats["tokens"][1:]), "tokens_per_s": round(sum(stats["tokens"][1:]) / window, 1),
            "loss_tokens_per_s": round(sum(stats["loss_tokens"][1:]) / window, 1), **row,
            "peak_rss_gb": round(_peak_rss_gb(), 2)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(ROOT / "finetune" / "configs" / "qwen2.5-0.5b-ptwiki.yaml"))
    parser.add_argument("--steps", type=int, default=8, help="passos por trainer (o 1º é aquecimento)")
    parser.add_argument("--examples", type=int, default=400, help="primeiros N exemplos do arquivo de instruções")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "finetune_throughput"))
    args = parser.parse_args(argv)
    if args.steps < 2:
        parser.error("--steps precisa ser >= 2 (o primeiro passo não é medido)")

    from finetune.recipe import load_recipe
    from finetune.train import use_bf16
    from quantize.evaluate import hardware

    base = load_recipe(args.config)
    work = Path(tempfile.mkdtemp(prefix="ft-throughput-"))
    data = work / "data.jsonl"
    lines = base.path("data").read_text(encoding="utf-8").splitlines()[: args.examples]
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    rows = []
    try:
        for kind in ("baseline", "project", "project_token_metrics"):
            overrides = {"max_steps": args.steps, "data": str(data), "output_dir": str(work / kind),
                         "save_steps": 10_000, "token_metrics": kind == "project_token_metrics"}
            with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
                rows.append(pool.submit(run_one, kind, args.config, overrides).result())
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for r in rows:
        r["ratio_vs_baseline"] = round(r["tokens_per_s"] / rows[0]["tokens_per_s"], 3)
    command = " ".join(["python", "benchmarks/finetune_throughput.py", *(sys.argv[1:] if argv is None else argv)])
    result = {"model": base.base_model, "batch_size": base.batch_size, "max_length": base.max_length,
              "gradient_accumulation": base.gradient_accumulation, "lora_r": base.lora_r, "bf16": use_bf16(base),
              "gradient_checkpointing": gradient_checkpointing(), "examples": args.examples, "steps": args.steps,
              "timed": "end of step 1 -> end of last step (step 1 = warm-up, excluded); loading/prep/save outside",
              "tokens": "non-padding tokens fed (attention_mask sum) in the timed steps; same batches for both",
              "project_ratio": rows[1]["ratio_vs_baseline"], "hardware": hardware(), "command": command, "rows": rows}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2, ensure_ascii=False))
    hw = result["hardware"]
    names = {"baseline": "transformers Trainer + peft", "project": "finetune.train (SFTTrainer, plain loss; default)",
             "project_token_metrics": "finetune.train with `token_metrics: true` (trl's loss + entropy/accuracy)"}
    md = [f"# LoRA training throughput — {base.base_model}, {args.steps} steps, batch {base.batch_size}", "",
          f"Hardware: {hw.get('cpu')} ({hw.get('cores')} cores); {'bf16' if result['bf16'] else 'fp32'}, gradient "
          f"checkpointing {result['gradient_checkpointing']}, max_length {base.max_length}. "
          f"Timed: steps 2..{args.steps}; tokens/s = non-padding tokens fed / time.", "",
          "| trainer | s/step | tokens/s | ratio vs baseline | train loss | peak RSS GB |",
          "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        md.append(f"| {names[r['trainer']]} | {r['seconds_per_step']} | {r['tokens_per_s']} | "
                  f"{r['ratio_vs_baseline']}× | {r['train_loss']:.4f} | {r['peak_rss_gb']} |")
    md += ["", f"Command: `{command}`"]
    out.with_suffix(".md").write_text("\n".join(md) + "\n", encoding="utf-8")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
