"""Lexical helpers around the generation: context compression before it, citation attribution after it.

Small models read long passages badly and forget the citation marker a third of the time (see rag/README.md,
"Prompt style"). Two cheap, deterministic steps help without another model call:

* `select_sentences` keeps, from each retrieved passage, the sentences that share the most terms with the
  question (in their original order) — the idea of LangChain's contextual compression / LLMLingua, done with
  the BM25 tokenizer instead of a model.
* `attribute` checks the answer's citations against the passages shown: an answer without a citation gets
  the passage that supports its new words best, and a citation pointing at a passage that supports the answer
  clearly less than another one is moved there (post-hoc attribution, as in RARR / CiteFix). The sources under
  the answer are unchanged; only the `[n]` markers are touched, and what was done is reported.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from .text import tokenize

_CITATION = re.compile(r"\s*\[(\d+)\]")
_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+(?=[A-ZÀ-Ý0-9\"“(])")


def citations(answer: str) -> list[int]:
    return [int(n) for n in _CITATION.findall(answer)]


def strip_citations(answer: str) -> str:
    return _CITATION.sub("", answer)


def split_sentences(text: str) -> list[str]:
    """Sentences of a passage (split after . ! ? … followed by a capital, a digit or a quote)."""
    return [s.strip() for s in _SENTENCE_END.split(text.strip()) if s.strip()]


def select_sentences(question: str, text: str, max_sentences: int) -> str:
    """The `max_sentences` sentences of `text` sharing most question terms, in their original order.

    Ties keep the earlier sentence; a passage with no overlapping sentence keeps its first ones (it was
    retrieved for a reason, e.g. by the dense side). `max_sentences <= 0` returns the text unchanged."""
    sentences = split_sentences(text)
    if max_sentences <= 0 or len(sentences) <= max_sentences:
        return text
    q = set(tokenize(question))
    scored = sorted(range(len(sentences)), key=lambda i: (-len(q & set(tokenize(sentences[i]))), i))
    keep = sorted(scored[:max_sentences])
    return " ".join(sentences[i] for i in keep)


def support(answer: str, question: str, passages: list[str]) -> list[float]:
    """Per passage, the share of the answer's terms it contains, counting only words the question did not
    already bring (every retrieved passage repeats the question's words); all answer terms if none are new."""
    terms = set(tokenize(strip_citations(answer)))
    new = terms - set(tokenize(question))
    use = new or terms
    if not use:
        return [0.0] * len(passages)
    return [len(use & set(tokenize(p))) / len(use) for p in passages]


@dataclass(frozen=True)
class Attribution:
    text: str
    action: str           # "kept", "added", "moved", "none" (nothing to attribute)
    scores: tuple[float, ...] = ()


def attribute(answer: str, question: str, passages: list[str], margin: float = 0.25) -> Attribution:
    """Make the answer's `[n]` markers point at the passages that support it (see the module docstring).

    A citation is moved only when its passage supports less than `best - margin` of the answer's new words
    (or points outside 1..len(passages)); an uncited answer gets ` [best]` appended when some passage supports
    it at all (before a final full stop). Answers that abstain ("Não encontrei…") or have no content words are left alone."""
    from .pipeline import NOT_FOUND

    body = answer.strip()
    if not body or not passages or NOT_FOUND.lower()[:20] in body.lower():
        return Attribution(answer, "none")
    scores = support(body, question, passages)
    best = max(range(len(scores)), key=lambda i: (scores[i], -i))
    if scores[best] <= 0:
        return Attribution(answer, "none", tuple(scores))
    cited = citations(body)
    if not cited:
        text = answer.rstrip()
        head = text.rstrip(".!?…")  # "… em 1939." -> "… em 1939 [2]."
        return Attribution(f"{head} [{best + 1}]{text[len(head):]}", "added", tuple(scores))

    def fix(m: re.Match) -> str:
        n = int(m.group(1))
        if 1 <= n <= len(scores) and scores[n - 1] >= scores[best] - margin:
            return m.group(0)
        return m.group(0).replace(f"[{n}]", f"[{best + 1}]")

    fixed = _CITATION.sub(fix, answer)
    # The same passage cited twice in a row after the fix ("[1] [1]") reads badly: keep one.
    fixed = re.sub(r"(\[(\d+)\])(\s*\[\2\])+", r"\1", fixed)
    return Attribution(fixed, "moved" if fixed != answer else "kept", tuple(scores))
