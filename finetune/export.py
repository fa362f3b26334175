"""Adapter -> merged HF model -> f16 GGUF -> quantized GGUF(s) -> load check -> model registry.

Every file is written under a temporary name and renamed only when complete, so an interrupted or
out-of-disk export never leaves a half-written GGUF under its final name.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

from models.errors import ProjectError
from models.settings import REPO_ROOT, get_settings

# The generic HF→GGUF conversion and quantization live in the quantize package; re-exported here under
# the names this module has always had (evaluation.variants and the tests import them from here).
from quantize.convert import FTYPES, hf_to_gguf, load_check, quantize_file  # noqa: F401

DEFAULT_ADAPTER = REPO_ROOT / "finetune" / "adapters" / "qwen2.5-0.5b-ptwiki"


def _recipe_of(adapter: Path) -> dict:
    path = adapter / "recipe.json"
    if path.exists():
        return json.loads(path.read_text())
    cfg = adapter / "adapter_config.json"
    if not cfg.exists():
        raise ProjectError(f"{adapter} não é um adapter LoRA (falta adapter_config.json)")
    return {"base_model": json.loads(cfg.read_text()).get("base_model_name_or_path")}


def merge(adapter: Path, base_dir: Path, out_dir: Path, check_parity: bool = True) -> dict:
    """Merge the LoRA weights into the base; verify merged logits == base+adapter logits."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    model = PeftModel.from_pretrained(base, str(adapter))
    model.eval()
    sample = tokenizer("A capital do estado do Paraná é Curitiba, fundada em 1693.", return_tensors="pt")
    with torch.no_grad():
        before = model(**sample).logits if check_parity else None
        merged = model.merge_and_unload()
        after = merged(**sample).logits if check_parity else None
    parity = float((before - after).abs().max()) if check_parity else None
    if parity is not None and parity > 1e-3:
        raise ProjectError(f"a fusão do adapter mudou os logits (diferença máxima {parity:.2e})")
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    merged.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    shutil.rmtree(out_dir, ignore_errors=True)
    os.replace(tmp, out_dir)
    return {"max_logit_diff": parity}


def export(adapter: str | os.PathLike, quant: list[str], name: str, base_model: str | None = None,
           out_dir: str | os.PathLike | None = None, progress: bool = True) -> dict:
    """Merge, convert, quantize, check and register; returns paths and checks."""
    from models.registry import register_model, resolve

    from .recipe import Recipe
    from .train import resolve_base

    adapter = Path(adapter)
    if not (adapter / "adapter_config.json").exists():
        raise ProjectError(f"adapter não encontrado em {adapter}", hint="treine com `python -m finetune train --config …`")
    info = _recipe_of(adapter)
    base_ref = base_model or info.get("base_model")
    if not base_ref:
        raise ProjectError("não sei qual é o modelo base deste adapter", hint="informe --base")
    base_dir = resolve_base(Recipe(name=name, base_model=base_ref), progress)
    work = Path(out_dir) if out_dir else get_settings().home / "finetuned" / name
    work.mkdir(parents=True, exist_ok=True)
    say = (lambda m: print(m, file=sys.stderr)) if progress else (lambda m: None)
    say(f"==> fundindo o adapter {adapter.name} em {base_ref}")
    merged_dir = work / "merged"
    checks = merge(adapter, Path(base_dir), merged_dir)
    say("==> convertendo para GGUF f16")
    f16 = hf_to_gguf(merged_dir, work / f"{name}-f16.gguf")
    # Quantizations made by an earlier export of this name would otherwise keep the old weights: redo them too.
    quant = [q.upper() for q in quant]
    by_suffix = {t.lower(): t for t in FTYPES}
    earlier = (by_suffix.get(f.name[len(name) + 1:-len(".gguf")]) for f in sorted(work.glob(f"{name}-*.gguf")))
    stale = [t for t in earlier if t and t != "F16" and t not in quant]
    if stale:
        say(f"==> refazendo também {', '.join(stale)} (feitos por um export anterior)")
    quant += stale
    outputs = {}
    for q in quant:
        say(f"==> quantizando {q}")
        dst = work / f"{name}-{q.lower()}.gguf"
        quantize_file(f16, dst, q)
        checks[f"load_check_{q}"] = load_check(dst)
        outputs[q] = str(dst)
    base_spec = None
    try:
        base_spec = resolve(base_ref)
    except ProjectError:
        pass
    for i, (q, path) in enumerate(outputs.items()):
        reg_name = name if i == 0 else f"{name}-{q.lower()}"
        register_model(reg_name, path, description=f"fine-tune {name} de {base_ref} ({q})", quant=q,
                       arch=base_spec.arch if base_spec else "?", params=base_spec.params if base_spec else "?",
                       base_model=base_ref, license=base_spec.license if base_spec else "a do modelo base",
                       prompt_format=base_spec.prompt_format if base_spec else "chat template do GGUF",
                       tags=("finetuned",))
    shutil.rmtree(merged_dir, ignore_errors=True)  # large and reproducible; the GGUFs are what is used
    return {"name": name, "outputs": outputs, "f16": str(f16), "checks": checks}


def prepare_default_finetune(progress: bool = True, adapter: Path = DEFAULT_ADAPTER) -> dict | None:
    """On first start, turn the committed default adapter into the fine-tuned GGUF the app uses."""
    from models.registry import all_models

    name = get_settings().finetuned_model
    if not (adapter / "adapter_config.json").exists():
        if progress:
            print(f"    (sem adapter em {adapter}; a coluna fine-tuned ficará indisponível)", file=sys.stderr)
        return None
    digest = _adapter_digest(adapter)
    marker = get_settings().home / "finetuned" / name / "adapter.sha256"
    spec = all_models().get(name)
    if spec and spec.local_path.exists() and marker.exists() and marker.read_text().strip() == digest:
        return None
    # First start, or the committed adapter changed since the GGUF was built: (re)build it.
    result = export(adapter, ["Q4_K_M"], name, progress=progress)
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(digest + "\n")
    return result


def _adapter_digest(adapter: Path) -> str:
    from models.gguf import sha256_file

    return "+".join(sha256_file(adapter / f) for f in ("adapter_config.json", "adapter_model.safetensors"))
