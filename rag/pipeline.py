"""Retrieval-augmented answers with numbered citations, through the project's llama.cpp runtime."""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterator

from models.errors import ProjectError
from models.prompts import DEFAULT_SYSTEM_PROMPT
from models.runtime import ChatStream, GenStats, LoadedModel, load_model, stream_chat, validate_question
from models.settings import REPO_ROOT, get_settings

from .attribution import select_sentences
from .retrieve import open_store, search
from .store import Hit

NOT_FOUND = "Não encontrei essa informação nas fontes."
DEFAULT_CORPUS = REPO_ROOT / "data" / "wiki_pt"
# Minimum cosine similarity (query vs best passage) to answer at all; calibrated with
# `python -m rag bench` on the shipped QA set (answerable) vs the general questions (not in the corpus).
DEFAULT_MIN_SIMILARITY = float(os.environ.get("PTLLM_RAG_MIN_SIMILARITY", "0.83"))
MAX_PASSAGE_WORDS = 160

# The system prompt is the one every variant uses (models.prompts), so base, fine-tuned and RAG prompts
# differ only by the retrieved passages and the instruction on how to use them, in the user turn.
RAG_SYSTEM_PROMPT = DEFAULT_SYSTEM_PROMPT
RAG_INSTRUCTION = (
    "Responda com base somente nas fontes acima, de forma curta e direta, e cite as fontes usadas no formato "
    f"[1], [2]. Se as fontes não contiverem a resposta, responda exatamente: \"{NOT_FOUND}\""
)


@dataclass(frozen=True)
class PromptStyle:
    """How the passages are laid out and what the model is told to do with them (user turn only)."""
    block: str        # one passage; fields n, title, text
    instruction: str
    answer_cue: str = ""  # appended after the instruction (e.g. the question again, then "Resposta:")
    demos: tuple[tuple[str, str], ...] = ()  # worked exchanges (user turn, assistant turn) shown before the real one
    compress: int = 0  # keep only this many question-relevant sentences per passage (0: whole passage)
    best_last: bool = False  # show the passages best-last (nearest the question); numbers still follow the ranking


# v2: passages set apart as quotes, an explicit one-sentence answer with an example of the citation form.
_QUOTED = PromptStyle(
    "Fonte [{n}] — {title}\n\"{text}\"",
    "Use somente as fontes acima. Responda à pergunta em uma frase curta, com suas próprias palavras, sem "
    "copiar as fontes, e termine com o número da fonte usada entre colchetes, por exemplo: "
    "\"Foi fundada em 1554 [2].\" Se as fontes não contiverem a resposta, responda exatamente: "
    f"\"{NOT_FOUND}\"")
# v4: v1's layout, told to answer in its own words, no example (v2/v3's example was parroted verbatim).
_OWN_WORDS = PromptStyle(
    "[{n}] {title}: {text}",
    "Responda à pergunta em uma frase curta, com suas próprias palavras, usando somente as fontes acima; não "
    "repita as fontes. Indique a fonte usada entre colchetes, como [1]. Se as fontes não contiverem a resposta, "
    f"responda exatamente: \"{NOT_FOUND}\"")
# Worked exchanges, on topics outside the corpus (checked against data/wiki_pt).
_DEMO_EIFFEL = (
    "Fontes:\n[1] Torre Eiffel: A Torre Eiffel é uma torre de ferro construída em Paris para a Exposição "
    "Universal de 1889. Foi projetada pela empresa de Gustave Eiffel.\n\n[2] Paris: Paris é a capital da "
    "França, atravessada pelo rio Sena.\n\nPergunta: Para qual evento a Torre Eiffel foi construída?",
    "A Torre Eiffel foi construída para a Exposição Universal de 1889 [1].")
# several dates in one passage: the answer is the one the question asks for, not the first
_DEMO_DATES = (
    "Fontes:\n[1] Nova York: Os holandeses fundaram na ilha de Manhattan, na década de 1620, o povoado de Nova "
    "Amsterdã. Em 1664 os ingleses tomaram o povoado e lhe deram o nome de Nova York, em homenagem ao Duque de "
    "York. Em 1898 a cidade uniu-se ao Brooklyn e a outros distritos vizinhos.\n\n[2] Rio Hudson: O rio Hudson "
    "deságua no oceano Atlântico junto a Nova York. Leva o nome do navegador Henry Hudson, que o explorou em "
    "1609.\n\nPergunta: Em que ano Nova Amsterdã passou a se chamar Nova York?",
    "Em 1664 [1].")
# several names, the answer in the second passage
_DEMO_NAMES = (
    "Fontes:\n[1] Antibiótico: Antibióticos são substâncias que matam bactérias ou impedem o seu crescimento. "
    "O primeiro usado em larga escala foi a penicilina, produzida em quantidade a partir da década de 1940.\n\n"
    "[2] Penicilina: A penicilina foi descoberta em 1928 pelo médico escocês Alexander Fleming, em Londres, "
    "quando notou que um fungo do gênero Penicillium impedia o crescimento de bactérias. Howard Florey e Ernst "
    "Chain desenvolveram depois um método para purificá-la.\n\nPergunta: Qual médico descobriu a penicilina?",
    "Alexander Fleming, em 1928 [2].")
PROMPT_STYLES = {
    # v1 (session 2): the 0.5B model often copied the "[1] Title: text" blocks instead of answering.
    "v1": PromptStyle("[{n}] {title}: {text}", RAG_INSTRUCTION),
    "v2": _QUOTED,
    # v3: v2, then the question repeated right before the answer (small models lose it after long passages).
    "v3": replace(_QUOTED, answer_cue="\n\nPergunta: {question}\nResposta:"),
    "v4": _OWN_WORDS,
    # v5: v4 plus one worked exchange on a topic outside the corpus, as a previous chat turn.
    "v5": replace(_OWN_WORDS, demos=(_DEMO_EIFFEL,)),
}
# v6/v7: v5 with each passage cut to its 2 / 3 sentences closest to the question (rag.attribution).
PROMPT_STYLES["v6"] = replace(PROMPT_STYLES["v5"], compress=2)
PROMPT_STYLES["v7"] = replace(PROMPT_STYLES["v5"], compress=3)
# v8: v5 with two more worked exchanges, picking one date among several and a name from the second passage.
PROMPT_STYLES["v8"] = replace(PROMPT_STYLES["v5"], demos=(_DEMO_EIFFEL, _DEMO_DATES, _DEMO_NAMES))
# v9: v8, told to start with the exact answer as the source writes it.
PROMPT_STYLES["v9"] = replace(PROMPT_STYLES["v8"], instruction=(
    "Responda à pergunta em uma frase curta usando somente as fontes acima: comece pela resposta exata (nome, "
    "data, número ou lugar) escrita como na fonte, sem repetir a pergunta nem copiar as fontes inteiras. Indique a "
    "fonte usada entre colchetes, como [1]. Se as fontes não contiverem a resposta, responda exatamente: "
    f"\"{NOT_FOUND}\""))
# v10: v8 with the passages shown best-last, next to the question.
PROMPT_STYLES["v10"] = replace(PROMPT_STYLES["v8"], best_last=True)
# v11: v5 (one worked exchange) with the passages best-last.
PROMPT_STYLES["v11"] = replace(PROMPT_STYLES["v5"], best_last=True)
DEFAULT_PROMPT_STYLE = os.environ.get("PTLLM_RAG_PROMPT", "v10")  # chosen by benchmarks/rag_prompt.py (rounds 4-5)
# Post-hoc citation attribution (rag.attribution.attribute): on unless PTLLM_RAG_ATTRIBUTION=0.
DEFAULT_ATTRIBUTION = os.environ.get("PTLLM_RAG_ATTRIBUTION", "1").strip().lower() not in ("0", "false", "no", "off")


def prompt_style(name: str | None = None) -> PromptStyle:
    name = name or DEFAULT_PROMPT_STYLE
    if name not in PROMPT_STYLES:
        raise ProjectError(f"estilo de prompt RAG desconhecido: {name}", hint=f"use um de {', '.join(PROMPT_STYLES)}")
    return PROMPT_STYLES[name]


@dataclass
class RagAnswer:
    answer: str
    sources: list[Hit]
    stats: GenStats
    retrieval_s: float
    found: bool = True
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"answer": self.answer, "found": self.found, **self.extra,
                "sources": [dict(h.to_dict(), n=i + 1) for i, h in enumerate(self.sources)],
                "timings": {"retrieval_s": round(self.retrieval_s, 4), **self.stats.to_dict()}}


class CitedStream:
    """Wraps the answer's stream; when it ends, checks the `[n]` markers against the passages shown
    (`rag.attribution.attribute`). A citation added at the very end is streamed as one last piece; any other
    change (a citation added before the final full stop, or moved) only changes `text`, which the app and the
    CLI show once the stream ends. `attribution` tells what was done."""

    def __init__(self, inner: ChatStream, question: str, passages: list[str]):
        self.inner, self.question, self.passages = inner, question, passages
        self.attribution = None
        self._text = None

    @property
    def stats(self) -> GenStats:
        return self.inner.stats

    @property
    def model(self):
        return self.inner.model

    @property
    def text(self) -> str:
        return self.inner.text if self._text is None else self._text

    @property
    def raw(self) -> str:
        """The model's own text, before the check."""
        return self.inner.text

    def __iter__(self) -> Iterator[str]:
        from .attribution import attribute

        yield from self.inner
        raw = self.inner.text
        self.attribution = attribute(raw, self.question, self.passages)
        fixed = self.attribution.text
        if fixed.startswith(raw) and len(fixed) > len(raw):
            yield fixed[len(raw):]
        self._text = fixed


class _FixedStream:
    """A stream that yields a canned answer (used when retrieval finds nothing relevant)."""

    def __init__(self, text: str, model: LoadedModel | None = None):
        self.text, self.model, self.stats = "", model, GenStats(finish_reason="not_found")
        self._answer = text

    def __iter__(self) -> Iterator[str]:
        self.text = self._answer
        yield self._answer


def build_context(lm: LoadedModel, question: str, hits: list[Hit], max_tokens: int,
                  history: list[dict] | None = None, style: str | None = None) -> tuple[list[dict], list[Hit]]:
    """The prompt: numbered passages that fit the context window (best first), then the question.

    The worked exchanges of the style are dropped, last first, when they would leave no room for even one
    passage (a small context window: the sources matter more than the examples)."""
    ps = prompt_style(style)
    demos = list(ps.demos)
    while True:
        used, blocks = _fit_passages(lm, question, hits, max_tokens, history, ps, demos)
        if used or not demos:
            break
        demos.pop()
    sources = "\n\n".join(reversed(blocks) if ps.best_last else blocks)
    cue = ps.answer_cue.format(question=question)
    user = f"Fontes:\n{sources}\n\nPergunta: {question}\n\n{ps.instruction}{cue}"
    demo = []
    for demo_user, demo_answer in demos:
        demo += [{"role": "user", "content": f"{demo_user}\n\n{ps.instruction}"},
                 {"role": "assistant", "content": demo_answer}]
    messages = [{"role": "system", "content": RAG_SYSTEM_PROMPT}, *demo, *(history or []), {"role": "user", "content": user}]
    return messages, used


def _fit_passages(lm: LoadedModel, question: str, hits: list[Hit], max_tokens: int, history: list[dict] | None,
                  ps: PromptStyle, demos: list[tuple[str, str]]) -> tuple[list[Hit], list[str]]:
    """The hits (best first) whose numbered blocks fit next to the fixed parts of the prompt, and those blocks."""
    cue = ps.answer_cue.format(question=question)
    budget = (lm.n_ctx - max_tokens - lm.count_tokens(RAG_SYSTEM_PROMPT) - lm.count_tokens(question)
              - lm.count_tokens(ps.instruction) * (1 + len(demos)) - lm.count_tokens(cue) - 64)
    for demo_user, demo_answer in demos:
        budget -= lm.count_tokens(demo_user) + lm.count_tokens(demo_answer) + 16
    budget -= sum(lm.count_tokens(m["content"]) + 8 for m in history or [])
    used, blocks = [], []
    for hit in hits:
        text = select_sentences(question, hit.text, ps.compress) if ps.compress else hit.text
        words = text.split()
        text = " ".join(words[:MAX_PASSAGE_WORDS]) + (" …" if len(words) > MAX_PASSAGE_WORDS else "")
        block = ps.block.format(n=len(used) + 1, title=hit.title, text=text)
        cost = lm.count_tokens(block) + 2
        if cost > budget:
            break
        budget -= cost
        used.append(hit)
        blocks.append(block)
    return used, blocks


def retrieve(question: str, store, k: int = 4, mode: str = "hybrid") -> tuple[list[Hit], float]:
    t0 = time.perf_counter()
    hits = search(question, store, k=k, mode=mode)
    return hits, time.perf_counter() - t0


def is_relevant(hits: list[Hit], min_similarity: float = DEFAULT_MIN_SIMILARITY) -> bool:
    return bool(hits) and max((h.dense or 0.0) for h in hits) >= min_similarity


def relevant_hits(question: str, store, k: int = 4, mode: str = "hybrid",
                  min_similarity: float = DEFAULT_MIN_SIMILARITY) -> tuple[list[Hit], float]:
    """(the passages to answer from, retrieval seconds): none when the best one is not relevant enough."""
    hits, retrieval_s = retrieve(question, store, k=k, mode=mode)
    return (hits if is_relevant(hits, min_similarity) else []), retrieval_s


def checked(stream: ChatStream, question: str, hits: list[Hit], attribution: bool | None = None):
    """`stream` wrapped in a CitedStream when the citation check is on (default: DEFAULT_ATTRIBUTION)."""
    if DEFAULT_ATTRIBUTION if attribution is None else attribution:
        return CitedStream(stream, question, [h.text for h in hits])
    return stream


def rag_stream(lm: LoadedModel, question: str, store=None, k: int = 4, history: list[dict] | None = None,
               max_tokens: int | None = None, temperature: float | None = None, mode: str = "hybrid",
               min_similarity: float = DEFAULT_MIN_SIMILARITY, style: str | None = None,
               attribution: bool | None = None, **gen_kwargs) -> tuple[ChatStream, list[Hit]]:
    """Retrieve, then return (stream of the answer, the sources as numbered in the prompt).

    With `attribution` (default: `DEFAULT_ATTRIBUTION`) the stream is a `CitedStream`: its citations are
    checked against the passages when it ends. Iterate it to the end, then read `.text`."""
    question = validate_question(question)
    store = store if store is not None else get_settings().store_dir
    hits, retrieval_s = relevant_hits(question, store, k=k, mode=mode, min_similarity=min_similarity)
    if not hits:
        stream = _FixedStream(NOT_FOUND, lm)
        stream.retrieval_s = retrieval_s
        return stream, []
    max_tokens = max_tokens or get_settings().max_tokens
    messages, used = build_context(lm, question, hits, max_tokens, history, style)
    if not used:
        raise ProjectError("as fontes recuperadas não cabem no contexto do modelo",
                           hint="reduza 'máx. de tokens' ou use um modelo com contexto maior")
    stream = checked(stream_chat(lm, messages, max_tokens=max_tokens, temperature=temperature, **gen_kwargs),
                     question, used, attribution)
    stream.retrieval_s = retrieval_s
    return stream, used


def ask(question: str, store=None, model: str | None = None, k: int = 4, max_tokens: int | None = None,
        temperature: float | None = 0.0, mode: str = "hybrid", on_token=None, **kwargs) -> RagAnswer:
    """Answer `question` from the store with citations; `on_token` receives streamed pieces."""
    lm = load_model(model)
    stream, sources = rag_stream(lm, question, store, k=k, max_tokens=max_tokens, temperature=temperature,
                                 mode=mode, **kwargs)
    for piece in stream:
        if on_token:
            on_token(piece)
    check = getattr(stream, "attribution", None)
    return RagAnswer(stream.text, sources, stream.stats, getattr(stream, "retrieval_s", 0.0), found=bool(sources),
                     extra={"citations": check.action} if check is not None else {})


def sources_markdown(sources: list[Hit]) -> str:
    """Sources as the app shows them: number, linked title, relevance, and the passage."""
    if not sources:
        return "_Nenhuma fonte relevante encontrada._"
    lines = ["**Fontes**"]
    for i, h in enumerate(sources, 1):
        snippet = " ".join(h.text.split()[:60])
        sim = f"similaridade {h.dense:.2f}" if h.dense is not None else ""
        lines.append(f"**[{i}] [{h.title}]({h.url})** · {sim} · RRF {h.score:.4f}\n> {snippet}…")
    return "\n\n".join(lines)


def prepare_default_store(progress: bool = True, corpus: Path = DEFAULT_CORPUS, store_dir: Path | None = None):
    """Build (or bring up to date) the default index over the shipped corpus; fast when nothing changed."""
    from .store import ingest

    store_dir = store_dir or get_settings().store_dir
    if not corpus.exists():
        raise ProjectError(f"corpus não encontrado em {corpus}", hint="o repositório está incompleto?")
    report = ingest(corpus, store_dir, progress=progress)
    if progress and report.chunks_added:
        print(f"    {report.chunks_added} passagens novas indexadas em {report.seconds:.0f} s", file=sys.stderr)
    return report
