"""The app, driven through its own API (gradio_client) on loopback with the tiny real model."""
from __future__ import annotations

import socket

import pytest

from .conftest import TEST_MODEL


def _text(content):
    return content if isinstance(content, str) else "".join(p.get("text", "") for p in content)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("PTLLM_DEFAULT_MODEL", TEST_MODEL)
    mp.setenv("PTLLM_MAX_TOKENS", "24")
    mp.setenv("PTLLM_RAG_STORE", str(tmp_path_factory.mktemp("nostore") / "missing"))
    # The fine-tuned column must be missing here, even on a machine where `make run` already made it.
    mp.setenv("PTLLM_FINETUNED_MODEL", "modelo-fine-tuned-ausente")
    from models.settings import get_settings

    get_settings.cache_clear()
    import app

    demo = app.build_ui()
    demo.queue(default_concurrency_limit=2)
    port = _free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, share=False, quiet=True)
    yield f"http://127.0.0.1:{port}/"
    demo.close()
    mp.undo()
    get_settings.cache_clear()


def test_base_column_answers_through_api(app_url):
    from gradio_client import Client

    client = Client(app_url, verbose=False)
    history, stats, _ = client.predict("Olá, quem é você?", [], 0.0, 24, 3, api_name="/responder_base")
    assert _text(history[-2]["content"]) == "Olá, quem é você?"
    assert history[-1]["role"] == "assistant" and _text(history[-1]["content"]).strip()
    assert "tok/s" in stats and TEST_MODEL in stats


def test_empty_question_gets_friendly_message(app_url):
    from gradio_client import Client

    client = Client(app_url, verbose=False)
    history, stats, _ = client.predict("   ", [], 0.0, 24, 3, api_name="/responder_base")
    assert history == [] and "vazia" in stats


def test_huge_question_gets_limit_message(app_url):
    from gradio_client import Client

    client = Client(app_url, verbose=False)
    history, stats, _ = client.predict("x" * 20_000, [], 0.0, 24, 3, api_name="/responder_base")
    assert history == [] and "limite" in stats


def test_missing_finetune_column_says_what_to_run(app_url):
    from gradio_client import Client

    client = Client(app_url, verbose=False)
    history, _, _ = client.predict("Olá", [], 0.0, 24, 3, api_name="/responder_ft")
    assert "finetune" in _text(history[-1]["content"])


def test_fourth_column_runs_only_when_shown(app_url):
    from gradio_client import Client

    client = Client(app_url, verbose=False)
    history, stats, _ = client.predict("Olá", [], 0.0, 24, 3, None, False, api_name="/responder_ftrag")
    assert history == [] and stats == ""  # hidden: no model call, nothing shown
    history, _, _ = client.predict("Olá", [], 0.0, 24, 3, None, True, api_name="/responder_ftrag")
    assert "finetune" in _text(history[-1]["content"])  # shown, but the fine-tune is missing here: says what to run
