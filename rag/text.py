"""Portuguese-aware tokenization for BM25: case and accent folding, stopwords, light suffix stemming."""
from __future__ import annotations

import re
import unicodedata

STOPWORDS = frozenset("""
a à ao aos aquela aquelas aquele aqueles aquilo as às até com como da das de dela delas dele deles depois do dos
e é ela elas ele eles em entre era eram essa essas esse esses esta está estão estas este estes eu foi foram há
isso isto já lhe lhes mais mas me mesmo meu minha muito na não nas nem no nos nós num numa o os ou para pela
pelas pelo pelos por qual quais qualquer quando que quem se sem ser seu seus sua suas são só também te tem têm
teu tua um uma umas uns você vocês foi ser sido sendo sobre qual quanto quantos quantas onde cujo cuja
""".split())

_TOKEN = re.compile(r"[0-9]+(?:[.,][0-9]+)*|[a-z]+")
# Longest first; a suffix is removed only if a stem of >= 4 letters remains (keeps short words intact).
_SUFFIXES = ("amentos", "imentos", "amento", "imento", "adoras", "adores", "idades", "acoes", "icoes", "mente",
             "idade", "adora", "ador", "encia", "ancia", "istas", "ismos", "ismo", "ista", "avel", "ivel",
             "oes", "aes", "ais", "eis", "res", "ns", "es", "os", "as", "o", "a", "e", "s")


def fold(text: str) -> str:
    """Lowercase and strip accents: 'São Paulo' -> 'sao paulo'."""
    decomposed = unicodedata.normalize("NFKD", text.lower())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


_FOLDED_STOPWORDS = frozenset(fold(w) for w in STOPWORDS)


def stem(word: str) -> str:
    if word.isdigit() or len(word) <= 4:
        return word
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 4:
            return word[: -len(suffix)]
    return word


def tokenize(text: str) -> list[str]:
    """Terms for BM25: folded, stopwords removed, stemmed; numbers kept whole (years matter)."""
    tokens = []
    for tok in _TOKEN.findall(fold(text)):
        if tok in _FOLDED_STOPWORDS:
            continue
        tok = tok.replace(",", ".") if tok[0].isdigit() else tok
        tokens.append(tok if tok[0].isdigit() else stem(tok))
    return tokens


def normalize_answer(text: str) -> str:
    """For answer matching: folded, punctuation collapsed to single spaces."""
    return " ".join(re.findall(r"[0-9a-z]+", fold(text)))
