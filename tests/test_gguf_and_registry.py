"""GGUF validation and the model registry: bad files give one clear error, references resolve."""
from __future__ import annotations

import json
import shutil
import zipfile

import pytest

from models.errors import ProjectError
from models.fetch import fetch
from models.gguf import read_gguf_info, sha256_file
from models.registry import BUILTIN, PipPart, ModelSpec, register_model, resolve, all_models


def test_reads_real_llama_header(tiny_model_path):
    info = read_gguf_info(tiny_model_path)
    assert info.architecture == "llama"
    assert info.file_type == "Q4_1"
    assert 130e6 < info.n_params < 140e6
    assert info.expected_size == info.file_size
    assert info.chat_template and "im_start" in info.chat_template
    assert info.kv_cache_bytes(2048) > 0


def test_truncated_gguf_is_rejected(tiny_model_path, tmp_path):
    cut = tmp_path / "cut.gguf"
    with open(tiny_model_path, "rb") as src, open(cut, "wb") as dst:
        dst.write(src.read(20_000_000))
    with pytest.raises(ProjectError, match="truncado"):
        read_gguf_info(cut)


def test_header_cut_is_rejected(tiny_model_path, tmp_path):
    cut = tmp_path / "tiny.gguf"
    cut.write_bytes(tiny_model_path.read_bytes()[:1000])
    with pytest.raises(ProjectError, match="truncado"):
        read_gguf_info(cut)


def test_garbage_renamed_to_gguf_is_rejected(tmp_path):
    fake = tmp_path / "modelo.gguf"
    fake.write_bytes(b"<html>not a model</html>" * 100)
    with pytest.raises(ProjectError, match="não é um arquivo GGUF"):
        read_gguf_info(fake)


def test_missing_file_is_rejected(tmp_path):
    with pytest.raises(ProjectError, match="não encontrado"):
        read_gguf_info(tmp_path / "nada.gguf")


def test_registry_has_required_entries():
    for name in ("qwen2.5-0.5b-instruct", "qwen2.5-1.5b-instruct", "smollm2-135m-instruct", "llama-2-7b-chat"):
        spec = BUILTIN[name]
        assert spec.license and spec.prompt_format
    assert BUILTIN["llama-2-7b-chat"].chat_format == "llama-2"
    assert BUILTIN["smollm2-135m-instruct"].arch == "llama"


@pytest.mark.parametrize("ref, source, repo, file", [
    ("TheBloke/Llama-2-7B-Chat-GGUF:llama-2-7b-chat.Q4_K_M.gguf", "hub", "TheBloke/Llama-2-7B-Chat-GGUF", "llama-2-7b-chat.Q4_K_M.gguf"),
    ("TheBloke/Llama-2-7B-Chat-GGUF/llama-2-7b-chat.Q2_K.gguf", "hub", "TheBloke/Llama-2-7B-Chat-GGUF", "llama-2-7b-chat.Q2_K.gguf"),
    ("TheBloke/Llama-2-7B-Chat-GGUF", "hub", "TheBloke/Llama-2-7B-Chat-GGUF", None),
    ("./nao/existe.gguf", "local", None, None),
])
def test_resolve_references(ref, source, repo, file):
    spec = resolve(ref)
    assert spec.source == source
    assert spec.hub_repo == repo
    assert spec.hub_file == file


def test_unknown_name_is_a_clear_error():
    with pytest.raises(ProjectError, match="modelo desconhecido"):
        resolve("modelo-que-nao-existe")


def test_hub_fetch_offline_is_a_clear_error(isolated_home, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ProjectError, match="Hugging Face"):
        fetch("someone/some-model-GGUF:model.Q4_K_M.gguf", progress=False)


def test_register_local_model(isolated_home, tiny_model_path):
    register_model("meu-modelo", tiny_model_path, quant="Q4_1", base_model="smollm2-135m-instruct")
    spec = all_models()["meu-modelo"]
    assert spec.source == "local" and spec.base_model == "smollm2-135m-instruct"
    assert fetch("meu-modelo", progress=False) == tiny_model_path.resolve()
    with pytest.raises(ProjectError):
        register_model("qwen2.5-0.5b-instruct", tiny_model_path)


def _split_into_wheels(src, downloads, n_parts):
    """Real wheels holding parts of a GGUF, like the pip packages that carry the embedded models."""
    data = src.read_bytes()
    step = len(data) // n_parts + 1
    parts = []
    for i in range(n_parts):
        pkg = f"fake-gguf-part{i + 1}"
        member = f"fake_gguf_part{i + 1}/data/part{i + 1:02d}.bin"
        with zipfile.ZipFile(downloads / f"fake_gguf_part{i + 1}-1.0-py3-none-any.whl", "w") as zf:
            zf.writestr(member, data[i * step:(i + 1) * step])
        parts.append(PipPart(pkg, "1.0", member))
    return tuple(parts), len(data)


def test_assembly_resumes_after_interruption(isolated_home, tiny_model_path):
    downloads = isolated_home / "downloads"
    downloads.mkdir(parents=True)
    parts, size = _split_into_wheels(tiny_model_path, downloads, 3)
    spec = ModelSpec(name="fake", description="", filename="fake.gguf", source="pip", size=size,
                     sha256=sha256_file(tiny_model_path), pip_parts=parts)
    dest = spec.local_path
    dest.parent.mkdir(parents=True)
    # Simulate a run killed during part 2: part 1 done, then some stray bytes of part 2.
    first = zipfile.ZipFile(downloads / "fake_gguf_part1-1.0-py3-none-any.whl").read(parts[0].member)
    partial = dest.with_name(dest.name + ".partial")
    partial.write_bytes(first + b"garbage from an interrupted write")
    dest.with_name(dest.name + ".partial.json").write_text(json.dumps({"parts_done": 1, "offset": len(first)}))

    path = fetch(spec, progress=False)
    assert path == dest.resolve()
    assert sha256_file(path) == spec.sha256
    assert not partial.exists()
    # A second fetch reuses the verified file without rehashing it.
    assert fetch(spec, progress=False) == path


def test_checksum_mismatch_leaves_no_file(isolated_home, tiny_model_path):
    downloads = isolated_home / "downloads"
    downloads.mkdir(parents=True)
    parts, size = _split_into_wheels(tiny_model_path, downloads, 2)
    spec = ModelSpec(name="fake", description="", filename="fake.gguf", source="pip", size=size,
                     sha256="0" * 64, pip_parts=parts)
    with pytest.raises(ProjectError, match="checksum errado"):
        fetch(spec, progress=False)
    assert not spec.local_path.exists()
    assert not spec.local_path.with_name("fake.gguf.partial").exists()


def test_corrupted_cached_model_is_rebuilt(isolated_home, tiny_model_path):
    downloads = isolated_home / "downloads"
    downloads.mkdir(parents=True)
    parts, size = _split_into_wheels(tiny_model_path, downloads, 2)
    spec = ModelSpec(name="fake", description="", filename="fake.gguf", source="pip", size=size,
                     sha256=sha256_file(tiny_model_path), pip_parts=parts)
    path = fetch(spec, progress=False)
    with open(path, "r+b") as fh:  # flip bytes in place, size unchanged
        fh.seek(size // 2)
        fh.write(b"\x00" * 64)
    assert sha256_file(fetch(spec, progress=False)) == spec.sha256
