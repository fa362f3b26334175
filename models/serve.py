"""OpenAI-compatible API over llama_cpp.server, serving several registry models at once."""
from __future__ import annotations

import json
import os
import sys
import tempfile

from .fetch import fetch
from .registry import all_models, resolve
from .runtime import gpu_available
from .settings import get_settings


def default_served_models() -> list[str]:
    """The default model plus every locally registered one (e.g. the fine-tune export)."""
    names = [get_settings().default_model]
    names += [n for n, spec in all_models().items() if spec.source == "local" and n not in names]
    return names


def server_config(models: list[str], host: str, port: int) -> dict:
    s = get_settings()
    entries = []
    for ref in models or default_served_models():
        spec = resolve(ref)
        entry = {"model": str(fetch(spec)), "model_alias": spec.name, "n_ctx": s.n_ctx, "n_threads": s.n_threads,
                 "n_threads_batch": s.n_threads, "n_gpu_layers": s.n_gpu_layers if gpu_available() else 0}
        if spec.chat_format:
            entry["chat_format"] = spec.chat_format
        entries.append(entry)
    return {"host": host, "port": port, "models": entries}


def serve(models: list[str], host: str = "127.0.0.1", port: int = 8000, print_config: bool = False) -> int:
    config = server_config(models, host, port)
    if print_config:
        print(json.dumps(config, ensure_ascii=False, indent=2))
        return 0
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
        json.dump(config, fh)
    aliases = ", ".join(m["model_alias"] for m in config["models"])
    print(f"API compatível com OpenAI em http://{host}:{port}/v1 — modelos: {aliases}", file=sys.stderr, flush=True)
    # Become the server (exec, not a child process): a SIGTERM or Ctrl-C then reaches it directly and
    # nothing is left running behind a stopped `make serve`.
    sys.stdout.flush()
    os.execv(sys.executable, [sys.executable, "-m", "llama_cpp.server", "--config_file", fh.name])
