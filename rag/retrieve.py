"""Search a store: dense (chromadb), BM25, or hybrid (reciprocal rank fusion of both)."""
from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from models.errors import ProjectError

from .store import Hit, Store

MODES = ("hybrid", "dense", "bm25")
RRF_K = 60  # the constant of Cormack et al. (2009); ranks matter, raw scores do not
CANDIDATES = 30  # per retriever, before fusion


@lru_cache(maxsize=8)
def _open(directory: str, embedder: str | None) -> Store:
    return Store.open(directory, embedder=embedder)


def open_store(directory: str | os.PathLike, embedder: str | None = None) -> Store:
    """Open (once per process) an existing store; raises ProjectError when it does not exist."""
    return _open(str(Path(directory).expanduser().resolve()), embedder)


def search(query: str, store: Store | str | os.PathLike, k: int = 5, mode: str = "hybrid") -> list[Hit]:
    """Top-k passages for `query`. Hybrid fuses dense and BM25 rankings with RRF; every hit keeps both signals."""
    if not query or not query.strip():
        raise ProjectError("a pergunta está vazia", hint="escreva uma pergunta")
    if mode not in MODES:
        raise ProjectError(f"modo de busca desconhecido: {mode}", hint=f"use um de {', '.join(MODES)}")
    if not isinstance(store, Store):
        store = open_store(store)
    n = max(k, CANDIDATES)
    qv = store.embedder.embed_queries([query])[0] if mode in ("dense", "hybrid") else None  # embedded once
    dense = store.dense_search(query, n, qv=qv) if qv is not None else []
    sparse = store.bm25().search(query, n) if mode in ("bm25", "hybrid") else []
    if mode == "dense":
        return dense[:k]
    hits = {h.chunk_id: h for h in dense}
    missing = [cid for cid, _ in sparse if cid not in hits]
    hits.update(store.fetch_hits(missing, qv=qv))
    for cid, score in sparse:
        if cid in hits:
            hits[cid].bm25 = score
    if mode == "bm25":
        out = [hits[cid] for cid, _ in sparse if cid in hits][:k]
        for h in out:
            h.score = h.bm25 or 0.0
        return out
    fused: dict[str, float] = {}
    for rank, h in enumerate(dense):
        fused[h.chunk_id] = fused.get(h.chunk_id, 0.0) + 1.0 / (RRF_K + rank + 1)
    for rank, (cid, _) in enumerate(sparse):
        fused[cid] = fused.get(cid, 0.0) + 1.0 / (RRF_K + rank + 1)
    ranked = sorted((cid for cid in fused if cid in hits), key=lambda c: -fused[c])[:k]
    # Hits found only by BM25 got their dense similarity from the vectors chromadb stored (fetch_hits).
    out = []
    for cid in ranked:
        h = hits[cid]
        h.score = fused[cid]
        out.append(h)
    return out
