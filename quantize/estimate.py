"""Memory a model needs at each quantization: weights, KV cache, runtime buffers — and does it fit here?

Weights are estimated tensor by tensor: each weight matrix gets the ggml type llama.cpp's quantizer would
give it (a transcription of `llama_tensor_get_type` in llama.cpp `src/llama-quant.cpp`: the output matrix
at Q6_K, attn_v/ffn_down upgraded in the _M mixes and in Q2_K, fallbacks when a row length is not a
multiple of 256), at that type's bits per weight (ggml block sizes, quantize/types.py). That is why the
"effective" bits per weight of a mix is above its block type: Q4_K_M ≈ 4.9 and Q2_K ≈ 3.0 on Llama-2-7B
against 4.5 and 2.625 for the Q4_K and Q2_K blocks. Norms and biases stay F32.
KV cache (f16): 2 (K and V) × layers × context × kv_heads × head_dim × 2 bytes.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from models.errors import ProjectError

from .types import GGML_BLOCKS, QUANT_TYPES, block_bpw, get_type

ESTIMATE_TYPES = ["F32", "F16", "Q8_0", "Q6_K", "Q4_K_M", "Q2_K"]
GB = 1e9
# Runtime memory besides weights and KV cache, as resident memory (RSS counts only the pages a run touches):
# the process itself (Python, numpy, llama.cpp libraries), llama.cpp's attention scratch for one ubatch against
# the whole context (KQ: n_ubatch × n_ctx × n_head floats, ~1.6 of them live at once), and the vocabulary's
# tables (~650 bytes per token). Fitted to the peak RSS measured on SmolLM2-135M and Qwen2.5-0.5B with the
# context filled (quantize/README.md shows the fit's error); llama.cpp *reserves* more (a full ubatch of
# logits) but an ordinary run never touches it.
PROCESS_BASE_BYTES = 45e6
UBATCH = 512
KQ_LIVE = 1.6
VOCAB_BYTES_PER_TOKEN = 650


@dataclass
class ModelShape:
    """What the estimate needs to know about a model."""

    name: str
    arch: str
    n_layer: int
    n_embd: int
    n_head: int
    n_head_kv: int
    head_dim: int
    n_ff: int
    n_vocab: int
    tied_embeddings: bool = False
    tensors: list = field(default_factory=list, repr=False)  # (name, dims (ne0 first), type)
    header_bytes: int = 0
    source: str = ""

    @property
    def n_params(self) -> int:
        return sum(_numel(d) for _, d, _ in self.tensors)


# Llama 2 shapes (Meta's params.json / HF config.json) — usable offline.
KNOWN_CONFIGS = {
    "llama-2-7b": dict(n_layer=32, n_embd=4096, n_head=32, n_head_kv=32, n_ff=11008, n_vocab=32000),
    "llama-2-13b": dict(n_layer=40, n_embd=5120, n_head=40, n_head_kv=40, n_ff=13824, n_vocab=32000),
    "llama-2-70b": dict(n_layer=80, n_embd=8192, n_head=64, n_head_kv=8, n_ff=28672, n_vocab=32000),
}
PARAMS_TO_CONFIG = {"7B": "llama-2-7b", "13B": "llama-2-13b", "70B": "llama-2-70b"}


def _numel(dims) -> int:
    n = 1
    for d in dims:
        n *= int(d)
    return n


def synth_tensors(n_layer, n_embd, n_head, n_head_kv, n_ff, n_vocab, head_dim=None, tied=False, qkv_bias=False):
    """The GGUF tensor list of a llama-style decoder (dims as GGUF stores them: input columns first)."""
    head_dim = head_dim or n_embd // n_head
    kv = n_head_kv * head_dim
    q = n_head * head_dim
    t = [("token_embd.weight", (n_embd, n_vocab), "F32")]
    if not tied:
        t.append(("output.weight", (n_embd, n_vocab), "F32"))
    t.append(("output_norm.weight", (n_embd,), "F32"))
    for i in range(n_layer):
        b = f"blk.{i}."
        t += [(b + "attn_norm.weight", (n_embd,), "F32"), (b + "ffn_norm.weight", (n_embd,), "F32"),
              (b + "attn_q.weight", (n_embd, q), "F32"), (b + "attn_k.weight", (n_embd, kv), "F32"),
              (b + "attn_v.weight", (n_embd, kv), "F32"), (b + "attn_output.weight", (q, n_embd), "F32"),
              (b + "ffn_gate.weight", (n_embd, n_ff), "F32"), (b + "ffn_up.weight", (n_embd, n_ff), "F32"),
              (b + "ffn_down.weight", (n_ff, n_embd), "F32")]
        if qkv_bias:
            t += [(b + "attn_q.bias", (q,), "F32"), (b + "attn_k.bias", (kv,), "F32"), (b + "attn_v.bias", (kv,), "F32")]
    return t


def shape_from_config(name: str, cfg: dict, source: str) -> ModelShape:
    """ModelShape from an HF config.json (llama-style decoders: Llama, Qwen2, Mistral, SmolLM…)."""
    try:
        n_embd = int(cfg["hidden_size"])
        n_head = int(cfg["num_attention_heads"])
        shape = dict(n_layer=int(cfg["num_hidden_layers"]), n_embd=n_embd, n_head=n_head,
                     n_head_kv=int(cfg.get("num_key_value_heads") or n_head), n_ff=int(cfg["intermediate_size"]),
                     n_vocab=int(cfg["vocab_size"]))
    except KeyError as exc:
        raise ProjectError(f"config.json de {name} não tem o campo {exc}: não sei estimar esta arquitetura",
                           hint="use --params N (ex. --params 7B)") from exc
    head_dim = int(cfg.get("head_dim") or n_embd // n_head)
    tied = bool(cfg.get("tie_word_embeddings", False))
    arch = (cfg.get("model_type") or "?").lower()
    tensors = synth_tensors(**shape, head_dim=head_dim, tied=tied, qkv_bias=arch == "qwen2")
    return ModelShape(name=name, arch=arch, head_dim=head_dim, tied_embeddings=tied, tensors=tensors, source=source, **shape)


def shape_from_known(key: str) -> ModelShape:
    c = KNOWN_CONFIGS[key]
    return ModelShape(name=key, arch="llama", head_dim=c["n_embd"] // c["n_head"], tensors=synth_tensors(**c),
                      source="configuração conhecida (Meta Llama 2)", **c)


def shape_from_gguf(info) -> ModelShape:
    md, arch = info.metadata, info.architecture

    def get(key, default=0):
        return int(md.get(f"{arch}.{key}", default) or default)

    n_embd, n_head = get("embedding_length"), get("attention.head_count")
    head_dim = get("attention.key_length", n_embd // n_head if n_head else 0)
    vocab = md.get(f"{arch}.vocab_size") or next((d[1] for n, d, _ in info.tensors if n == "token_embd.weight"), 0)
    return ModelShape(name=info.name, arch=arch, n_layer=get("block_count"), n_embd=n_embd, n_head=n_head,
                      n_head_kv=get("attention.head_count_kv", n_head), head_dim=head_dim, n_ff=get("feed_forward_length"),
                      n_vocab=int(vocab), tied_embeddings=not any(n == "output.weight" for n, _, _ in info.tensors),
                      tensors=list(info.tensors), header_bytes=info.data_start, source=f"cabeçalho GGUF de {info.path.name}")


# ---------------------------------------------------------------------------------------------------------
# llama.cpp's per-tensor type choice (src/llama-quant.cpp, llama_tensor_get_type), for the non-IQ mixes

_FALLBACK = {"Q2_K": "Q4_0", "Q3_K": "Q4_0", "Q4_K": "Q5_0", "Q5_K": "Q5_1", "Q6_K": "Q8_0",
             "IQ4_XS": "IQ4_NL", "IQ3_S": "IQ4_NL", "IQ3_XXS": "IQ4_NL", "IQ2_S": "IQ4_NL", "IQ2_XS": "IQ4_NL",
             "IQ2_XXS": "IQ4_NL", "IQ1_S": "IQ4_NL", "IQ1_M": "IQ4_NL", "TQ1_0": "Q4_0", "TQ2_0": "Q4_0"}


def _quantizable(name: str, dims) -> bool:
    if len(dims) < 2 or not name.endswith("weight") or "_norm.weight" in name:
        return False
    return not any(s in name for s in ("ffn_gate_inp.weight", "pos_embd", "token_types", "ssm_conv1d", "attn_rel_b"))


def _category(name: str) -> str:
    if name == "output.weight":
        return "output"
    if name in ("token_embd.weight", "per_layer_token_embd.weight"):
        return "token_embd"
    for key, cat in (("attn_qkv.weight", "attn_v"), ("attn_kv_b.weight", "attn_v"), ("attn_v.weight", "attn_v"),
                     ("attn_k.weight", "attn_k"), ("attn_q.weight", "attn_q"), ("attn_output.weight", "attn_output"),
                     ("ffn_up", "ffn_up"), ("ffn_gate", "ffn_gate"), ("ffn_down", "ffn_down")):
        if key in name:
            return cat
    return "other"


def _use_more_bits(i: int, n: int) -> bool:
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


def simulate_mix(shape: ModelShape, qtype: str) -> list[tuple[str, int, str]]:
    """[(tensor, elements, ggml type)] as llama.cpp would write them for file type `qtype`."""
    q = get_type(qtype)
    ft = q.name
    tensors = shape.tensors
    n_gqa = shape.n_head // max(1, shape.n_head_kv)
    n_attn_v = sum(1 for n, d, _ in tensors if _quantizable(n, d) and _category(n) == "attn_v")
    n_ffn_down = sum(1 for n, d, _ in tensors if _quantizable(n, d) and _category(n) == "ffn_down")
    is_70b = shape.n_layer == 80 and shape.arch == "llama"
    tied = not any(n == "output.weight" for n, _, _ in tensors)
    i_v = i_down = 0
    out = []
    for name, dims, cur in tensors:
        n = _numel(dims)
        if not _quantizable(name, dims):
            out.append((name, n, cur if cur in GGML_BLOCKS else "F32"))
            continue
        if q.is_float:
            out.append((name, n, q.base))
            continue
        t = q.base
        cat = _category(name)
        if cat == "output" or (tied and cat == "token_embd"):
            if dims[0] % GGML_BLOCKS[t][0] != 0:
                t = "Q8_0"
            elif ft in ("IQ2_XXS", "IQ2_XS", "IQ3_XXS", "IQ1_S", "IQ2_S", "IQ2_M", "IQ1_M"):
                t = "Q5_K"
            elif t != "Q8_0":
                t = "Q6_K"
        elif cat == "token_embd":
            if ft in ("IQ2_XXS", "IQ2_XS", "IQ1_S", "IQ1_M"):
                t = "Q2_K"
            elif ft in ("IQ2_S", "IQ2_M", "IQ3_XXS"):
                t = "IQ3_S"
        elif cat == "attn_v":
            if ft == "Q2_K":
                t = "Q4_K" if n_gqa >= 4 else "Q3_K"
            elif ft == "Q2_K_S" and n_gqa >= 4:
                t = "Q4_K"
            elif ft == "Q3_K_M":
                t = "Q5_K" if i_v < 2 else "Q4_K"
            elif ft == "Q3_K_L":
                t = "Q5_K"
            elif ft in ("IQ4_NL", "IQ4_XS") and n_gqa >= 4:
                t = "Q5_K"
            elif ft in ("Q4_K_M", "Q5_K_M") and _use_more_bits(i_v, n_attn_v):
                t = "Q6_K"
            elif ft == "Q4_K_S" and i_v < 4:
                t = "Q5_K"
            if is_70b and t in ("Q3_K", "Q4_K"):
                t = "Q5_K"
            i_v += 1
        elif cat == "ffn_down":
            i = i_down
            if ft == "Q2_K":
                t = "Q3_K"
            elif ft == "Q2_K_S" and i < n_ffn_down // 8:
                t = "Q4_K"
            elif ft == "Q3_K_M":
                t = "Q5_K" if i < n_ffn_down // 16 else "Q4_K"
            elif ft == "Q3_K_L":
                t = "Q5_K"
            elif ft == "Q4_K_M" and _use_more_bits(i, n_ffn_down):
                t = "Q6_K"
            elif ft in ("IQ4_NL", "IQ4_XS") and i < n_ffn_down // 8:
                t = "Q5_K"
            elif ft == "Q5_K_M" and _use_more_bits(i, n_ffn_down):
                t = "Q6_K"
            elif ft == "Q4_K_S" and i < n_ffn_down // 8:
                t = "Q5_K"
            i_down += 1
        elif cat == "attn_output":
            t = {"Q2_K": "Q3_K", "Q3_K_M": "Q4_K", "Q3_K_L": "Q5_K", "IQ3_M": "Q4_K", "IQ3_XXS": "IQ3_S"}.get(ft, t)
        if dims[0] % GGML_BLOCKS[t][0] != 0:  # row length not a multiple of the block: llama.cpp's fallback
            t = _FALLBACK.get(t, "F16")
            if dims[0] % GGML_BLOCKS[t][0] != 0:
                t = "F16"
        out.append((name, n, t))
    return out


def _tensor_bytes(n: int, t: str) -> int:
    block, size = GGML_BLOCKS.get(t, (1, 4))
    return -(-n // block) * size


def weight_bytes(shape: ModelShape, qtype: str) -> int:
    mix = simulate_mix(shape, qtype)
    data = sum(_tensor_bytes(n, t) + 16 for _, n, t in mix)  # + average alignment padding (32 B)
    return data + shape.header_bytes


def estimate_gguf_size(info, qtype: str) -> int:
    """Expected size of `info`'s model written at `qtype` (used to check disk space before writing)."""
    return weight_bytes(shape_from_gguf(info), qtype)


def effective_bpw(shape: ModelShape, qtype: str) -> float:
    return 8.0 * (weight_bytes(shape, qtype) - shape.header_bytes) / max(1, shape.n_params)


def kv_cache_bytes(shape: ModelShape, n_ctx: int, bytes_per_value: int = 2) -> int:
    return 2 * shape.n_layer * n_ctx * shape.n_head_kv * shape.head_dim * bytes_per_value


def runtime_overhead_bytes(shape: ModelShape, n_ctx: int) -> int:
    kq = KQ_LIVE * UBATCH * 4 * shape.n_head * n_ctx
    return int(PROCESS_BASE_BYTES + kq + VOCAB_BYTES_PER_TOKEN * shape.n_vocab)


# ---------------------------------------------------------------------------------------------------------
# Entry points

def parse_params(text: str) -> float:
    m = re.fullmatch(r"\s*([\d.]+)\s*([kKmMbBtT]?)\s*", str(text))
    if not m:
        raise ProjectError(f"--params inválido: '{text}'", hint="ex.: --params 7B, --params 500M, --params 1.5B")
    value = float(m.group(1)) * {"": 1, "K": 1e3, "M": 1e6, "B": 1e9, "T": 1e12}[m.group(2).upper()]
    if value <= 0:
        raise ProjectError(f"--params deve ser positivo: '{text}'")
    return value


def _generic_shape(n_params: float) -> ModelShape:
    """A Llama-2-7B-proportioned model scaled to n_params (only the bpw of each mix is used from it)."""
    base = shape_from_known("llama-2-7b")
    return ModelShape(name=f"{n_params / 1e9:g}B", arch="llama", n_layer=0, n_embd=0, n_head=0, n_head_kv=0, head_dim=0,
                      n_ff=0, n_vocab=base.n_vocab, tensors=base.tensors, source="proporções do Llama-2-7B")


def resolve_shape(model: str | None = None, params: str | None = None, progress: bool = False) -> tuple[ModelShape, float | None, Path | None]:
    """(shape, scale, gguf path): scale != None means "a generic model of that many parameters"."""
    if params:
        key = params.strip().upper()
        if key in PARAMS_TO_CONFIG:
            return shape_from_known(PARAMS_TO_CONFIG[key]), None, None
        return _generic_shape(parse_params(params)), parse_params(params), None
    if not model:
        raise ProjectError("informe --params N ou --model NOME|CAMINHO|ID_HF")
    path = Path(model).expanduser()
    if path.is_dir():
        cfg_path = path / "config.json"
        if not cfg_path.exists():
            raise ProjectError(f"{path} não tem config.json", hint="aponte para uma pasta de modelo HF")
        return shape_from_config(path.name, json.loads(cfg_path.read_text()), f"config.json de {path}"), None, None
    from models.registry import all_models

    models = all_models()
    if model in models or path.suffix == ".gguf" or path.is_file():
        from models.gguf import read_gguf_info

        spec = models.get(model)
        if spec is not None and spec.source == "hub":
            key = PARAMS_TO_CONFIG.get(str(spec.params).upper())
            if key:  # a Llama 2 from the hub: its shape is known, nothing to download
                return shape_from_known(key), None, None
        from models.fetch import fetch

        gguf_path = fetch(model, progress=progress)
        return shape_from_gguf(read_gguf_info(gguf_path)), None, gguf_path
    low = model.lower()
    for key in KNOWN_CONFIGS:
        if key in low.replace("_", "-"):
            return shape_from_known(key), None, None
    if re.fullmatch(r"[\w.-]+/[\w.-]+", model):
        try:
            from huggingface_hub import hf_hub_download

            cfg_file = hf_hub_download(model, "config.json")
        except Exception as exc:
            raise ProjectError(f"não consegui ler a configuração de {model} no Hugging Face Hub (sem conexão?)",
                               hint="use --params N (ex. --params 7B) ou uma pasta/arquivo local") from exc
        return shape_from_config(model, json.loads(Path(cfg_file).read_text()), f"config.json de {model} (hub)"), None, None
    raise ProjectError(f"modelo desconhecido: '{model}'", hint="nome do registro, arquivo .gguf, pasta HF ou id do hub")


@dataclass
class EstimateRow:
    type: str
    bpw: float
    weights_bytes: int
    kv_bytes: int
    overhead_bytes: int
    total_bytes: int
    fits: str
    real_file: str | None = None
    real_bytes: int | None = None
    size_error_pct: float | None = None
    rss_bytes: int | None = None
    rss_error_pct: float | None = None


def available_ram() -> int:
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:  # pragma: no cover
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))


def _fits(total: int, avail: int) -> str:
    if total <= 0.8 * avail:
        return "sim"
    if total <= avail:
        return "apertado"
    return "não"


def real_files(gguf_path: Path | None, model: str | None) -> dict[str, Path]:
    """Files of this model already on disk, by type: the model itself and what `quantize` made of it."""
    found: dict[str, Path] = {}
    if gguf_path is None:
        return found
    from models.gguf import read_gguf_info

    try:
        found[read_gguf_info(gguf_path).file_type] = gguf_path
    except ProjectError:
        pass
    from models.settings import get_settings

    qdir = get_settings().home / "quants"
    stems = {gguf_path.stem}
    if model:
        stems.add(Path(model).stem if model.endswith(".gguf") else model)
    from .convert import quantized_name

    for qname in QUANT_TYPES:
        candidates = [qdir / f"{stem}-{qname.lower()}.gguf" for stem in stems]
        candidates.append(gguf_path.parent / quantized_name(gguf_path, qname))  # what `quantize -o DIR` writes
        for p in candidates:
            if p.exists() and qname not in found:
                found[qname] = p
    return found


def estimate(model: str | None = None, params: str | None = None, n_ctx: int = 4096, types: list[str] | None = None,
             measure_rss: bool = False, progress: bool = False) -> dict:
    """The estimate table (as a dict), with real sizes (and RSS) of the files present for comparison."""
    shape, scale, gguf_path = resolve_shape(model, params, progress)
    types = [get_type(t).name for t in (types or ESTIMATE_TYPES)]
    avail = available_ram()
    reals = real_files(gguf_path, model)
    rows = []
    for t in types:
        if scale is not None:
            bpw = effective_bpw(shape, t)
            weights = int(scale * bpw / 8)
            kv = 0
            overhead = int(PROCESS_BASE_BYTES)
        else:
            weights = weight_bytes(shape, t)
            bpw = effective_bpw(shape, t)
            kv = kv_cache_bytes(shape, n_ctx)
            overhead = runtime_overhead_bytes(shape, n_ctx)
        total = weights + kv + overhead
        row = EstimateRow(t, round(bpw, 3), weights, kv, overhead, total, _fits(total, avail))
        if t in reals:
            real = reals[t].stat().st_size
            row.real_file, row.real_bytes = str(reals[t]), real
            row.size_error_pct = round(100.0 * (weights - real) / real, 2)
            if measure_rss:
                from .measure import measure_rss as _rss

                rss = _rss(reals[t], n_ctx)
                row.rss_bytes = rss
                row.rss_error_pct = round(100.0 * (total - rss) / rss, 2)
        rows.append(row)
    return {"model": shape.name, "source": shape.source, "n_params": int(scale) if scale else shape.n_params,
            "n_ctx": n_ctx, "shape": {k: getattr(shape, k) for k in ("arch", "n_layer", "n_embd", "n_head", "n_head_kv", "head_dim", "n_ff", "n_vocab")},
            "kv_known": scale is None, "available_ram": avail, "rows": [asdict(r) for r in rows]}


def format_table(result: dict) -> str:
    def gb(n):
        return "—" if n is None else f"{n / GB:.2f}"

    ctx = result["n_ctx"]
    lines = [f"Estimativa de memória — {result['model']} ({result['n_params'] / 1e9:.3f} B parâmetros; fonte: {result['source']})",
             f"RAM disponível agora: {result['available_ram'] / GB:.1f} GB · contexto: {ctx} tokens (KV cache em f16)", "",
             f"| tipo | bits/peso | pesos (GB) | KV @ {ctx} (GB) | buffers (GB) | total (GB) | cabe aqui? | arquivo real (GB) | erro | RSS medido (GB) | erro |",
             "|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|"]
    for r in result["rows"]:
        err = "—" if r["size_error_pct"] is None else f"{r['size_error_pct']:+.1f} %"
        rerr = "—" if r["rss_error_pct"] is None else f"{r['rss_error_pct']:+.1f} %"
        kv = gb(r["kv_bytes"]) if result["kv_known"] else "?"
        lines.append(f"| {r['type']} | {r['bpw']:.3f} | {gb(r['weights_bytes'])} | {kv} | {gb(r['overhead_bytes'])} | "
                     f"{gb(r['total_bytes'])} | {r['fits']} | {gb(r['real_bytes'])} | {err} | {gb(r['rss_bytes'])} | {rerr} |")
    if not result["kv_known"]:
        lines.append("\nKV cache desconhecido para um tamanho genérico: use --model (ou --params 7B/13B/70B, formas conhecidas).")
    return "\n".join(lines)
