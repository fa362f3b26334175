"""`python -m rag bench`: retrieval quality, search latency, ingestion throughput and answer quality, in one run."""
from __future__ import annotations

import json
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from .text import normalize_answer


def hardware() -> str:
    import os

    cpu = "?"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.machine()}"


def load_jsonl(path) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def retrieval_metrics(store, questions: list[dict], modes=("dense", "bm25", "hybrid"), k: int = 10) -> dict:
    from .retrieve import search

    out = {}
    for mode in modes:
        ranks, latencies = [], []
        for q in questions:
            t0 = time.perf_counter()
            hits = search(q["question"], store, k=k, mode=mode)
            latencies.append(time.perf_counter() - t0)
            articles = []
            for h in hits:
                if h.article_id not in articles:
                    articles.append(h.article_id)
            ranks.append(articles.index(str(q["source_id"])) + 1 if str(q["source_id"]) in articles else None)
        n = len(ranks)
        out[mode] = {
            "recall@1": sum(1 for r in ranks if r and r <= 1) / n,
            "recall@5": sum(1 for r in ranks if r and r <= 5) / n,
            "recall@10": sum(1 for r in ranks if r and r <= 10) / n,
            "mrr@10": sum(1 / r for r in ranks if r and r <= 10) / n,
            "p50_ms": statistics.median(latencies) * 1000,
            "p95_ms": sorted(latencies)[max(0, int(0.95 * n) - 1)] * 1000,
            "n": n,
        }
    return out


def top_similarity(store, questions: list[dict]) -> list[float]:
    from .retrieve import search

    return [max((h.dense or 0.0) for h in search(q["question"], store, k=4)) if q else 0.0 for q in questions]


def contains_answer(answer: str, gold: str, aliases: list[str]) -> bool:
    text = f" {normalize_answer(answer)} "
    return any(f" {normalize_answer(a)} " in text for a in [gold, *(aliases or [])] if normalize_answer(a))


def token_f1(answer: str, gold: str) -> float:
    a, g = normalize_answer(answer).split(), normalize_answer(gold).split()
    if not a or not g:
        return 0.0
    common = sum(min(a.count(t), g.count(t)) for t in set(g))
    if not common:
        return 0.0
    p, r = common / len(a), common / len(g)
    return 2 * p * r / (p + r)


def first_citation(answer: str) -> int | None:
    from .attribution import citations

    cited = citations(answer)
    return cited[0] if cited else None


def answer_quality(store, questions: list[dict], general: list[dict], model: str | None) -> dict:
    from tqdm import tqdm

    from .pipeline import NOT_FOUND, ask

    rows = []
    for q in tqdm(questions, desc="perguntas de teste", unit="q"):
        res = ask(q["question"], store, model=model, max_tokens=96)
        cite = first_citation(res.answer)
        cited_ok = bool(cite and 1 <= cite <= len(res.sources) and res.sources[cite - 1].article_id == str(q["source_id"]))
        first_source_ok = bool(res.sources and res.sources[0].article_id == str(q["source_id"]))
        rows.append({"id": q["id"], "contains": contains_answer(res.answer, q["answer"], q.get("aliases", [])),
                     "f1": token_f1(res.answer, q["answer"]), "cited_ok": cited_ok, "first_source_ok": first_source_ok,
                     "found": res.found, "ttft_s": res.stats.ttft_s, "answer": res.answer})
    gen_rows = []
    for q in tqdm(general, desc="perguntas gerais", unit="q"):
        res = ask(q["question"], store, model=model, max_tokens=64)
        gen_rows.append({"id": q["id"], "not_found": (not res.found) or NOT_FOUND.lower()[:20] in res.answer.lower(),
                         "answer": res.answer})
    n = max(len(rows), 1)
    return {
        "n": len(rows),
        "answer_contained": sum(r["contains"] for r in rows) / n,
        "token_f1": sum(r["f1"] for r in rows) / n,
        "citation_correct": sum(r["cited_ok"] for r in rows) / n,
        "first_source_correct": sum(r["first_source_ok"] for r in rows) / n,
        "general_n": len(gen_rows),
        "general_not_found_rate": sum(r["not_found"] for r in gen_rows) / max(len(gen_rows), 1),
        "rows": rows, "general_rows": gen_rows,
    }


def ingestion_throughput(corpus: str, n_articles: int, embedder_name: str) -> dict:
    """Project ingestion vs a plain loop (chunk, embed, collection.add) vs embedding alone, same articles."""
    import chromadb
    from chromadb.config import Settings

    from .chunking import chunk_article
    from .corpus import load_articles
    from .embedders import get_embedder
    from .store import _embedding_function, ingest

    articles = load_articles(corpus, limit=n_articles)
    chunks = [c for a in articles for c in chunk_article(a)]
    emb = get_embedder(embedder_name)
    emb.embed_passages(["aquecimento"])  # warm-up
    tmp = Path(tempfile.mkdtemp(prefix="rag-bench-"))
    try:
        t0 = time.perf_counter()
        for i in range(0, len(chunks), 32):
            emb.embed_passages([c.embed_text for c in chunks[i:i + 32]])
        embed_only = time.perf_counter() - t0

        client = chromadb.PersistentClient(path=str(tmp / "plain"), settings=Settings(anonymized_telemetry=False))
        col = client.create_collection("plain", embedding_function=_embedding_function(emb), metadata={"hnsw:space": "cosine"})
        t0 = time.perf_counter()
        for i in range(0, len(chunks), 32):
            batch = chunks[i:i + 32]
            vecs = emb.embed_passages([c.embed_text for c in batch])
            col.add(ids=[c.id for c in batch], embeddings=[v.tolist() for v in vecs], documents=[c.text for c in batch])
        plain = time.perf_counter() - t0

        jsonl = tmp / "sample.jsonl"
        jsonl.write_text("\n".join(json.dumps(a, ensure_ascii=False) for a in articles), encoding="utf-8")
        t0 = time.perf_counter()
        ingest(str(jsonl), tmp / "project", embedder=embedder_name, progress=False)
        project = time.perf_counter() - t0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    n = len(chunks)
    return {"articles": len(articles), "passages": n, "embed_only_pps": n / embed_only, "plain_loop_pps": n / plain,
            "project_pps": n / project, "project_vs_plain": plain / project, "project_vs_embed_only": embed_only / project}


def run_bench(args) -> dict:
    from .retrieve import open_store

    store = open_store(args.store)
    qa = [q for f in str(args.qa).split(",") if f.strip() for q in load_jsonl(f.strip())]
    general = load_jsonl(args.general) if Path(args.general).exists() else []
    result = {"hardware": hardware(), "store": str(args.store), "embedder": store.embedder.name,
              "passages": store.count(), "qa_file": args.qa}
    print(f"recuperação em {len(qa)} perguntas…", file=sys.stderr)
    result["retrieval"] = retrieval_metrics(store, qa)
    sims_qa = top_similarity(store, qa)
    sims_gen = top_similarity(store, general)
    result["similarity"] = {
        "qa_min": min(sims_qa) if sims_qa else None, "qa_p05": sorted(sims_qa)[int(0.05 * len(sims_qa))] if sims_qa else None,
        "general_max": max(sims_gen) if sims_gen else None,
        "general_p95": sorted(sims_gen)[int(0.95 * (len(sims_gen) - 1))] if sims_gen else None,
    }
    if args.latency_store:
        big = open_store(args.latency_store)
        result["latency_large"] = {"passages": big.count(), **retrieval_metrics(big, qa[:100], modes=("hybrid",))["hybrid"]}
    if args.ingest_sample:
        print("ingestão: projeto vs laço simples…", file=sys.stderr)
        result["ingestion"] = ingestion_throughput("data/wiki_pt", args.ingest_sample, store.embedder.name)
    if args.ask_limit:
        print(f"respostas do modelo em {args.ask_limit} perguntas…", file=sys.stderr)
        ask_qa_file = getattr(args, "ask_qa", None) or args.qa.split(",")[-1]
        ask_qa = load_jsonl(ask_qa_file)
        step = max(1, len(ask_qa) // args.ask_limit)
        sample = ask_qa[::step][: args.ask_limit]
        gen_sample = general[: max(10, args.ask_limit // 4)]
        result["answers"] = dict(answer_quality(store, sample, gen_sample, args.model), qa_file=ask_qa_file)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench.json").write_text(json.dumps(result, ensure_ascii=False, indent=2))
    md = render_markdown(result)
    (out / "bench.md").write_text(md)
    print(md)
    return result


def render_markdown(r: dict) -> str:
    lines = [f"Store: {r['passages']} passages, embedder `{r['embedder']}`. Hardware: {r['hardware']}.", "",
             "| mode | recall@1 | recall@5 | recall@10 | MRR@10 | p50 ms | p95 ms |", "|---|---:|---:|---:|---:|---:|---:|"]
    for mode, m in r["retrieval"].items():
        lines.append(f"| {mode} | {m['recall@1']:.3f} | {m['recall@5']:.3f} | {m['recall@10']:.3f} | {m['mrr@10']:.3f} | "
                     f"{m['p50_ms']:.1f} | {m['p95_ms']:.1f} |")
    lines.append(f"\n({r['retrieval']['hybrid']['n']} questions from `{r['qa_file']}`; relevance = the source article.)")
    s = r.get("similarity", {})
    if s.get("qa_min") is not None:
        lines.append(f"\nTop dense similarity — answerable questions: min {s['qa_min']:.3f}, 5th pct {s['qa_p05']:.3f}; "
                     f"general (not in corpus): max {s['general_max']:.3f}, 95th pct {s['general_p95']:.3f}.")
    if "latency_large" in r:
        big = r["latency_large"]
        lines.append(f"\nLarge store ({big['passages']} passages): hybrid search p50 {big['p50_ms']:.1f} ms, p95 {big['p95_ms']:.1f} ms.")
    if "ingestion" in r:
        i = r["ingestion"]
        lines += ["", "| ingestion (same articles) | passages/s | ratio |", "|---|---:|---:|",
                  f"| embedder alone (batch 32) | {i['embed_only_pps']:.1f} | 1.00 |",
                  f"| plain loop: embed + `collection.add` | {i['plain_loop_pps']:.1f} | {i['plain_loop_pps'] / i['embed_only_pps']:.2f} |",
                  f"| project `ingest` (chunk, dedupe, upsert, BM25) | {i['project_pps']:.1f} | {i['project_pps'] / i['embed_only_pps']:.2f} |",
                  f"\n({i['articles']} articles, {i['passages']} passages; ratios relative to the embedder alone.)"]
    if "answers" in r:
        a = r["answers"]
        lines += ["", "| `ask` on a sample | value |", "|---|---:|",
                  f"| questions (`{a.get('qa_file', '')}`, evenly spread) | {a['n']} |", f"| answer contained | {a['answer_contained']:.3f} |",
                  f"| token F1 | {a['token_f1']:.3f} |", f"| first cited source is the right article | {a['citation_correct']:.3f} |",
                  f"| first retrieved source is the right article | {a['first_source_correct']:.3f} |",
                  f"| general questions answered \"não encontrei\" | {a['general_not_found_rate']:.3f} (n={a['general_n']}) |"]
    return "\n".join(lines) + "\n"
