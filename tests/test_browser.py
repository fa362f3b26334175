"""End to end in a real headless Chromium: ask a Portuguese question, wait for three answers and the sources.

Every column runs the tiny real SmolLM2 model here (the fine-tuned column is pointed at it too) so the
test exercises the page, the streaming and the RAG sources quickly; the README screenshot comes from
`make run` with the real default models.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from .conftest import ROOT, TEST_MODEL

pytestmark = pytest.mark.browser

CHROMIUM = next((p for p in ("/usr/lib/chromium/chromium", "/usr/bin/chromium", shutil.which("chromium") or "")
                 if p and os.path.exists(p)), None)
FIXTURE = Path(__file__).parent / "fixtures" / "mini_wiki.jsonl"
SCREENSHOT_DIR = ROOT / "tests" / "artifacts"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def app_server(tmp_path_factory):
    from rag.store import ingest

    store = tmp_path_factory.mktemp("browser") / "store"
    ingest(str(FIXTURE), store, progress=False)
    port = _free_port()
    env = dict(os.environ, PTLLM_DEFAULT_MODEL=TEST_MODEL, PTLLM_FINETUNED_MODEL=TEST_MODEL,
               PTLLM_RAG_STORE=str(store), PTLLM_MAX_TOKENS="32", GRADIO_ANALYTICS_ENABLED="False")
    proc = subprocess.Popen([sys.executable, "app.py", "--no-prepare", "--port", str(port)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2)
            break
        except OSError:
            if proc.poll() is not None:
                pytest.fail(f"app exited: {proc.stdout.read()[-2000:]}")
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("app did not come up in 120 s")
    yield url
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium do Debian ausente (make test instala com apt-get)")
def test_three_columns_answer_in_a_real_browser(app_server):
    from playwright.sync_api import sync_playwright

    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                     args=["--disable-gpu", "--disable-background-networking", "--no-first-run"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        # Not "networkidle": offline, a request to an external host (fonts) may hang rather than fail.
        page.goto(app_server, wait_until="load")
        page.wait_for_selector("#pergunta textarea", state="visible", timeout=60_000)
        page.fill("#pergunta textarea", "Em que ano Curitiba foi fundada?")
        page.click("#enviar")
        for key in ("base", "ft", "rag"):
            page.wait_for_function(
                "key => (document.querySelector('#stats-' + key)?.innerText || '').includes('tok/s')",
                arg=key, timeout=180_000)
        page.wait_for_function("() => (document.querySelector('#sources-rag')?.innerText || '').includes('Curitiba')",
                               timeout=30_000)
        texts = {k: page.inner_text(f"#chat-{k}") for k in ("base", "ft", "rag")}
        page.screenshot(path=str(SCREENSHOT_DIR / "browser_test.png"), full_page=True)
        browser.close()
    for key, text in texts.items():
        assert "Curitiba" in text, key  # the question is shown in every column
    assert (SCREENSHOT_DIR / "browser_test.png").stat().st_size > 10_000
