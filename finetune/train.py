"""Train a LoRA/QLoRA adapter with peft + trl's SFTTrainer from a recipe; resumable from checkpoints.

Loss is on the response only: each `### Instruction / ### Input / ### Response` example is rendered
through the model's own chat template into a prompt/completion pair, so the fine-tuned model is used
exactly like the base one (same template, same system prompt) in the app and the study.
"""
from __future__ import annotations

import json
import os
import resource
import sys
import time
from pathlib import Path

from models.errors import ProjectError

from .data import load_instruction_file, parse_example
from .recipe import Recipe


def resolve_base(recipe: Recipe, progress: bool = True) -> Path | str:
    """An HF checkpoint for the base: dequantized from a registry/local GGUF, or an HF dir / hub id as is."""
    ref = recipe.base_model
    local = Path(ref).expanduser()
    if local.is_dir() and (local / "config.json").exists():
        return local
    if ref.endswith(".gguf") or not ("/" in ref and not local.exists()):
        from models.fetch import fetch
        from models.hf import gguf_to_hf

        return gguf_to_hf(fetch(ref, progress=progress), progress=progress)
    return ref  # a hub id: transformers downloads it (needs a network)


def use_4bit(recipe: Recipe) -> bool:
    import torch

    if recipe.quantization == "nf4":
        return True
    if recipe.quantization == "none":
        return False
    # auto: QLoRA where it pays off (CUDA); on CPU, bitsandbytes' 4-bit kernels are slower than fp32 and
    # the models that fit on a CPU box fit in fp32 anyway, so plain LoRA is the better default there.
    return torch.cuda.is_available()


def use_bf16(recipe: Recipe) -> bool:
    """Mixed precision (bf16 autocast, fp32 master weights). On CPU only when asked: it needs AVX512-BF16/AMX to pay off."""
    import torch

    if recipe.precision == "bf16":
        return True
    if recipe.precision == "fp32":
        return False
    return torch.cuda.is_available()


def check_memory(base, recipe: Recipe) -> dict:
    """Estimate peak memory before loading; refuse with the numbers when it cannot fit."""
    import psutil

    cfg_path = Path(base) / "config.json" if isinstance(base, Path) else None
    if cfg_path is None or not cfg_path.exists():
        return {}
    cfg = json.loads(cfg_path.read_text())
    h, layers, vocab = cfg.get("hidden_size", 0), cfg.get("num_hidden_layers", 0), cfg.get("vocab_size", 0)
    inter = cfg.get("intermediate_size", 4 * h)
    params = layers * (4 * h * h + 3 * h * inter) + 2 * vocab * h
    bytes_per = 0.55 if use_4bit(recipe) else 4
    # weights + activations of one micro-batch (rough, fp32) + logits over the vocabulary
    activations = recipe.batch_size * recipe.max_length * (layers * h * 34 + vocab * 2) * 4
    need = params * bytes_per + activations + 1.5e9
    avail = psutil.virtual_memory().available
    if need > avail:
        raise ProjectError(f"treinar {recipe.base_model} precisa de ~{need / 1e9:.1f} GB de RAM; há {avail / 1e9:.1f} GB livres",
                           hint="reduza batch_size/max_length, use quantization: nf4 numa GPU, ou um modelo menor")
    return {"estimated_peak_gb": round(need / 1e9, 2), "available_gb": round(avail / 1e9, 2), "params": params}


def to_prompt_completion(rows: list[dict], tokenizer, system_prompt: str | None) -> list[dict]:
    from models.prompts import DEFAULT_SYSTEM_PROMPT

    system = DEFAULT_SYSTEM_PROMPT if system_prompt is None else system_prompt
    out = []
    for row in rows:
        ex = parse_example(row["text"])
        user = ex["instruction"] + (f"\n\n{ex['input']}" if ex["input"].strip() else "")
        messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user}]
        prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        out.append({"prompt": prompt, "completion": ex["response"] + (tokenizer.eos_token or "")})
    return out


def last_checkpoint(directory: Path) -> Path | None:
    ckpts = sorted(directory.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]) if p.name.split("-")[-1].isdigit() else -1)
    return ckpts[-1] if ckpts else None


def train(recipe: Recipe, resume: bool = False, progress: bool = True, stop_after_steps: int | None = None) -> dict:
    """Run the recipe; returns a summary. `stop_after_steps` simulates an interruption (tests)."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    out = recipe.out
    ckpt_dir = out / "checkpoints"
    if not resume and ckpt_dir.exists() and last_checkpoint(ckpt_dir):
        raise ProjectError(f"{ckpt_dir} já tem checkpoints", hint="use --resume para continuar ou apague a pasta para recomeçar")
    rows = load_instruction_file(recipe.path("data"))
    base = resolve_base(recipe, progress)
    memory = check_memory(base, recipe)
    quant = use_4bit(recipe)
    tokenizer = AutoTokenizer.from_pretrained(base)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    dataset = Dataset.from_list(to_prompt_completion(rows, tokenizer, recipe.system_prompt))

    model_kwargs = {"dtype": torch.bfloat16 if torch.cuda.is_available() else torch.float32}
    if quant:
        from transformers import BitsAndBytesConfig

        model_kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16 if torch.cuda.is_available() else torch.float32)
    model = AutoModelForCausalLM.from_pretrained(base, **model_kwargs)
    if quant:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model)
    lora = LoraConfig(r=recipe.lora_r, lora_alpha=recipe.lora_alpha, lora_dropout=recipe.lora_dropout,
                      target_modules=list(recipe.target_modules), task_type="CAUSAL_LM", bias="none")
    cfg = SFTConfig(
        output_dir=str(ckpt_dir), per_device_train_batch_size=recipe.batch_size,
        gradient_accumulation_steps=recipe.gradient_accumulation, learning_rate=recipe.learning_rate,
        lr_scheduler_type=recipe.lr_scheduler, warmup_steps=recipe.warmup_ratio, num_train_epochs=recipe.epochs,
        max_steps=recipe.max_steps, logging_steps=recipe.logging_steps, save_steps=recipe.save_steps,
        save_total_limit=3, seed=recipe.seed, data_seed=recipe.seed, max_length=recipe.max_length,
        completion_only_loss=True, report_to="none", bf16=use_bf16(recipe),
        use_cpu=not torch.cuda.is_available(), disable_tqdm=not progress, dataloader_num_workers=0,
    )

    class StopAt(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if stop_after_steps and state.global_step >= stop_after_steps:
                control.should_save = True
                control.should_training_stop = True

    callbacks = [StopAt()] if stop_after_steps else []
    trainer_cls = SFTTrainer if recipe.token_metrics else lean_trainer(SFTTrainer)
    trainer = trainer_cls(model=model, args=cfg, train_dataset=dataset, processing_class=tokenizer, peft_config=lora,
                         callbacks=callbacks)
    resume_from = str(last_checkpoint(ckpt_dir)) if resume and last_checkpoint(ckpt_dir) else None
    start = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=resume_from)
    elapsed = time.perf_counter() - start
    history = trainer.state.log_history
    out.mkdir(parents=True, exist_ok=True)
    (out / "train_log.json").write_text(json.dumps(history, indent=2))
    if stop_after_steps and trainer.state.global_step < (recipe.max_steps if recipe.max_steps > 0 else 10**9):
        return {"interrupted_at_step": trainer.state.global_step}

    adapter = out / "adapter"
    tmp = out / "adapter.tmp"
    trainer.model.save_pretrained(tmp)
    (tmp / "recipe.json").write_text(json.dumps(recipe.to_dict(), indent=2, ensure_ascii=False))
    if adapter.exists():
        import shutil

        shutil.rmtree(adapter)
    os.replace(tmp, adapter)
    resumed_at = int(resume_from.rsplit("-", 1)[-1]) if resume_from else 0
    steps_run = trainer.state.global_step - resumed_at
    tokens_fed = _tokens_fed(history, resumed_at)
    if tokens_fed is None:  # a trl without the num_tokens log: estimate from the first examples (untruncated)
        sample = dataset.select(range(min(64, len(dataset))))
        avg = sum(len(tokenizer(r["prompt"] + r["completion"])["input_ids"]) for r in sample) / max(len(sample), 1)
        tokens_fed = steps_run * recipe.batch_size * recipe.gradient_accumulation * min(avg, recipe.max_length)
    summary = {
        "recipe": recipe.name, "base": str(base), "examples": len(dataset), "steps": trainer.state.global_step,
        "steps_this_run": steps_run, "seconds_this_run": round(elapsed, 1),
        "seconds_per_step": round(elapsed / max(steps_run, 1), 2),
        "tokens_per_s": round(tokens_fed / elapsed, 1),  # non-padding tokens fed (trl's num_tokens) per second
        "train_loss": result.training_loss, "method": "QLoRA (4-bit NF4)" if quant else "LoRA (fp32 base)",
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "precision": "bf16 (mixed)" if use_bf16(recipe) else "fp32", "peak_rss_gb": round(_peak_rss_gb(), 2),
        "final_loss": next((h["loss"] for h in reversed(history) if "loss" in h), None), **memory,
    }
    (out / "train_summary.json").write_text(json.dumps(summary, indent=2))
    plot_loss(history, out / "loss.png", recipe.name)
    return summary


def lean_trainer(sft_trainer_cls):
    """trl's SFTTrainer with the plain causal-LM loss of transformers' Trainer.

    trl's own loss path also computes, every step, the entropy and top-1 accuracy of every response token
    (a softmax over the whole vocabulary); on CPU that made a step 10–17 % slower than a plain Trainer + peft
    on the same batches (`benchmarks/finetune_throughput.py`). The loss is the same: trl's collator already
    sets the labels to -100 outside the response. `num_tokens` is still logged.
    """
    from transformers import Trainer

    class LeanSFTTrainer(sft_trainer_cls):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if self.model.training and "attention_mask" in inputs:
                self._total_train_tokens += int(inputs["attention_mask"].sum())
                self._metrics["train"]["num_tokens"] = [self._total_train_tokens]
            inputs["use_cache"] = False
            return Trainer.compute_loss(self, model, inputs, return_outputs=return_outputs,
                                        num_items_in_batch=num_items_in_batch)

    return LeanSFTTrainer


def _tokens_fed(history: list[dict], resumed_at: int) -> float | None:
    """Non-padding tokens fed in this run, from trl's cumulative `num_tokens` log (None when not logged)."""
    logged = [(h.get("step", 0), h["num_tokens"]) for h in history if "num_tokens" in h]
    if not logged:
        return None
    before = [n for step, n in logged if step <= resumed_at]
    return logged[-1][1] - (before[-1] if before else 0.0)


def _peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # KiB on Linux -> GB


def plot_loss(history: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = [(h["step"], h["loss"]) for h in history if "loss" in h]
    if not points:
        return
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(*zip(*points), marker="o", ms=3)
    ax.set_xlabel("passo")
    ax.set_ylabel("loss (só resposta)")
    ax.set_title(f"Curva de loss — {title}")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":  # pragma: no cover
    print("use `python -m finetune train --config …`", file=sys.stderr)
