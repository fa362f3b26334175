"""Shared pieces for every capability: settings, model registry, GGUF checks, llama.cpp runtime, prompts, errors."""
from .errors import ProjectError
from .registry import ModelSpec, all_models, register_model, resolve
from .settings import get_settings

__all__ = ["ProjectError", "ModelSpec", "all_models", "register_model", "resolve", "get_settings",
           "fetch", "load_model", "stream_chat", "chat"]


def __getattr__(name):
    # Heavy imports (llama_cpp, tqdm) only when used.
    if name == "fetch":
        from .fetch import fetch
        return fetch
    if name in ("load_model", "stream_chat", "chat"):
        from . import runtime
        return getattr(runtime, name)
    raise AttributeError(name)
