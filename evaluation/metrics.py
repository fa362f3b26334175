"""Per-answer metrics and the statistics the study reports (bootstrap CIs, paired tests).

All text comparisons go through `rag.text.normalize_answer` (case, accents and punctuation ignored), so
"São Luís" and "sao luis" match, as SQuAD-style evaluation does for English.
"""
from __future__ import annotations

import math
import random
import re
from typing import Iterable, Sequence

from rag.attribution import citations
from rag.text import fold, normalize_answer

ABSTAIN_PATTERNS = (
    "nao sei", "nao encontrei", "nao tenho informac", "nao tenho dados", "nao possuo informac",
    "nao ha informac", "nao consta", "nao e possivel responder", "nao consigo responder", "desconheco",
    "nao tenho conhecimento", "nao esta nas fontes", "as fontes nao",
)
PT_MARKERS = {"de", "da", "do", "que", "em", "um", "uma", "para", "com", "nao", "os", "as", "no", "na", "foi",
              "por", "se", "mais", "ao", "e", "o", "a", "dos", "das", "pelo", "pela", "como", "sao", "esta", "ele", "ela"}
EN_MARKERS = {"the", "of", "and", "to", "in", "is", "was", "that", "for", "it", "with", "as", "on", "by", "are",
              "this", "be", "from", "at", "an", "which", "were", "has", "have", "not", "or", "its", "he", "she"}
_WORD = re.compile(r"[a-z0-9]+")


def contains(answer: str, gold: str, aliases: Sequence[str] = ()) -> bool:
    """The gold answer (or an alias) appears in the answer as whole words, normalized."""
    text = f" {normalize_answer(answer)} "
    return any(f" {g} " in text for g in (normalize_answer(a) for a in [gold, *aliases]) if g)


def exact_match(answer: str, gold: str, aliases: Sequence[str] = ()) -> bool:
    """The whole answer is the gold answer (after normalization and dropping a trailing citation)."""
    a = normalize_answer(re.sub(r"\[\d+\]", " ", answer))
    return any(a == normalize_answer(g) for g in [gold, *aliases] if normalize_answer(g))


def token_f1(answer: str, gold: str, aliases: Sequence[str] = ()) -> float:
    """SQuAD token F1, best over the gold answer and its aliases."""
    best = 0.0
    a = normalize_answer(answer).split()
    for g in [gold, *aliases]:
        gt = normalize_answer(g).split()
        if not a or not gt:
            continue
        common = sum(min(a.count(t), gt.count(t)) for t in set(gt))
        if common:
            p, r = common / len(a), common / len(gt)
            best = max(best, 2 * p * r / (p + r))
    return best


def rouge_l(answer: str, reference: str) -> float:
    """ROUGE-L F1 (longest common subsequence of normalized tokens)."""
    a, r = normalize_answer(answer).split(), normalize_answer(reference).split()
    if not a or not r:
        return 0.0
    prev = [0] * (len(r) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(r, 1):
            cur.append(prev[j - 1] + 1 if x == y else max(prev[j], cur[j - 1]))
        prev = cur
    lcs = prev[-1]
    if not lcs:
        return 0.0
    p, rec = lcs / len(a), lcs / len(r)
    return 2 * p * rec / (p + rec)


def abstained(answer: str) -> bool:
    """The model said it does not know (in any of the usual Portuguese phrasings)."""
    text = " ".join(_WORD.findall(fold(answer)))
    return any(p in text for p in ABSTAIN_PATTERNS)


def is_portuguese(answer: str) -> bool:
    """Function-word vote: more Portuguese than English markers (answers of < 3 words count as Portuguese)."""
    words = _WORD.findall(fold(answer))
    if len(words) < 3:
        return True
    pt = sum(w in PT_MARKERS for w in words)
    en = sum(w in EN_MARKERS for w in words)
    return pt >= en


def faithfulness(answer: str, passages: Sequence[str]) -> float | None:
    """Share of the answer's content words (stopwords and citations removed) found in the retrieved passages.

    A cheap lexical proxy for "supported by the sources" (RAGAS-style faithfulness without an LLM judge).
    None when there are no passages or the answer has no content words.
    """
    if not passages:
        return None
    stop = _stopwords()
    words = [w for w in normalize_answer(re.sub(r"\[\d+\]", " ", answer)).split() if w not in stop]
    if not words:
        return None
    support = set(normalize_answer(" ".join(passages)).split())
    return sum(w in support for w in words) / len(words)


def _stopwords() -> frozenset:
    from rag.text import STOPWORDS

    return frozenset(normalize_answer(w) for w in STOPWORDS)


def citation_correct(answer: str, source_ids: Sequence[str], gold_source: str | None) -> bool | None:
    """At least one citation, every citation points at a passage shown, and one of them is the gold article."""
    cited = citations(answer)
    if gold_source is None:
        return None
    if not cited or any(not 1 <= c <= len(source_ids) for c in cited):
        return False
    return any(str(source_ids[c - 1]) == str(gold_source) for c in cited)


# ------------------------------------------------------------------------------------------ statistics

def mean(xs: Iterable[float]) -> float | None:
    xs = [x for x in xs if x is not None]
    return sum(xs) / len(xs) if xs else None


def bootstrap_ci(values: Sequence[float], n_boot: int = 2000, alpha: float = 0.05, seed: int = 0) -> tuple:
    """(mean, low, high): percentile bootstrap over questions."""
    vals = [float(v) for v in values if v is not None]
    if not vals:
        return (None, None, None)
    rng = random.Random(seed)
    n = len(vals)
    means = sorted(sum(vals[rng.randrange(n)] for _ in range(n)) / n for _ in range(n_boot))
    lo = means[int(alpha / 2 * n_boot)]
    hi = means[min(n_boot - 1, int((1 - alpha / 2) * n_boot))]
    return (sum(vals) / n, lo, hi)


def paired_bootstrap(a: Sequence[float], b: Sequence[float], n_boot: int = 2000, seed: int = 0) -> dict:
    """Difference of means b − a on the same questions, its 95 % CI and a two-sided bootstrap p-value."""
    pairs = [(float(x), float(y)) for x, y in zip(a, b) if x is not None and y is not None]
    if not pairs:
        return {"diff": None, "low": None, "high": None, "p": None, "n": 0}
    rng = random.Random(seed)
    n = len(pairs)
    diff = sum(y - x for x, y in pairs) / n
    boots = sorted(sum(y - x for x, y in (pairs[rng.randrange(n)] for _ in range(n))) / n for _ in range(n_boot))
    # p: how often the resampled difference falls on the other side of zero (two-sided).
    if diff >= 0:
        p = 2 * sum(d <= 0 for d in boots) / n_boot
    else:
        p = 2 * sum(d >= 0 for d in boots) / n_boot
    return {"diff": diff, "low": boots[int(0.025 * n_boot)], "high": boots[int(0.975 * n_boot)],
            "p": min(1.0, p), "n": n}


def mcnemar(a: Sequence[bool], b: Sequence[bool]) -> dict:
    """Exact McNemar test on paired binary outcomes: b01 = only b right, b10 = only a right."""
    b10 = sum(1 for x, y in zip(a, b) if x and not y)
    b01 = sum(1 for x, y in zip(a, b) if y and not x)
    n = b10 + b01
    if n == 0:
        return {"only_a": 0, "only_b": 0, "p": 1.0}
    k = min(b10, b01)
    p = sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n * 2
    return {"only_a": b10, "only_b": b01, "p": min(1.0, p)}
