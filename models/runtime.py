"""The llama.cpp runtime: load a GGUF once, stream chat completions, time every answer.

A `llama_cpp.Llama` is not thread-safe, so each loaded model carries its own lock and every
generation holds it for its whole stream; callers queue on the lock (the app adds Gradio's queue).
"""
from __future__ import annotations

import contextlib
import os
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

from .errors import ProjectError
from .fetch import fetch
from .gguf import GGUFInfo, read_gguf_info
from .registry import ModelSpec, resolve
from .settings import get_settings


@dataclass
class GenStats:
    """Timings of one answer. ttft includes prompt processing; tokens/s counts generation only."""

    prompt_tokens: int = 0
    cached_tokens: int = 0  # prompt tokens whose KV cache was kept from the previous prompt (LoadedModel.begin_prompt)
    completion_tokens: int = 0
    ttft_s: float = 0.0
    total_s: float = 0.0
    wait_s: float = 0.0  # time spent queued for the model's lock
    finish_reason: str | None = None

    @property
    def tokens_per_s(self) -> float:
        gen_time = self.total_s - self.ttft_s
        # The first token arrives at ttft; the rest are paced by generation.
        return (self.completion_tokens - 1) / gen_time if self.completion_tokens > 1 and gen_time > 0 else 0.0

    def to_dict(self) -> dict:
        d = asdict(self)
        d["tokens_per_s"] = round(self.tokens_per_s, 2)
        return d

    def summary(self) -> str:
        return (f"{self.completion_tokens} tokens · 1º token em {self.ttft_s:.2f} s · "
                f"{self.tokens_per_s:.1f} tok/s · total {self.total_s:.1f} s")


class LoadedModel:
    """A GGUF loaded in llama.cpp, with the lock that serializes its use."""

    def __init__(self, spec: ModelSpec, path: Path, info: GGUFInfo, llm, n_ctx: int):
        self.spec, self.path, self.info, self.llm, self.n_ctx = spec, path, info, llm, n_ctx
        self.lock = threading.Lock()
        # Prompt-prefix reuse that does not change answers. llama.cpp evaluates a prompt in blocks of n_batch
        # tokens; logits depend (slightly) on how the prompt was split, so reusing an arbitrary common prefix of
        # the previous prompt would make a greedy answer depend on who asked before. Here only whole blocks are
        # kept — tokens [0, k·n_batch) evaluated as blocks from position 0 by an earlier prompt — and the rest is
        # evaluated in blocks from that boundary: exactly the split a cold start uses, so the same KV and logits.
        # What this saves is a fixed prefix longer than a block (the RAG prompt's system turn + worked examples).
        self.canonical = 0          # llm tokens [0, canonical) whose KV came from block-aligned prompt evaluation
        self.last_reused = 0        # prompt tokens kept by the last begin_prompt
        self._fresh_prompt = False
        if llm is not None and hasattr(llm, "eval"):
            self._wrap_eval()

    def _wrap_eval(self) -> None:
        llm, original = self.llm, self.llm.eval
        block = max(1, int(getattr(llm, "n_batch", 512)))

        def eval(tokens):
            start = llm.n_tokens
            if not self._fresh_prompt:
                # generation steps, perplexity, multiple choice…: whatever is evaluated from `start` on is not
                # block-aligned prompt KV any more
                self.canonical = min(self.canonical, start)
                return original(tokens)
            self._fresh_prompt = False
            aligned = (min(start, self.canonical) // block) * block
            if aligned < start:  # llama-cpp-python matched more than whole blocks: evaluate the tail again
                tokens = [int(t) for t in llm.input_ids[aligned:start]] + list(tokens)
                llm.n_tokens = aligned
            self.last_reused = aligned
            self.canonical = aligned
            original(tokens)
            self.canonical = llm.n_tokens

        llm.eval = eval

    def begin_prompt(self) -> None:
        """Before a new prompt (under the lock): keep the block-aligned prompt KV, drop the rest (see __init__)."""
        llm = self.llm
        llm.n_tokens = min(llm.n_tokens, self.canonical)
        if hasattr(llm, "_requires_eval"):
            llm._requires_eval = True  # never sample from logits left by an earlier request
        self.last_reused = 0
        self._fresh_prompt = True

    @property
    def label(self) -> str:
        return f"{self.spec.name} · {self.info.file_type}"

    def count_tokens(self, text: str) -> int:
        return len(self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def close(self) -> None:
        with self.lock:
            if self.llm is not None:
                self.llm.close()
                self.llm = None


_cache: dict[tuple, LoadedModel] = {}
_cache_lock = threading.Lock()


def gpu_available() -> bool:
    try:
        import llama_cpp

        return bool(llama_cpp.llama_supports_gpu_offload())
    except Exception:
        return False


def load_model(ref: str | os.PathLike | ModelSpec | None = None, *, n_ctx: int | None = None,
               n_gpu_layers: int | None = None, progress: bool = False, instance: str = "shared",
               **llama_kwargs) -> LoadedModel:
    """Load (or return the cached) model for `ref`; fetches the GGUF first when needed.

    `instance` names a separate copy of the same file (its own lock and KV cache), so that e.g. the
    base and RAG columns of the app can stream at the same time instead of queueing on one lock.
    """
    s = get_settings()
    spec = resolve(ref)
    path = fetch(spec, progress=progress)
    info = read_gguf_info(path)
    n_ctx = n_ctx or s.n_ctx
    if info.context_length:
        n_ctx = min(n_ctx, info.context_length)
    if n_gpu_layers is None:
        n_gpu_layers = s.n_gpu_layers if gpu_available() else 0
    key = (str(path), n_ctx, n_gpu_layers, instance, tuple(sorted(llama_kwargs.items())))
    with _cache_lock:
        if key in _cache and _cache[key].llm is not None:
            return _cache[key]
        import llama_cpp

        kwargs = dict(model_path=str(path), n_ctx=n_ctx, n_threads=s.n_threads, n_threads_batch=s.n_threads,
                      n_gpu_layers=n_gpu_layers, n_batch=s.n_batch, seed=s.seed, verbose=False)
        if spec.chat_format:
            kwargs["chat_format"] = spec.chat_format
        kwargs.update(llama_kwargs)
        try:
            llm = llama_cpp.Llama(**kwargs)
        except (ValueError, RuntimeError) as exc:
            raise ProjectError(f"llama.cpp não conseguiu carregar {path.name}: {exc}",
                               hint="o arquivo pode ser de uma arquitetura que esta versão do llama.cpp não suporta") from exc
        model = LoadedModel(spec, path, info, llm, n_ctx)
        _cache[key] = model
        return model


def unload_all() -> None:
    with _cache_lock:
        for model in _cache.values():
            model.close()
        _cache.clear()


def validate_question(question: str, max_chars: int | None = None) -> str:
    """Reject empty or oversize questions before any model call."""
    max_chars = max_chars or get_settings().max_question_chars
    if question is None or not str(question).strip():
        raise ProjectError("a pergunta está vazia", hint="escreva uma pergunta")
    question = str(question).strip()
    if len(question) > max_chars:
        raise ProjectError(f"a pergunta tem {len(question):,} caracteres; o limite é {max_chars:,}".replace(",", "."),
                           hint="encurte a pergunta")
    return question


def check_fits(model: LoadedModel, messages: list[dict], max_tokens: int) -> int:
    """Count the prompt's tokens and refuse prompts that leave no room for the answer."""
    # Per-message overhead of chat templates (role markers) is small; 8 tokens covers ChatML and Llama 2.
    prompt_tokens = sum(model.count_tokens(m["content"]) + 8 for m in messages)
    if prompt_tokens + max_tokens > model.n_ctx:
        raise ProjectError(
            f"a conversa tem ~{prompt_tokens} tokens e a resposta pede até {max_tokens}; "
            f"o contexto de {model.spec.name} é de {model.n_ctx} tokens",
            hint="encurte a pergunta, limpe o histórico ou reduza 'máx. de tokens'",
        )
    return prompt_tokens


class ChatStream:
    """Iterate to receive text pieces; `stats` is filled in when the stream ends."""

    def __init__(self, model: LoadedModel, messages: list[dict], **gen_kwargs):
        self.model, self.messages, self.gen_kwargs = model, messages, gen_kwargs
        self.stats = GenStats()
        self.model = model
        self.text = ""

    def __iter__(self) -> Iterator[str]:
        model, stats = self.model, self.stats
        queued = time.perf_counter()
        with model.lock:
            if model.llm is None:
                raise ProjectError(f"o modelo {model.spec.name} foi descarregado", hint="recarregue a página")
            start = time.perf_counter()
            stats.wait_s = start - queued
            first = True
            # llama.cpp would reuse the longest common prefix of the previous prompt, and evaluating a prompt in
            # different batch splits changes the logits slightly, so the same greedy question could get a different
            # answer depending on who asked before (seen in CI). begin_prompt keeps only whole, block-aligned
            # prompt blocks, which a cold start computes identically (LoadedModel.__init__).
            model.begin_prompt()
            stream = model.llm.create_chat_completion(messages=self.messages, stream=True, **self.gen_kwargs)
            try:
                for chunk in stream:
                    choice = chunk["choices"][0]
                    if choice.get("finish_reason"):
                        stats.finish_reason = choice["finish_reason"]
                    piece = choice.get("delta", {}).get("content")
                    if not piece:
                        continue
                    if first:
                        stats.ttft_s = time.perf_counter() - start
                        first = False
                    self.text += piece
                    yield piece
            finally:
                with contextlib.suppress(Exception):
                    stream.close()
                stats.total_s = time.perf_counter() - start
                # llama.cpp keeps prompt + generated tokens in n_tokens; re-tokenizing the streamed text
                # gives the completion count (the stream itself does not report usage).
                if self.text and model.llm is not None:
                    stats.completion_tokens = model.count_tokens(self.text)
                    stats.prompt_tokens = max(0, model.llm.n_tokens - stats.completion_tokens)
                stats.cached_tokens = model.last_reused


def stream_chat(model: LoadedModel, messages: list[dict], *, max_tokens: int | None = None,
                temperature: float | None = None, seed: int | None = None, **kwargs) -> ChatStream:
    """Validate, then return a ChatStream (generation starts when it is iterated)."""
    s = get_settings()
    max_tokens = max_tokens or s.max_tokens
    if not messages or not str(messages[-1].get("content", "")).strip():
        raise ProjectError("a pergunta está vazia", hint="escreva uma pergunta")
    check_fits(model, messages, max_tokens)
    return ChatStream(model, messages, max_tokens=max_tokens,
                      temperature=s.temperature if temperature is None else temperature,
                      seed=s.seed if seed is None else seed, **kwargs)


def chat(question: str, model: str | ModelSpec | None = None, history: list[dict] | None = None,
         system_prompt: str | None = None, **kwargs) -> ChatStream:
    """One-call convenience: load the model and stream an answer to `question`."""
    from .prompts import DEFAULT_SYSTEM_PROMPT, build_messages

    question = validate_question(question)
    lm = load_model(model)
    messages = build_messages(question, history, DEFAULT_SYSTEM_PROMPT if system_prompt is None else system_prompt)
    return stream_chat(lm, messages, **kwargs)
