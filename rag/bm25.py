"""A small, persisted BM25 index (Okapi, k1=1.5, b=0.75) over sparse matrices.

Built once from the store's chunks and saved beside it; it is rebuilt only when the set of chunk ids
changes (a fingerprint is kept), never per query. Scoring touches only the query's term columns.
"""
from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import sparse

from .text import tokenize

K1, B = 1.5, 0.75


def fingerprint(ids: list[str]) -> str:
    h = hashlib.sha256()
    for i in sorted(ids):
        h.update(i.encode("utf-8"))
        h.update(b"\0")
    return h.hexdigest()


@dataclass
class BM25Index:
    ids: list[str]
    vocab: dict[str, int]
    weights: sparse.csc_matrix  # docs x terms, precomputed BM25 term weights
    fingerprint: str

    @classmethod
    def build(cls, ids: list[str], texts: list[str]) -> "BM25Index":
        docs = [Counter(tokenize(t)) for t in texts]
        vocab: dict[str, int] = {}
        rows, cols, tfs = [], [], []
        for d, counts in enumerate(docs):
            for term, tf in counts.items():
                rows.append(d)
                cols.append(vocab.setdefault(term, len(vocab)))
                tfs.append(tf)
        n_docs = max(len(docs), 1)
        lengths = np.array([sum(c.values()) for c in docs] or [0], dtype=np.float32)
        avg = float(lengths.mean()) or 1.0
        tf = np.array(tfs, dtype=np.float32)
        df = np.bincount(np.array(cols, dtype=np.int64), minlength=len(vocab)).astype(np.float32) if cols else np.zeros(0)
        idf = np.log(1.0 + (n_docs - df + 0.5) / (df + 0.5))
        row_idx = np.array(rows, dtype=np.int64)
        col_idx = np.array(cols, dtype=np.int64)
        denom = tf + K1 * (1 - B + B * lengths[row_idx] / avg) if len(tf) else tf
        w = (idf[col_idx] * tf * (K1 + 1) / denom).astype(np.float32) if len(tf) else tf
        matrix = sparse.csc_matrix((w, (row_idx, col_idx)), shape=(len(docs), len(vocab)))
        return cls(list(ids), vocab, matrix, fingerprint(list(ids)))

    def search(self, query: str, k: int = 10) -> list[tuple[str, float]]:
        cols = [self.vocab[t] for t in tokenize(query) if t in self.vocab]
        if not cols or not self.ids:
            return []
        scores = np.asarray(self.weights[:, cols].sum(axis=1)).ravel()
        k = min(k, len(scores))
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top])]
        return [(self.ids[i], float(scores[i])) for i in top if scores[i] > 0]

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        tmp = directory / "bm25.tmp.npz"
        sparse.save_npz(tmp, self.weights.tocsc())
        meta_tmp = directory / "bm25.tmp.json"
        meta_tmp.write_text(json.dumps({"ids": self.ids, "vocab": self.vocab, "fingerprint": self.fingerprint},
                                       ensure_ascii=False))
        os.replace(tmp, directory / "bm25.npz")
        os.replace(meta_tmp, directory / "bm25.json")

    @classmethod
    def load(cls, directory: Path) -> "BM25Index | None":
        try:
            meta = json.loads((directory / "bm25.json").read_text())
            weights = sparse.load_npz(directory / "bm25.npz").tocsc()
        except (OSError, ValueError, KeyError):
            return None
        return cls(meta["ids"], meta["vocab"], weights, meta["fingerprint"])
