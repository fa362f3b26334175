"""Split articles into passages that respect paragraphs, fit a token budget, overlap, and carry the title."""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

# Portuguese averages ~1.4–1.7 tokens per word in Qwen/Llama tokenizers; budgeting in words keeps
# chunking independent of the generator while staying well inside its context.
DEFAULT_MAX_WORDS = 120
DEFAULT_OVERLAP_WORDS = 25

_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+(?=[A-ZÁÉÍÓÚÂÊÔÃÕÀÇ0-9\"“(])")


@dataclass(frozen=True)
class Chunk:
    id: str
    article_id: str
    position: int
    title: str
    url: str
    section: str
    text: str

    @property
    def embed_text(self) -> str:
        """What is embedded and indexed: the title (and section) travel with every passage."""
        head = self.title if not self.section else f"{self.title} — {self.section}"
        return f"{head}\n{self.text}"


def chunk_id(article_id: str, position: int, text: str) -> str:
    """Stable id: the same article text always yields the same ids (idempotent, resumable ingestion)."""
    digest = hashlib.sha1(text.encode("utf-8")).hexdigest()[:10]
    return f"{article_id}-{position:04d}-{digest}"


def _is_heading(paragraph: str) -> bool:
    # Wikipedia-style plain text: a section heading is a short line without final punctuation.
    return len(paragraph) <= 80 and "\n" not in paragraph and not paragraph.rstrip().endswith((".", "!", "?", ":", ";"))


def _split_long(paragraph: str, max_words: int) -> list[str]:
    sentences = _SENTENCE_END.split(paragraph)
    pieces, current = [], []
    for sentence in sentences:
        words = sentence.split()
        if current and len(current) + len(words) > max_words:
            pieces.append(" ".join(current))
            current = []
        current.extend(words)
        while len(current) > max_words:  # a single very long sentence
            pieces.append(" ".join(current[:max_words]))
            current = current[max_words:]
    if current:
        pieces.append(" ".join(current))
    return pieces


def _tail_words(text: str, n: int) -> str:
    if n <= 0:
        return ""
    sentences = _SENTENCE_END.split(text)
    # Overlap whole trailing sentences up to n words, so a passage never starts mid-sentence.
    tail: list[str] = []
    for sentence in reversed(sentences):
        if len(" ".join(tail + [sentence]).split()) > n:
            break
        tail.insert(0, sentence)
    return " ".join(tail)


def chunk_article(article: dict, max_words: int = DEFAULT_MAX_WORDS, overlap_words: int = DEFAULT_OVERLAP_WORDS) -> list[Chunk]:
    """Group paragraphs into passages of at most ~max_words words, overlapping by trailing sentences."""
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", article["text"]) if p.strip()]
    units: list[tuple[str, str]] = []  # (section, paragraph)
    section = ""
    for para in paragraphs:
        if _is_heading(para) and units is not None:
            section = para.strip()
            continue
        for piece in (_split_long(para, max_words) if len(para.split()) > max_words else [para]):
            units.append((section, piece))

    chunks: list[Chunk] = []
    current: list[str] = []
    current_section = units[0][0] if units else ""
    carry = ""

    def flush():
        nonlocal current, carry
        if not current:
            return
        body = "\n\n".join(([carry] if carry else []) + current)
        position = len(chunks)
        chunks.append(Chunk(chunk_id(str(article["id"]), position, body), str(article["id"]), position,
                            article["title"], article.get("url", ""), current_section, body))
        carry = _tail_words(current[-1], overlap_words)
        current = []

    for sec, para in units:
        n_current = sum(len(p.split()) for p in current)
        if current and (sec != current_section or n_current + len(para.split()) > max_words):
            flush()
            if sec != current_section:
                carry = ""  # do not bleed one section's text into the next
        current_section = sec if not current else current_section
        current.append(para)
    flush()
    return chunks
