"""Importance matrices: compute one with transformers, read llama-imatrix files, hand them to the quantizer.

llama-cpp-python has no imatrix tool (`llama-imatrix` is a C++ program it does not ship, and its Python API
gives no access to the activations of each matrix multiplication). What the quantizer needs is simple,
though: for every weight matrix, the mean of the squared input activations per input column, over some
calibration text. We compute exactly that with forward hooks on the full-precision HF model (the same
model the F16 reference is converted from) and map HF module names to GGUF tensor names with the
converter's own table (gguf-py TensorNameMap). Files written by `llama-imatrix` (GGUF or legacy .dat)
are read too. llama-cpp-python ≥ 0.3.3x exposes `llama_model_quantize_params.imatrix` as a
NULL-terminated array of `llama_model_imatrix_data {name, data, size}`; `to_c_array` builds it.
"""
from __future__ import annotations

import json
import os
import struct
import sys
import time
from pathlib import Path

import numpy as np

from models.errors import ProjectError
from models.settings import REPO_ROOT

DEFAULT_CALIBRATION = REPO_ROOT / "data" / "wiki_pt"  # the project's own Portuguese corpus (not the held-out text)


def load_imatrix(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict]:
    """{tensor name: mean squared activation per column} from a GGUF (new) or .dat (legacy) imatrix file."""
    path = Path(path)
    if not path.is_file():
        raise ProjectError(f"arquivo de imatrix não encontrado: {path}")
    with open(path, "rb") as fh:
        magic = fh.read(4)
    entries = _load_gguf(path) if magic == b"GGUF" else _load_legacy(path)
    if not entries[0]:
        raise ProjectError(f"a imatrix {path} não tem nenhum tensor")
    for name, values in entries[0].items():
        if not np.all(np.isfinite(values)):
            raise ProjectError(f"a imatrix {path} tem valores não finitos em {name}", hint="gere-a de novo")
    return entries


def _load_gguf(path: Path) -> tuple[dict[str, np.ndarray], dict]:
    from models.hf import enable_bundled_gguf

    try:
        enable_bundled_gguf()
    except Exception:
        pass
    import gguf

    reader = gguf.GGUFReader(str(path))
    sums, counts = {}, {}
    for t in reader.tensors:
        if t.name.endswith(".in_sum2"):
            sums[t.name[: -len(".in_sum2")]] = np.asarray(t.data, dtype=np.float32)
        elif t.name.endswith(".counts"):
            counts[t.name[: -len(".counts")]] = np.asarray(t.data, dtype=np.float32)
    out = {}
    for name, s in sums.items():
        c = counts.get(name)
        if c is None:
            raise ProjectError(f"imatrix GGUF inválida: {name}.in_sum2 sem {name}.counts")
        c = c.reshape(-1)
        s = s.reshape(len(c), -1)
        values = np.where(c[:, None] > 0, s / np.maximum(c[:, None], 1), 1.0)
        out[name] = values.reshape(-1).astype(np.float32)
    meta = {"format": "gguf"}
    field = reader.fields.get("imatrix.chunk_count")
    if field is not None:
        meta["chunks"] = int(field.parts[field.data[0]][0])
    return out, meta


def _load_legacy(path: Path) -> tuple[dict[str, np.ndarray], dict]:
    data = path.read_bytes()
    pos = 0

    def take(fmt):
        nonlocal pos
        size = struct.calcsize(fmt)
        if pos + size > len(data):
            raise ProjectError(f"imatrix truncada ou em formato desconhecido: {path}")
        value = struct.unpack_from(fmt, data, pos)
        pos += size
        return value

    (n_entries,) = take("<i")
    if not 0 < n_entries < 1_000_000:
        raise ProjectError(f"{path} não parece uma imatrix (.dat legado ou .gguf)")
    out = {}
    for _ in range(n_entries):
        (n,) = take("<i")
        name = data[pos: pos + n].decode("utf-8", errors="replace")
        pos += n
        ncall, nval = take("<ii")
        values = np.frombuffer(data, dtype="<f4", count=nval, offset=pos).astype(np.float32)
        pos += 4 * nval
        out[name] = values / ncall if ncall > 0 else values  # what llama-quantize does when loading .dat
    meta = {"format": "dat"}
    if pos + 4 <= len(data):
        meta["chunks"] = struct.unpack_from("<i", data, pos)[0]
    return out, meta


def save_imatrix(path: str | os.PathLike, sums: dict[str, np.ndarray], counts: dict[str, int], dataset: str,
                 chunks: int, chunk_size: int) -> Path:
    """Write the GGUF imatrix format of llama-imatrix (`<name>.in_sum2`, `<name>.counts`); atomic."""
    from models.hf import enable_bundled_gguf

    from .convert import atomic_output

    try:
        enable_bundled_gguf()
    except Exception:
        pass
    import gguf

    path = Path(path)
    with atomic_output(path) as tmp:
        writer = gguf.GGUFWriter(str(tmp), arch="imatrix")
        writer.add_type("imatrix")
        writer.add_array("imatrix.datasets", [dataset])
        writer.add_uint32("imatrix.chunk_count", chunks)
        writer.add_uint32("imatrix.chunk_size", chunk_size)
        for name in sorted(sums):
            writer.add_tensor(f"{name}.in_sum2", sums[name].astype(np.float32).reshape(1, -1))
            writer.add_tensor(f"{name}.counts", np.array([[float(counts[name])]], dtype=np.float32))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
    return path


def to_c_array(entries: dict[str, np.ndarray]):
    """The NULL-terminated llama_model_imatrix_data array; returns (array, objects to keep alive)."""
    import ctypes

    import llama_cpp

    Entry = llama_cpp.llama_model_imatrix_data
    array = (Entry * (len(entries) + 1))()
    keep = []
    for i, (name, values) in enumerate(entries.items()):
        values = np.ascontiguousarray(values, dtype=np.float32)
        cname = ctypes.c_char_p(name.encode())
        keep += [values, cname]
        array[i].name = cname.value
        array[i].data = values.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
        array[i].size = values.size
    array[len(entries)].name = None
    keep.append(array)
    return ctypes.cast(array, ctypes.POINTER(Entry)), keep


def calibration_text(source: str | os.PathLike | None = None, max_chars: int = 400_000) -> tuple[str, str]:
    """Text to compute activations on: a .txt file, or the project's corpus (JSONL/parquet article texts)."""
    src = Path(source) if source else DEFAULT_CALIBRATION
    if src.is_file():
        return src.read_text(encoding="utf-8")[:max_chars], src.name
    if src.is_dir():
        texts, total = [], 0
        for p in sorted(src.rglob("*.jsonl")):
            for line in p.read_text(encoding="utf-8").splitlines():
                try:
                    text = json.loads(line).get("text", "")
                except ValueError:
                    continue
                texts.append(text)
                total += len(text)
                if total >= max_chars:
                    break
        if not texts:
            import glob

            for p in sorted(glob.glob(str(src / "**" / "*.parquet"), recursive=True)):
                import pyarrow.parquet as pq

                for text in pq.read_table(p, columns=["text"]).column("text").to_pylist():
                    texts.append(text)
                    total += len(text)
                    if total >= max_chars:
                        break
                if total >= max_chars:
                    break
        if texts:
            return "\n\n".join(texts)[:max_chars], f"{src.name} (corpus do projeto)"
    raise ProjectError(f"texto de calibração não encontrado: {src}", hint="passe --text ARQUIVO.txt")


def compute_imatrix(model: str, out: str | os.PathLike, text: str | os.PathLike | None = None, n_tokens: int = 8192,
                    chunk: int = 512, progress: bool = True) -> dict:
    """Mean squared input activation per column of every linear layer, on `n_tokens` of calibration text.

    `model` is an HF folder, or a GGUF / registry name (dequantized to HF first, cached).
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from .convert import source_kind

    kind = source_kind(str(model))
    if kind in ("gguf", "registry"):
        from models.fetch import fetch
        from models.hf import gguf_to_hf

        path = fetch(model, progress=progress) if kind == "registry" else Path(model)
        hf_dir = gguf_to_hf(path, progress=progress)
    elif kind == "hub":
        from .convert import download_hf

        hf_dir = download_hf(str(model), progress)
    else:
        hf_dir = Path(model)
    cfg = json.loads((Path(hf_dir) / "config.json").read_text())
    name_map = _gguf_name_map(cfg)
    body, dataset = calibration_text(text)
    tok = AutoTokenizer.from_pretrained(str(hf_dir))
    ids = tok(body, add_special_tokens=False)["input_ids"][:n_tokens]
    n_chunks = len(ids) // chunk
    if n_chunks == 0:
        raise ProjectError(f"texto de calibração curto demais: {len(ids)} tokens, um bloco tem {chunk}")
    torch.set_num_threads(os.cpu_count() or 2)
    lm = AutoModelForCausalLM.from_pretrained(str(hf_dir), dtype=torch.float32)
    lm.eval()
    sums: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = {}
    hooks = []
    unmapped = []
    for mod_name, module in lm.named_modules():
        if not isinstance(module, torch.nn.Linear) or mod_name.endswith("lm_head"):
            continue  # llama-imatrix skips output.weight by default too
        gguf_name = name_map(mod_name)
        if gguf_name is None:
            unmapped.append(mod_name)
            continue

        def hook(_m, inputs, _out, key=gguf_name):
            x = inputs[0].detach().reshape(-1, inputs[0].shape[-1]).to(torch.float64)
            sums[key] = sums.get(key, 0) + (x * x).sum(dim=0)
            counts[key] = counts.get(key, 0) + x.shape[0]

        hooks.append(module.register_forward_hook(hook))
    from tqdm.auto import tqdm

    start = time.perf_counter()
    with torch.no_grad():
        for i in tqdm(range(n_chunks), desc="imatrix", unit="bloco", disable=not progress, file=sys.stderr, leave=False):
            batch = torch.tensor([ids[i * chunk:(i + 1) * chunk]])
            lm(input_ids=batch)
    for h in hooks:
        h.remove()
    arrays = {k: v.numpy().astype(np.float32) for k, v in sums.items()}
    save_imatrix(out, arrays, counts, dataset, n_chunks, chunk)
    return {"output": str(out), "tensors": len(arrays), "chunks": n_chunks, "chunk_size": chunk, "tokens": n_chunks * chunk,
            "dataset": dataset, "seconds": round(time.perf_counter() - start, 1), "unmapped": unmapped[:5]}


def _gguf_name_map(cfg: dict):
    """HF module name -> GGUF tensor name ('model.layers.3.mlp.down_proj' -> 'blk.3.ffn_down.weight')."""
    from models.hf import enable_bundled_gguf

    try:
        enable_bundled_gguf()
    except Exception:
        pass
    import gguf

    arch_name = (cfg.get("architectures") or ["?"])[0]
    try:
        import conversion

        arch = conversion.get_model_class(arch_name).model_arch
    except Exception as exc:
        raise ProjectError(f"não sei mapear os tensores da arquitetura {arch_name} para nomes GGUF") from exc
    n_blocks = int(cfg.get("num_hidden_layers") or cfg.get("n_layer") or 0)
    tmap = gguf.get_tensor_name_map(arch, n_blocks)

    def lookup(mod_name: str) -> str | None:
        name = tmap.get_name(mod_name + ".weight", try_suffixes=(".weight",))
        if not name:
            return None
        # gguf's TensorNameMap returns the suffix it was asked to try ('blk.3.ffn_down.weight'); older copies did not
        return name if name.endswith(".weight") else f"{name}.weight"

    return lookup
