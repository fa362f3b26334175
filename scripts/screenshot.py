"""Take the README screenshot: start the app as `make run` would (already prepared), ask one question in a
real headless Chromium, wait for the three answers and the sources, save docs/screenshot.png.

    .venv/bin/python scripts/screenshot.py ["Pergunta"] [--out docs/screenshot.png]
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.load import free_port  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("question", nargs="?", default="Em que ano foi criado o Parque Nacional do Iguaçu?")
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshot.png")
    args = p.parse_args(argv)
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    port = free_port()
    log = open(Path(tempfile.gettempdir()) / f"screenshot-app-{port}.log", "w")
    proc = subprocess.Popen([sys.executable, "app.py", "--no-prepare", "--port", str(port)], cwd=ROOT,
                            stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ, GRADIO_ANALYTICS_ENABLED="False"))
    url = f"http://127.0.0.1:{port}/"
    try:
        for _ in range(180):
            try:
                urllib.request.urlopen(url, timeout=2)
                break
            except OSError:
                time.sleep(1)
        from playwright.sync_api import sync_playwright

        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, headless=True)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(url, wait_until="load")
            page.wait_for_selector("#pergunta textarea", state="visible", timeout=60_000)
            page.fill("#pergunta textarea", args.question)
            page.click("#enviar")
            for key in ("base", "ft", "rag"):
                page.wait_for_function(
                    "key => (document.querySelector('#stats-' + key)?.innerText || '').includes('tok/s')",
                    arg=key, timeout=600_000)
            page.wait_for_timeout(500)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(args.out), full_page=True)
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
