"""Settings in one place: defaults overridable by environment variables (PTLLM_*)."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def _default_home() -> Path:
    # A Hugging Face Space with persistent storage mounts /data: cache models there across restarts.
    if os.environ.get("SPACE_ID") and Path("/data").is_dir() and os.access("/data", os.W_OK):
        return Path("/data/pt-llm-compare")
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "pt-llm-compare"


def _env(name: str, default, cast=str):
    value = os.environ.get(f"PTLLM_{name}")
    return default if value in (None, "") else cast(value)


@dataclass(frozen=True)
class Settings:
    home: Path = field(default_factory=lambda: Path(_env("HOME", str(_default_home()))).expanduser())
    default_model: str = field(default_factory=lambda: _env("DEFAULT_MODEL", "qwen2.5-0.5b-instruct"))
    n_ctx: int = field(default_factory=lambda: _env("N_CTX", 4096, int))
    n_threads: int = field(default_factory=lambda: _env("N_THREADS", os.cpu_count() or 2, int))
    # llama.cpp's prompt block size. The runtime keeps the KV cache of whole blocks of the previous prompt
    # (models.runtime.LoadedModel); 256 keeps 768 of the RAG prompt's fixed ~800 tokens where 512 keeps 512:
    # time to first token 4.7 s vs 7.0 s, same answers (benchmarks/results/prefix_reuse.md).
    n_batch: int = field(default_factory=lambda: _env("N_BATCH", 256, int))
    # -1 = offload every layer when llama.cpp was built with a GPU backend; 0 = CPU only.
    n_gpu_layers: int = field(default_factory=lambda: _env("N_GPU_LAYERS", -1, int))
    # Name under which `python -m finetune export` registers the default fine-tune.
    finetuned_model: str = field(default_factory=lambda: _env("FINETUNED_MODEL", "qwen2.5-0.5b-ptwiki"))
    rag_store: Path | None = field(default_factory=lambda: Path(_env("RAG_STORE", "")).expanduser() if _env("RAG_STORE", "") else None)
    max_tokens: int = field(default_factory=lambda: _env("MAX_TOKENS", 256, int))
    temperature: float = field(default_factory=lambda: _env("TEMPERATURE", 0.2, float))
    seed: int = field(default_factory=lambda: _env("SEED", 42, int))
    max_question_chars: int = field(default_factory=lambda: _env("MAX_QUESTION_CHARS", 4000, int))

    @property
    def store_dir(self) -> Path:
        """The default RAG store (chromadb + BM25) built from the shipped corpus."""
        return self.rag_store or self.home / "stores" / "wiki_pt"

    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    @property
    def downloads_dir(self) -> Path:
        return self.home / "downloads"

    @property
    def user_registry(self) -> Path:
        """Models added at run time (e.g. fine-tune exports) live here, not in the repo."""
        return Path(_env("REGISTRY", str(self.home / "registry.json"))).expanduser()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
