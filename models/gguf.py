"""Read a GGUF file's header without llama.cpp: validate it (magic, truncation) and report metadata.

llama.cpp answers a truncated or foreign file with a C-level error (or worse); reading the header
ourselves lets every entry point say what is wrong in one line before anything is loaded.
"""
from __future__ import annotations

import hashlib
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Callable

from .errors import ProjectError

GGUF_MAGIC = b"GGUF"
DEFAULT_ALIGNMENT = 32

# ggml type id -> (block size in elements, bytes per block); from ggml's type traits (gguf-py constants).
GGML_BLOCK = {
    0: (1, 4), 1: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24), 8: (32, 34), 9: (32, 36),
    10: (256, 84), 11: (256, 110), 12: (256, 144), 13: (256, 176), 14: (256, 210), 15: (256, 292),
    16: (256, 66), 17: (256, 74), 18: (256, 98), 19: (256, 50), 20: (32, 18), 21: (256, 110),
    22: (256, 82), 23: (256, 136), 24: (1, 1), 25: (1, 2), 26: (1, 4), 27: (1, 8), 28: (1, 8),
    29: (256, 56), 30: (1, 2), 34: (256, 54), 35: (256, 66), 39: (32, 17),
}
GGML_TYPE_NAMES = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 6: "Q5_0", 7: "Q5_1", 8: "Q8_0", 9: "Q8_1", 10: "Q2_K",
    11: "Q3_K", 12: "Q4_K", 13: "Q5_K", 14: "Q6_K", 15: "Q8_K", 16: "IQ2_XXS", 17: "IQ2_XS",
    18: "IQ3_XXS", 19: "IQ1_S", 20: "IQ4_NL", 21: "IQ3_S", 22: "IQ2_S", 23: "IQ4_XS", 24: "I8",
    25: "I16", 26: "I32", 27: "I64", 28: "F64", 29: "IQ1_M", 30: "BF16", 34: "TQ1_0", 35: "TQ2_0",
    39: "MXFP4",
}
# llama_ftype values written in general.file_type (llama.h LLAMA_FTYPE_MOSTLY_*).
FILE_TYPE_NAMES = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K",
    11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S", 17: "Q5_K_M",
    18: "Q6_K", 19: "IQ2_XXS", 20: "IQ2_XS", 21: "Q2_K_S", 22: "IQ3_XS", 23: "IQ3_XXS", 24: "IQ1_S",
    25: "IQ4_NL", 26: "IQ3_S", 27: "IQ3_M", 28: "IQ2_S", 29: "IQ2_M", 30: "IQ4_XS", 31: "IQ1_M",
    32: "BF16", 36: "TQ1_0", 37: "TQ2_0", 38: "MXFP4_MOE",
}

# GGUF metadata value types.
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9
# Arrays longer than this (token lists, merges) are skipped, not kept in memory.
_KEEP_ARRAY_MAX = 64


@dataclass
class GGUFInfo:
    path: Path
    version: int
    file_size: int
    expected_size: int
    n_tensors: int
    n_params: int
    metadata: dict = field(repr=False, default_factory=dict)
    tensor_types: dict = field(default_factory=dict)  # type name -> element count
    # (name, dims, type name) of every tensor, in file order (used by quantize.estimate).
    tensors: list = field(default_factory=list, repr=False)
    data_start: int = 0  # bytes of header + metadata before the tensor data

    @property
    def architecture(self) -> str:
        return str(self.metadata.get("general.architecture", "?"))

    @property
    def name(self) -> str:
        return str(self.metadata.get("general.name", self.path.stem))

    @property
    def file_type(self) -> str:
        ft = self.metadata.get("general.file_type")
        if ft is None:
            # Older files: name the dominant tensor type.
            return max(self.tensor_types, key=self.tensor_types.get) if self.tensor_types else "?"
        return FILE_TYPE_NAMES.get(int(ft), f"ftype{ft}")

    @property
    def context_length(self) -> int | None:
        value = self.metadata.get(f"{self.architecture}.context_length")
        return int(value) if value is not None else None

    @property
    def chat_template(self) -> str | None:
        return self.metadata.get("tokenizer.chat_template")

    @property
    def bits_per_weight(self) -> float:
        return 8.0 * self.file_size / self.n_params if self.n_params else 0.0

    def kv_cache_bytes(self, n_ctx: int, bytes_per_value: int = 2) -> int:
        """K and V cache for n_ctx tokens at f16, from the architecture's metadata."""
        arch = self.architecture
        layers = int(self.metadata.get(f"{arch}.block_count", 0))
        heads = int(self.metadata.get(f"{arch}.attention.head_count", 0) or 0)
        kv_heads = int(self.metadata.get(f"{arch}.attention.head_count_kv", heads) or heads)
        embd = int(self.metadata.get(f"{arch}.embedding_length", 0))
        if not (layers and heads and embd):
            return 0
        head_dim = int(self.metadata.get(f"{arch}.attention.key_length", embd // heads))
        return 2 * layers * n_ctx * kv_heads * head_dim * bytes_per_value


class _Reader:
    def __init__(self, fh: BinaryIO, path: Path):
        self.fh, self.path = fh, path

    def read(self, n: int) -> bytes:
        data = self.fh.read(n)
        if len(data) != n:
            raise ProjectError(
                f"GGUF truncado: o cabeçalho de {self.path} termina antes do esperado",
                hint="apague o arquivo e baixe/monte de novo",
            )
        return data

    def unpack(self, fmt: str):
        return struct.unpack(fmt, self.read(struct.calcsize(fmt)))[0]

    def string(self) -> str:
        n = self.unpack("<Q")
        if n > 1 << 30:
            raise ProjectError(f"GGUF corrompido: {self.path} tem uma string de {n} bytes no cabeçalho")
        return self.read(n).decode("utf-8", errors="replace")

    def value(self, vtype: int):
        if vtype in _SCALARS:
            return self.unpack(_SCALARS[vtype])
        if vtype == _STRING:
            return self.string()
        if vtype == _ARRAY:
            item_type, count = self.unpack("<I"), self.unpack("<Q")
            if count <= _KEEP_ARRAY_MAX:
                return [self.value(item_type) for _ in range(count)]
            if item_type in _SCALARS:  # skip fixed-size arrays without decoding
                self.fh.seek(count * struct.calcsize(_SCALARS[item_type]), os.SEEK_CUR)
            else:
                for _ in range(count):
                    self.value(item_type)
            return f"<array of {count}>"
        raise ProjectError(f"GGUF corrompido: tipo de metadado desconhecido {vtype} em {self.path}")


def read_gguf_info(path: str | os.PathLike) -> GGUFInfo:
    """Parse the header and tensor table; raise ProjectError for missing, foreign or truncated files."""
    path = Path(path).expanduser()
    if not path.exists():
        raise ProjectError(f"arquivo de modelo não encontrado: {path}", hint="confira o caminho ou rode `python -m models list`")
    if path.is_dir():
        raise ProjectError(f"{path} é uma pasta, não um arquivo .gguf")
    file_size = path.stat().st_size
    with open(path, "rb") as fh:
        magic = fh.read(4)
        if magic != GGUF_MAGIC:
            raise ProjectError(
                f"{path} não é um arquivo GGUF (assinatura {magic!r}, esperado b'GGUF')",
                hint="use um modelo .gguf do llama.cpp ou converta com `python -m quantize convert`",
            )
        r = _Reader(fh, path)
        version = r.unpack("<I")
        if version not in (2, 3):
            raise ProjectError(f"versão de GGUF não suportada ({version}) em {path}")
        n_tensors, n_kv = r.unpack("<Q"), r.unpack("<Q")
        if n_tensors > 1_000_000 or n_kv > 1_000_000:
            raise ProjectError(f"GGUF corrompido: cabeçalho de {path} declara {n_tensors} tensores e {n_kv} metadados")
        metadata = {}
        for _ in range(n_kv):
            key = r.string()
            metadata[key] = r.value(r.unpack("<I"))
        data_end, n_params, types, tensors = 0, 0, {}, []
        for _ in range(n_tensors):
            tensor_name = r.string()
            n_dims = r.unpack("<I")
            dims = [r.unpack("<Q") for _ in range(n_dims)]
            ggml_type, offset = r.unpack("<I"), r.unpack("<Q")
            elements = 1
            for d in dims:
                elements *= d
            block, type_size = GGML_BLOCK.get(ggml_type, (1, 0))
            nbytes = elements // block * type_size
            data_end = max(data_end, offset + nbytes)
            n_params += elements
            tname = GGML_TYPE_NAMES.get(ggml_type, f"type{ggml_type}")
            types[tname] = types.get(tname, 0) + elements
            tensors.append((tensor_name, tuple(dims), tname))
        alignment = int(metadata.get("general.alignment", DEFAULT_ALIGNMENT))
        header_end = fh.tell()
    data_start = (header_end + alignment - 1) // alignment * alignment
    expected = data_start + data_end
    info = GGUFInfo(path, version, file_size, expected, n_tensors, n_params, metadata, types, tensors, data_start)
    if file_size < expected:
        raise ProjectError(
            f"GGUF truncado: {path} tem {_mb(file_size)}, o cabeçalho exige {_mb(expected)}",
            hint="apague o arquivo e rode de novo para baixar/montar o modelo",
        )
    return info


def sha256_file(path: str | os.PathLike, progress: Callable[[int], None] | None = None, chunk: int = 8 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
            if progress:
                progress(len(block))
    return h.hexdigest()


def _mb(n: int) -> str:
    return f"{n / 1e6:,.1f} MB".replace(",", ".") if n < 1e9 else f"{n / 1e9:.2f} GB"
