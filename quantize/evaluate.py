"""convert → quantize → measure every type → results.json, a Markdown report and plots, resumable.

The reference is the model's full-precision GGUF: the model itself when it is F16/F32/BF16, a file given
with --reference, or — for a model that only exists quantized, like the embedded ones — its dequantization
to F16 through transformers (then quality numbers are relative to the dequantized file, and the row of the
model's own type is close to lossless by construction; the report says so).

Each (file sha256, settings) is measured once, in its own process, and kept in a results registry
(`<home>/quantize/registry.json`); a stopped run resumes where it was, `--force` measures again.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from models.errors import ProjectError
from models.gguf import read_gguf_info, sha256_file
from models.settings import REPO_ROOT, get_settings

from .convert import FLOAT_FILE_TYPES, convert, quantize_file
from .types import DEFAULT_EVAL_TYPES, NATIVE, parse_types

HELDOUT = REPO_ROOT / "data" / "heldout" / "pt_heldout.txt"
MEASURE_VERSION = 1  # bump when the measurement itself changes: old registry entries stop matching

# llama.cpp tools/perplexity/README.md, "LLaMA 2 vs. LLaMA 3 Quantization comparison" (revision f364eb6f,
# Wikitext-2, n_ctx 512, CUDA): Llama-2-7B against its FP16 logits.
LLAMA2_7B_PUBLISHED = {
    "Q8_0": {"ppl_ratio": 1.000689, "kld": 0.000369, "same_top_pct": 98.846},
    "Q6_K": {"ppl_ratio": 1.002406, "kld": 0.002098, "same_top_pct": 97.520},
    "Q4_K_M": {"ppl_ratio": 1.014242, "kld": 0.012686, "same_top_pct": 94.665},
    "Q2_K": {"ppl_ratio": 1.107955, "kld": 0.108903, "same_top_pct": 85.584},
}
PUBLISHED_SOURCE = ("llama.cpp README/perplexity docs (tools/perplexity/README.md, tabela \"LLaMA 2 vs. LLaMA 3 "
                    "Quantization comparison\", revisão f364eb6f: Wikitext-2, n_ctx 512, referência FP16)")


@dataclass
class EvalSettings:
    ppl_ctx: int = 512            # llama.cpp's default chunk for perplexity
    ppl_tokens: int | None = None  # None: the whole held-out text
    n_ctx: int = 1024             # context of phase A (speed, intents, RSS), filled once so RSS counts all of it
    intents: int = 30             # messages of the JSON task (0 = skip)
    pp_tokens: int = 256
    gen_tokens: int = 64
    repeats: int = 2
    heldout: str = str(HELDOUT)

    def fingerprint(self) -> dict:
        d = asdict(self)
        d["heldout_sha"] = _sha_text(Path(self.heldout))
        from .intents import INTENTS_FILE, SCHEMA_FILE

        d["intents_sha"] = _sha_text(INTENTS_FILE)
        d["schema_sha"] = _sha_text(SCHEMA_FILE)
        d["threads"] = get_settings().n_threads
        d["version"] = MEASURE_VERSION
        d.pop("heldout")
        return d


def _sha_text(path: Path) -> str:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]
    except OSError:
        raise ProjectError(f"arquivo não encontrado: {path}")


def _say(msg: str, enabled: bool = True) -> None:
    if enabled:
        print(msg, file=sys.stderr, flush=True)


def file_sha256(path: Path) -> str:
    """sha256 of a model file, remembered in `<file>.sha256` (keyed by size and mtime; same format as models.fetch)."""
    path = Path(path)
    marker = path.with_name(path.name + ".sha256")
    st = path.stat()
    try:
        saved = json.loads(marker.read_text())
        if saved.get("size") == st.st_size and saved.get("mtime_ns") == st.st_mtime_ns:
            return saved["sha256"]
    except (OSError, ValueError, KeyError):
        pass
    sha = sha256_file(path)
    try:
        tmp = marker.with_name(marker.name + ".tmp")
        tmp.write_text(json.dumps({"sha256": sha, "size": st.st_size, "mtime_ns": st.st_mtime_ns}))
        os.replace(tmp, marker)
    except OSError:
        pass
    return sha


# ---------------------------------------------------------------------------------------------------------
# Results registry

class Registry:
    """{key: result} in one JSON file, rewritten atomically after every measurement."""

    def __init__(self, path: Path | None = None):
        self.path = Path(path) if path else get_settings().home / "quantize" / "registry.json"

    def load(self) -> dict:
        try:
            return json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except ValueError as exc:
            raise ProjectError(f"registro de resultados corrompido: {self.path} ({exc})", hint="apague o arquivo e rode de novo")

    def get(self, key: str) -> dict | None:
        return self.load().get(key)

    def put(self, key: str, record: dict) -> None:
        data = self.load()
        data[key] = record
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".registry-", suffix=".json")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, ensure_ascii=False)
        os.replace(tmp, self.path)


def registry_key(sha: str, fingerprint: dict) -> str:
    blob = json.dumps(fingerprint, sort_keys=True).encode()
    return f"{sha[:16]}-{hashlib.sha256(blob).hexdigest()[:12]}"


# ---------------------------------------------------------------------------------------------------------

def hardware() -> dict:
    cpu = "?"
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram = None
    try:
        import psutil

        ram = psutil.virtual_memory().total
    except ImportError:
        pass
    try:
        import llama_cpp

        llama_version = llama_cpp.__version__
    except ImportError:
        llama_version = "?"
    return {"cpu": cpu, "cores": os.cpu_count(), "ram_bytes": ram, "os": f"{platform.system()} {platform.machine()}",
            "python": platform.python_version(), "llama_cpp_python": llama_version,
            "threads": get_settings().n_threads}


def quant_dir() -> Path:
    d = get_settings().home / "quants"
    d.mkdir(parents=True, exist_ok=True)
    return d


@dataclass
class Variant:
    label: str
    type: str
    path: Path
    role: str = "candidate"  # "reference" | "candidate"
    native: bool = False
    info: dict = field(default_factory=dict)


def prepare_reference(model_ref: str, reference: str | None, allow_quantized_reference: bool, progress: bool) -> tuple[Path, dict]:
    """(reference GGUF, description) — see the module docstring."""
    from models.fetch import fetch
    from models.registry import resolve

    spec = resolve(model_ref)
    model_path = fetch(spec, progress=progress)
    model_info = read_gguf_info(model_path)
    if reference:
        ref_path = Path(reference).expanduser() if Path(reference).expanduser().exists() else fetch(reference, progress=progress)
        ref_info = read_gguf_info(ref_path)
        if ref_info.file_type not in FLOAT_FILE_TYPES and not allow_quantized_reference:
            raise ProjectError(
                f"a referência {ref_path.name} já está quantizada ({ref_info.file_type}); KLD e PPL ficariam relativos a ela",
                hint="use um GGUF F16/F32, deixe sem --reference para desquantizar o modelo, ou passe --allow-quantized-reference")
        return ref_path, {"kind": "given", "path": str(ref_path), "file_type": ref_info.file_type,
                          "note": None if ref_info.file_type in FLOAT_FILE_TYPES else
                          f"referência quantizada ({ref_info.file_type}) aceita com --allow-quantized-reference"}
    if model_info.file_type in FLOAT_FILE_TYPES:
        return model_path, {"kind": "model", "path": str(model_path), "file_type": model_info.file_type, "note": None}
    dst = quant_dir() / f"{spec.name if spec.source != 'local' else model_path.stem}-f16.gguf"
    if not dst.exists():
        _say(f"==> referência: {model_path.name} ({model_info.file_type}) desquantizado para HF (transformers) e convertido para F16", progress)
        convert(str(model_path), dst, "f16", progress=progress)
    note = (f"O modelo só existe quantizado ({model_info.file_type}); a referência é a sua desquantização para F16. "
            f"PPL/KLD são relativos ao {model_info.file_type} desquantizado: a linha {model_info.file_type} fica quase sem "
            f"perda por construção e os tipos menores mostram a perda adicional; tipos acima de {model_info.file_type} "
            f"não podem recuperar o que a quantização original perdeu.")
    return dst, {"kind": "dequantized", "path": str(dst), "file_type": "F16", "source_type": model_info.file_type, "note": note}


def plan_variants(model_ref: str, types: list[str], ref_path: Path, imatrix: str | None, progress: bool) -> list[Variant]:
    """Files to measure (made now when missing), reference first."""
    from models.fetch import fetch
    from models.registry import resolve

    spec = resolve(model_ref)
    model_path = fetch(spec, progress=progress)
    model_type = read_gguf_info(model_path).file_type
    ref_type = read_gguf_info(ref_path).file_type
    stem = spec.name if spec.source != "local" else model_path.stem
    variants = [Variant(f"{ref_type} (referência)", ref_type, ref_path, role="reference")]
    for t in types:
        if t == NATIVE:
            if model_path == ref_path:
                continue
            variants.append(Variant(f"{model_type} (arquivo original)", model_type, model_path, native=True))
            continue
        if t == ref_type:
            continue
        suffix = "-imat" if imatrix else ""
        dst = quant_dir() / f"{stem}-{t.lower()}{suffix}.gguf"
        if not dst.exists():
            _say(f"==> quantizando {stem} para {t}{' com imatrix' if imatrix else ''}", progress)
            quantize_file(ref_path, dst, t, imatrix=imatrix, progress=progress)
        variants.append(Variant(t + (" +imatrix" if imatrix else ""), t, dst))
    return variants


def _file_info(path: Path) -> dict:
    info = read_gguf_info(path)
    return {"path": str(path), "file": path.name, "sha256": file_sha256(path), "size": info.file_size,
            "n_params": info.n_params, "bits_per_weight": round(info.bits_per_weight, 4), "file_type": info.file_type,
            "tensor_types": info.tensor_types}


def _run_worker(spec: dict, progress: bool) -> dict:
    with tempfile.TemporaryDirectory(prefix="quantize-measure-") as tmp:
        spec_path, out_path = Path(tmp) / "spec.json", Path(tmp) / "out.json"
        spec_path.write_text(json.dumps(spec))
        cmd = [sys.executable, "-m", "quantize.measure", str(spec_path), str(out_path)]
        proc = subprocess.Popen(cmd, cwd=str(REPO_ROOT), stdout=subprocess.DEVNULL,
                                stderr=None if progress else subprocess.PIPE, text=True)
        try:
            _, err = proc.communicate()
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        if proc.returncode != 0 or not out_path.exists():
            tail = (err or "").strip().splitlines()[-1:] or [f"código {proc.returncode}"]
            raise ProjectError(f"a medição de {spec['label']} falhou: {tail[0][:300]}")
        return json.loads(out_path.read_text())


def evaluate(model: str, types: list[str] | str | None = None, out_dir: str | os.PathLike | None = None, *,
             reference: str | None = None, allow_quantized_reference: bool = False, imatrix: str | None = None,
             settings: EvalSettings | None = None, force: bool = False, progress: bool = True,
             registry: Registry | None = None, plots: bool = True) -> dict:
    """Measure every type of `model`; write results.json, report.md and plots into `out_dir`."""
    from models.fetch import fetch
    from models.registry import resolve

    from .report import write_report

    settings = settings or EvalSettings()
    types = parse_types(types or DEFAULT_EVAL_TYPES, allow_native=True)
    if settings.ppl_tokens is not None and settings.ppl_tokens < 32:
        raise ProjectError("--ppl-tokens deve ser pelo menos 32")
    spec = _registry_spec(resolve(model))
    model = spec.name if spec.source != "local" else model
    out = Path(out_dir) if out_dir else REPO_ROOT / "quantize" / "results" / spec.name.replace("/", "_")
    out.mkdir(parents=True, exist_ok=True)
    registry = registry or Registry()
    started = time.perf_counter()

    ref_path, ref_desc = prepare_reference(model, reference, allow_quantized_reference, progress)
    variants = plan_variants(model, types, ref_path, imatrix, progress)
    fp = settings.fingerprint()
    ref_sha = file_sha256(ref_path)
    kld_dir = get_settings().home / "quantize" / "kld"
    kld_stem = kld_dir / f"{ref_sha[:16]}-{registry_key(ref_sha, fp)[-12:]}"
    rows = []
    for i, v in enumerate(variants, 1):
        v.info = _file_info(v.path)
        vfp = dict(fp, role=v.role, reference=ref_sha[:16])
        key = registry_key(v.info["sha256"], vfp)
        cached = None if force else registry.get(key)
        if cached and v.role == "reference" and not kld_stem.with_suffix(".npy").exists():
            cached = None  # the reference's logits file is gone: measure it again
        if cached:
            _say(f"==> [{i}/{len(variants)}] {v.label}: já medido (registro {key}); --force mede de novo", progress)
            result = cached["result"]
        else:
            _say(f"==> [{i}/{len(variants)}] {v.label}: medindo {v.path.name} ({v.info['size'] / 1e6:.0f} MB)", progress)
            t0 = time.perf_counter()
            job = {"label": v.label, "path": str(v.path), "role": v.role, "kld_base": str(kld_stem),
                   "heldout": settings.heldout, "ppl_ctx": settings.ppl_ctx, "ppl_tokens": settings.ppl_tokens,
                   "n_ctx": settings.n_ctx, "intents": settings.intents, "pp_tokens": settings.pp_tokens,
                   "gen_tokens": settings.gen_tokens, "repeats": settings.repeats}
            try:
                result = _run_worker(job, progress)
            except ProjectError as exc:
                if v.role == "reference":
                    raise
                _say(f"    falhou: {exc.one_line()}", progress)
                rows.append({"label": v.label, "type": v.type, "native": v.native, "role": v.role, "file": v.info,
                             "error": exc.one_line()})
                continue
            result["measure_s"] = round(time.perf_counter() - t0, 1)
            registry.put(key, {"result": result, "file": v.info, "settings": vfp, "hardware": hardware(),
                               "measured_at": time.strftime("%Y-%m-%d %H:%M:%S")})
            _say(f"    pronto em {result['measure_s']:.0f} s", progress)
        rows.append({"label": v.label, "type": v.type, "native": v.native, "role": v.role, "file": v.info,
                     "registry_key": key, "cached": bool(cached), **result})
    results = {
        "model": spec.name, "model_file": str(fetch(spec, progress=False)),
        "model_license": read_gguf_info(fetch(spec, progress=False)).metadata.get("general.license") or spec.license or None,
        "reference": ref_desc, "types": types, "settings": asdict(settings), "fingerprint": fp,
        "hardware": hardware(), "created": time.strftime("%Y-%m-%d %H:%M:%S"),
        "imatrix": imatrix, "variants": rows, "llama2_7b_published": LLAMA2_7B_PUBLISHED,
        "published_source": PUBLISHED_SOURCE, "seconds": round(time.perf_counter() - started, 1),
    }
    _add_derived(results)
    write_report(results, out, plots=plots)
    return results


def _registry_spec(spec):
    """A local path that is a registry model's file is reported under the registry name (licence, base model)."""
    from models.registry import all_models

    if spec.source != "local" or not spec.path:
        return spec
    target = Path(spec.path).resolve()
    for other in all_models().values():
        if other.source != "hub" and other.local_path.resolve() == target:
            return other
    return spec


def _add_derived(results: dict) -> None:
    """Ratios against the reference row, and the memory estimate next to what was measured."""
    from .estimate import kv_cache_bytes, runtime_overhead_bytes, shape_from_gguf, weight_bytes

    rows = [r for r in results["variants"] if "error" not in r]
    ref = next((r for r in rows if r["role"] == "reference"), None)
    ref_shape = shape_from_gguf(read_gguf_info(ref["file"]["path"])) if ref else None
    n_ctx = results["settings"]["n_ctx"]
    for r in rows:
        speed, rs = r.get("speed") or {}, (ref or {}).get("speed") or {}
        r["ratios"] = {
            "size": r["file"]["size"] / ref["file"]["size"] if ref else None,
            "tg": speed.get("tg_tok_s") / rs["tg_tok_s"] if speed.get("tg_tok_s") and rs.get("tg_tok_s") else None,
            "pp": speed.get("pp_tok_s") / rs["pp_tok_s"] if speed.get("pp_tok_s") and rs.get("pp_tok_s") else None,
            "rss": r["rss_peak_bytes"] / ref["rss_peak_bytes"] if ref and r.get("rss_peak_bytes") else None,
        }
        try:
            shape = shape_from_gguf(read_gguf_info(r["file"]["path"])) if r["native"] else ref_shape
            est_size = weight_bytes(shape, r["type"])
            est_rss = est_size + kv_cache_bytes(shape, n_ctx) + runtime_overhead_bytes(shape, n_ctx)
            r["estimate"] = {"size": est_size, "size_error_pct": 100 * (est_size - r["file"]["size"]) / r["file"]["size"],
                             "rss": est_rss, "rss_error_pct": 100 * (est_rss - r["rss_peak_bytes"]) / r["rss_peak_bytes"]
                             if r.get("rss_peak_bytes") else None}
        except Exception as exc:  # an architecture the estimate does not model: leave it out of that table
            r["estimate"] = {"error": str(exc)}
