"""The quantization types llama.cpp offers: their llama_ftype ids, block sizes and bits per weight.

Bits per weight of a *block type* come from ggml's type traits (bytes per block × 8 / elements per block,
`ggml/src/ggml.c` `type_traits`): Q8_0 = 34 B / 32 = 8.5, Q6_K = 210 B / 256 = 6.5625, Q4_K = 144 B / 256 =
4.5, Q2_K = 84 B / 256 = 2.625. A *file type* such as Q4_K_M is a mix: llama.cpp gives some tensors more
bits (attn_v, ffn_down, the output matrix) — see quantize/estimate.py for how the mix is simulated.
"""
from __future__ import annotations

from dataclasses import dataclass

from models.errors import ProjectError

# ggml type name -> (elements per block, bytes per block); the same table as models.gguf.GGML_BLOCK, by name.
GGML_BLOCKS = {
    "F32": (1, 4), "F16": (1, 2), "BF16": (1, 2), "Q4_0": (32, 18), "Q4_1": (32, 20), "Q5_0": (32, 22),
    "Q5_1": (32, 24), "Q8_0": (32, 34), "Q2_K": (256, 84), "Q3_K": (256, 110), "Q4_K": (256, 144),
    "Q5_K": (256, 176), "Q6_K": (256, 210), "IQ2_XXS": (256, 66), "IQ2_XS": (256, 74), "IQ3_XXS": (256, 98),
    "IQ1_S": (256, 50), "IQ4_NL": (32, 18), "IQ3_S": (256, 110), "IQ2_S": (256, 82), "IQ4_XS": (256, 136),
    "IQ1_M": (256, 56), "TQ1_0": (256, 54), "TQ2_0": (256, 66),
}


def block_bpw(ggml_type: str) -> float:
    block, size = GGML_BLOCKS[ggml_type]
    return 8.0 * size / block


@dataclass(frozen=True)
class QuantType:
    name: str        # what users type: "Q4_K_M"
    ftype: int       # llama_ftype (llama.h LLAMA_FTYPE_MOSTLY_*)
    base: str        # the ggml block type most tensors get
    needs_imatrix: bool = False
    note: str = ""

    @property
    def bpw(self) -> float:
        """Bits per weight of the base block type (the mix is a little higher; see estimate.py)."""
        return block_bpw(self.base)

    @property
    def is_float(self) -> bool:
        return self.base in ("F32", "F16", "BF16")


# Every type `llama-quantize` lists, in descending size. ftype ids are checked against llama_cpp in the tests.
QUANT_TYPES: dict[str, QuantType] = {q.name: q for q in [
    QuantType("F32", 0, "F32", note="precisão total (32 bits)"),
    QuantType("F16", 1, "F16", note="meia precisão; a referência usual"),
    QuantType("BF16", 32, "BF16", note="bfloat16"),
    QuantType("Q8_0", 7, "Q8_0", note="8 bits, praticamente sem perda"),
    QuantType("Q6_K", 18, "Q6_K", note="k-quant de 6 bits"),
    QuantType("Q5_K_M", 17, "Q5_K", note="k-quant de 5 bits, mistura média"),
    QuantType("Q5_K_S", 16, "Q5_K", note="k-quant de 5 bits, mistura pequena"),
    QuantType("Q5_1", 9, "Q5_1", note="legado, 5 bits com mínimo"),
    QuantType("Q5_0", 8, "Q5_0", note="legado, 5 bits"),
    QuantType("Q4_K_M", 15, "Q4_K", note="k-quant de 4 bits, mistura média (a escolha comum)"),
    QuantType("Q4_K_S", 14, "Q4_K", note="k-quant de 4 bits, mistura pequena"),
    QuantType("Q4_1", 3, "Q4_1", note="legado, 4 bits com mínimo"),
    QuantType("Q4_0", 2, "Q4_0", note="legado, 4 bits"),
    QuantType("IQ4_NL", 25, "IQ4_NL", note="i-quant não linear de 4 bits"),
    QuantType("IQ4_XS", 30, "IQ4_XS", note="i-quant de 4,25 bits"),
    QuantType("Q3_K_L", 13, "Q3_K", note="k-quant de 3 bits, mistura grande"),
    QuantType("Q3_K_M", 12, "Q3_K", note="k-quant de 3 bits, mistura média"),
    QuantType("Q3_K_S", 11, "Q3_K", note="k-quant de 3 bits, mistura pequena"),
    QuantType("IQ3_M", 27, "IQ3_S", note="i-quant de 3 bits, mistura média"),
    QuantType("IQ3_S", 26, "IQ3_S", note="i-quant de 3,44 bits"),
    QuantType("IQ3_XS", 22, "IQ3_S", note="i-quant de 3,3 bits"),
    QuantType("IQ3_XXS", 23, "IQ3_XXS", note="i-quant de 3,06 bits"),
    QuantType("Q2_K", 10, "Q2_K", note="k-quant de 2 bits (mistura com Q3_K/Q6_K)"),
    QuantType("Q2_K_S", 21, "Q2_K", needs_imatrix=True, note="k-quant de 2 bits, mistura pequena"),
    QuantType("IQ2_M", 29, "IQ2_S", note="i-quant de 2,7 bits"),
    QuantType("IQ2_S", 28, "IQ2_S", needs_imatrix=True, note="i-quant de 2,5 bits"),
    QuantType("IQ2_XS", 20, "IQ2_XS", needs_imatrix=True, note="i-quant de 2,31 bits"),
    QuantType("IQ2_XXS", 19, "IQ2_XXS", needs_imatrix=True, note="i-quant de 2,06 bits"),
    QuantType("IQ1_M", 31, "IQ1_M", needs_imatrix=True, note="i-quant de 1,75 bits"),
    QuantType("IQ1_S", 24, "IQ1_S", needs_imatrix=True, note="i-quant de 1,56 bits"),
    QuantType("TQ2_0", 37, "TQ2_0", note="ternário (só para modelos treinados ternários)"),
    QuantType("TQ1_0", 36, "TQ1_0", note="ternário (só para modelos treinados ternários)"),
]}

# The matrix the issue asks for, and the default of `evaluate`.
STANDARD_TYPES = ["F16", "Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M", "Q4_0", "Q3_K_M", "Q2_K"]
DEFAULT_EVAL_TYPES = ["F16", "Q8_0", "Q4_K_M", "Q2_K"]
NATIVE = "native"  # the model's own file, as shipped


def get_type(name: str) -> QuantType:
    key = str(name).strip().upper()
    if key not in QUANT_TYPES:
        raise ProjectError(f"tipo de quantização desconhecido: '{name}'",
                           hint=f"use um de: {', '.join(QUANT_TYPES)} (veja `python -m quantize types`)")
    return QUANT_TYPES[key]


def parse_types(text: str | list[str], allow_native: bool = False) -> list[str]:
    """'Q8_0, q4_k_m' -> ['Q8_0', 'Q4_K_M'] (validated, order kept, duplicates dropped)."""
    items = text if isinstance(text, list) else str(text).split(",")
    out: list[str] = []
    for item in items:
        item = item.strip()
        if not item:
            continue
        if allow_native and item.lower() == NATIVE:
            name = NATIVE
        else:
            name = get_type(item).name
        if name not in out:
            out.append(name)
    if not out:
        raise ProjectError("nenhum tipo de quantização informado", hint="ex.: --type Q8_0,Q4_K_M,Q2_K")
    return out


def file_type_name(ftype: int) -> str:
    for q in QUANT_TYPES.values():
        if q.ftype == ftype:
            return q.name
    return f"ftype{ftype}"
