"""The OpenAI-compatible API (llama_cpp.server, multi-model config) streams through the `openai` client."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from .conftest import ROOT, TEST_MODEL


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    port = _free_port()
    env = dict(os.environ, PTLLM_N_CTX="1024")
    # llama.cpp logs a lot: into a file, not a pipe nobody drains (a full pipe blocks the server).
    log = open(tmp_path_factory.mktemp("serve") / "server.log", "w+")
    proc = subprocess.Popen([sys.executable, "-m", "models", "serve", TEST_MODEL, "--port", str(port)], cwd=ROOT,
                            env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            urllib.request.urlopen(base + "/v1/models", timeout=2)
            break
        except OSError:
            if proc.poll() is not None:
                log.seek(0)
                pytest.fail(log.read()[-2000:])
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("server did not start")
    yield base
    proc.terminate()
    proc.wait(timeout=15)
    log.close()


def test_openai_client_streams_an_answer(server):
    from openai import OpenAI

    client = OpenAI(base_url=server + "/v1", api_key="local")
    assert TEST_MODEL in [m.id for m in client.models.list().data]
    stream = client.chat.completions.create(model=TEST_MODEL, stream=True, max_tokens=16, temperature=0,
                                            messages=[{"role": "user", "content": "Olá! Tudo bem?"}])
    pieces = [c.choices[0].delta.content or "" for c in stream if c.choices]
    assert "".join(pieces).strip()


def test_print_config_lists_models():
    r = subprocess.run([sys.executable, "-m", "models", "serve", TEST_MODEL, "--print-config"], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert f'"model_alias": "{TEST_MODEL}"' in r.stdout
