"""The llama.cpp runtime on a real tiny llama-architecture model: streaming, stats, locks, limits."""
from __future__ import annotations

import threading

import pytest

from models.errors import ProjectError
from models.prompts import build_messages
from models.runtime import chat, load_model, stream_chat, validate_question

from .conftest import TEST_MODEL, run_module


@pytest.fixture(scope="module")
def tiny():
    return load_model(TEST_MODEL, n_ctx=1024)


def test_stream_yields_text_and_stats(tiny):
    stream = stream_chat(tiny, build_messages("Olá, tudo bem?"), max_tokens=24, temperature=0.0)
    pieces = list(stream)
    assert pieces and "".join(pieces) == stream.text
    st = stream.stats
    assert 0 < st.completion_tokens <= 24
    assert st.prompt_tokens > 10
    assert 0 < st.ttft_s <= st.total_s
    assert st.finish_reason in ("stop", "length")


def test_models_are_cached_and_labelled(tiny):
    assert load_model(TEST_MODEL, n_ctx=1024) is tiny
    assert tiny.label == "smollm2-135m-instruct · Q4_1"


def test_prompt_block_size_comes_from_settings(tiny):
    from models.settings import get_settings

    assert tiny.llm.n_batch == get_settings().n_batch              # PTLLM_N_BATCH, default 256
    explicit = load_model(TEST_MODEL, n_ctx=1024, n_batch=64, instance="explicit-batch")
    assert explicit.llm.n_batch == 64 and explicit is not tiny     # a caller's value wins, in its own instance
    explicit.close()


def test_greedy_generation_is_reproducible(tiny):
    msgs = build_messages("Qual é a capital de Portugal?")
    a = "".join(stream_chat(tiny, msgs, max_tokens=16, temperature=0.0))
    b = "".join(stream_chat(tiny, msgs, max_tokens=16, temperature=0.0))
    assert a == b


def test_concurrent_streams_do_not_mix(tiny):
    """Two users on one model: the lock serializes them; each gets exactly the sequential answer."""
    questions = ["Fale sobre rios.", "Fale sobre montanhas."]
    expected = {q: "".join(stream_chat(tiny, build_messages(q), max_tokens=20, temperature=0.0)) for q in questions}
    results, errors = {}, []

    def worker(q):
        try:
            results[q] = "".join(stream_chat(tiny, build_messages(q), max_tokens=20, temperature=0.0))
        except Exception as exc:  # pragma: no cover - surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(q,)) for q in questions * 2]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors
    assert results == expected


def test_prompt_prefix_reuse_keeps_whole_blocks_and_answers_stay_the_same():
    """A long shared prefix (system turn + worked examples, like the RAG prompt) is kept between questions in whole
    n_batch blocks, and every answer equals the one a cold model gives: reuse changes speed, never text."""
    from models.prompts import DEFAULT_SYSTEM_PROMPT

    examples = [{"role": "user", "content": f"Exemplo {i}: qual é a capital do país número {i} da lista?"}
                for i in range(3)]
    prefix = [{"role": "system", "content": DEFAULT_SYSTEM_PROMPT}]
    for ex in examples:
        prefix += [ex, {"role": "assistant", "content": "Não sei qual é a lista [1]."}]
    questions = ["Fale sobre rios.", "Fale sobre montanhas.", "Qual é a capital de Portugal?"]

    def ask(model, q):
        stream = stream_chat(model, prefix + [{"role": "user", "content": q}], max_tokens=20, temperature=0.0)
        return "".join(stream), stream.stats

    warm = load_model(TEST_MODEL, n_ctx=1024, n_batch=32, instance="prefix-warm")
    answers = [ask(warm, q) for q in questions + questions[:1]]
    assert answers[0][1].cached_tokens == 0                       # first prompt: nothing to keep
    for text, stats in answers[1:]:
        assert stats.cached_tokens > 0 and stats.cached_tokens % 32 == 0 and stats.cached_tokens < stats.prompt_tokens
    assert answers[3][0] == answers[0][0]                         # the same question again, warm: same answer
    for q, (text, _) in zip(questions, answers):                  # each equals a cold start's answer
        cold = load_model(TEST_MODEL, n_ctx=1024, n_batch=32, instance=f"prefix-cold-{q}")
        assert ask(cold, q)[0] == text
        cold.close()
    warm.close()


def test_empty_question_is_refused_without_model_call():
    with pytest.raises(ProjectError, match="vazia"):
        validate_question("   ")


def test_huge_question_is_refused():
    with pytest.raises(ProjectError, match="limite"):
        validate_question("a" * 20_000)


def test_prompt_longer_than_context_is_refused(tiny):
    long_text = "palavra " * 1500
    with pytest.raises(ProjectError, match="contexto"):
        stream_chat(tiny, build_messages(long_text), max_tokens=64)


def test_chat_convenience_uses_portuguese_system_prompt():
    stream = chat("Diga olá.", model=TEST_MODEL, max_tokens=8, temperature=0.0)
    assert stream.messages[0]["role"] == "system" and "português" in stream.messages[0]["content"]
    assert "".join(stream)


# --- the command line, as a user runs it ---------------------------------------------------------

def test_cli_fetch_prints_path_last(tiny_model_path):
    result = run_module("models", "fetch", TEST_MODEL, "--quiet")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == str(tiny_model_path)


def test_cli_chat_streams_and_reports_speed():
    result = run_module("models", "chat", "--model", TEST_MODEL, "--max-tokens", "16", "Olá")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()
    assert "tok/s" in result.stderr


def test_cli_chat_json():
    import json

    result = run_module("models", "chat", "--model", TEST_MODEL, "--max-tokens", "8", "--json", "Olá")
    data = json.loads(result.stdout)
    assert data["answer"] and data["stats"]["completion_tokens"] > 0


@pytest.mark.parametrize("content, message", [
    (b"GGUF\x03\x00\x00\x00" + b"\x01" * 40, "GGUF corrompido"),
    (b"isto nao e um modelo" * 50, "não é um arquivo GGUF"),
])
def test_cli_bad_gguf_gives_one_line_error(tmp_path, tiny_model_path, content, message):
    bad = tmp_path / "ruim.gguf"
    bad.write_bytes(content)
    result = run_module("models", "chat", "--model", str(bad), "Olá")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("erro:") and message in lines[0]
    assert "Traceback" not in result.stderr


def test_cli_truncated_real_model(tmp_path, tiny_model_path):
    cut = tmp_path / "cortado.gguf"
    cut.write_bytes(tiny_model_path.read_bytes()[:30_000_000])
    result = run_module("models", "chat", "--model", str(cut), "Olá")
    assert result.returncode == 2 and "truncado" in result.stderr and "Traceback" not in result.stderr


def test_cli_missing_model_and_empty_question(tmp_path):
    result = run_module("models", "chat", "--model", str(tmp_path / "sumiu.gguf"), "Olá")
    assert result.returncode == 2 and "não encontrado" in result.stderr
    result = run_module("models", "chat", "--model", TEST_MODEL, "  ")
    assert result.returncode == 2 and "vazia" in result.stderr


def test_cli_list_json():
    import json

    result = run_module("models", "list", "--json")
    names = {m["name"] for m in json.loads(result.stdout)}
    assert {"qwen2.5-0.5b-instruct", "smollm2-135m-instruct", "llama-2-7b-chat"} <= names
