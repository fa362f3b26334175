"""Which GGUF file answers for a (model, quantization) pair, making it when it does not exist yet.

A quantization is taken, in order, from: the registry entry itself when its type matches (or when asked
for "native"); a registry sibling named `<model>-<type>` (what `finetune export` registers); a file
already made here (`<home>/quants/<model>-<type>.gguf`); or it is made now from the model's
full-precision reference: the fine-tune's own F16 export when there is one, else the GGUF dequantized
through transformers and converted back to F16 (for the embedded models that reference is the
dequantized Q4_K_M, so types above Q4_K_M cannot be better than it — the report says so).
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from models.errors import ProjectError
from models.gguf import sha256_file
from models.settings import get_settings

NATIVE = "native"


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def quant_dir() -> Path:
    d = get_settings().home / "quants"
    d.mkdir(parents=True, exist_ok=True)
    return d


def reference_f16(model: str, progress: bool = True) -> Path:
    """The F16 GGUF the other types of `model` are quantized from (made once, then cached)."""
    from models.fetch import fetch
    from models.registry import resolve

    spec = resolve(model)
    exported = get_settings().home / "finetuned" / spec.name / f"{spec.name}-f16.gguf"
    if "finetuned" in spec.tags and exported.exists():
        return exported
    dst = quant_dir() / f"{spec.name}-f16.gguf"
    if dst.exists():
        return dst
    from finetune.export import hf_to_gguf
    from models.hf import gguf_to_hf

    src = fetch(spec, progress=progress)
    if progress:
        _say(f"==> referência F16 de {spec.name}: desquantizando {src.name} (transformers) e convertendo")
    hf_dir = gguf_to_hf(src, progress=progress)
    return hf_to_gguf(Path(hf_dir), dst, "f16")


def model_file(model: str, quant: str, progress: bool = True) -> Path:
    """Path of a loadable GGUF of `model` at `quant` (e.g. "Q4_K_M", "Q8_0", "native")."""
    from models.fetch import fetch
    from models.registry import all_models, resolve

    spec = resolve(model)
    q = quant.upper()
    if quant == NATIVE or spec.quant.upper() == q:
        return fetch(spec, progress=progress)
    sibling = f"{spec.name}-{q.lower()}"
    if sibling in all_models():
        return fetch(sibling, progress=progress)
    dst = quant_dir() / f"{spec.name}-{q.lower()}.gguf"
    if dst.exists():
        return dst
    from finetune.export import FTYPES, quantize_file

    if q not in FTYPES:
        raise ProjectError(f"quantização desconhecida: {quant}", hint=f"use uma de: {', '.join(FTYPES)} ou native")
    f16 = reference_f16(spec.name, progress)
    if q == "F16":
        return f16
    if progress:
        _say(f"==> quantizando {spec.name} para {q}")
    return quantize_file(f16, dst, q)


def file_sha256(path: Path) -> str:
    """sha256 of a model file, remembered next to it (keyed by size and mtime) so it is computed once."""
    path = Path(path)
    marker = path.with_name(path.name + ".sha256")
    st = path.stat()
    if marker.exists():
        try:
            saved = json.loads(marker.read_text())
            if saved.get("size") == st.st_size and saved.get("mtime_ns") == st.st_mtime_ns:
                return saved["sha256"]
        except (ValueError, KeyError):
            pass
    sha = sha256_file(path)
    try:
        tmp = marker.with_suffix(".tmp")
        tmp.write_text(json.dumps({"sha256": sha, "size": st.st_size, "mtime_ns": st.st_mtime_ns}))
        os.replace(tmp, marker)
    except OSError:
        pass  # read-only location: just recompute next time
    return sha


def available(model: str | None) -> tuple[bool, str]:
    """(True, "") when the registry knows `model`, else (False, why) — used to skip a variant with a reason."""
    from models.registry import resolve

    if not model:
        return False, "nenhum modelo configurado"
    try:
        resolve(model)
        return True, ""
    except ProjectError as exc:
        return False, str(exc)
