"""Quantization toolkit: HF → GGUF, every llama.cpp type, memory estimates, evaluation, publishing.

Each capability is a plain function here and a `python -m quantize …` command (see quantize/README.md).
"""
from .convert import FTYPES, convert, hf_to_gguf, load_check, quantize_file, quantize_many  # noqa: F401
from .types import QUANT_TYPES, STANDARD_TYPES, get_type, parse_types  # noqa: F401


def estimate(*args, **kwargs):
    from .estimate import estimate as _estimate

    return _estimate(*args, **kwargs)


def evaluate(*args, **kwargs):
    from .evaluate import evaluate as _evaluate

    return _evaluate(*args, **kwargs)


def publish(*args, **kwargs):
    from .publish import publish as _publish

    return _publish(*args, **kwargs)
