"""Which RAG prompt style should the default be? Every style answers the same test questions in one run.

    .venv/bin/python benchmarks/rag_prompt.py [--n 40] [--styles v1,v2,v3] [--model NAME] [--k 3]

Styles are interleaved per question (question 1 in every style, then question 2…), so a noisy machine
affects them alike; each style has its own llama.cpp instance (as the app's RAG column has), so the time to
first token includes the prompt-prefix reuse a user of that style gets. Same settings as the study: greedy,
seed 0, k 3, 64 new tokens. Writes benchmarks/results/rag_prompt.{json,md}.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=40, help="perguntas de teste (espalhadas pelo arquivo)")
    ap.add_argument("--offset", type=int, default=0,
                    help="start of the sample (the styles of round 4 were chosen on offset 0; 1 and 2 are held out)")
    ap.add_argument("--styles", default="v1,v2,v3")
    ap.add_argument("--model", default=None)
    ap.add_argument("--k", type=int, default=3)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "rag_prompt"))
    args = ap.parse_args(argv)

    from tqdm import tqdm

    from models.runtime import load_model
    from models.settings import get_settings
    from rag.bench import contains_answer, first_citation, hardware, load_jsonl, token_f1
    from rag.pipeline import NOT_FOUND, prompt_style, rag_stream

    styles = args.styles.split(",")
    for s in styles:
        prompt_style(s)  # fail early on a typo
    questions = load_jsonl(ROOT / "data" / "qa" / "test.jsonl")
    step = max(1, len(questions) // args.n)
    questions = questions[args.offset::step][: args.n]
    # one llama.cpp instance per style, as the app has one for its RAG column: each keeps its own prompt prefix
    # (models.runtime.LoadedModel.begin_prompt), so time to first token is what a user of that style sees
    models = {s: load_model(args.model, n_ctx=2048, instance=f"rag-prompt-bench-{s}") for s in styles}
    lm = models[styles[0]]
    store = get_settings().store_dir
    rows = {s: [] for s in styles}
    t0 = time.time()
    for q in tqdm(questions, desc="perguntas", unit="q"):
        for s in styles:
            stream, hits = rag_stream(models[s], q["question"], store, k=args.k, max_tokens=args.max_tokens,
                                      temperature=0.0, seed=0, style=s, attribution=True)
            for _ in stream:
                pass
            text = stream.text  # after post-hoc attribution (rag.attribution); the model's own text is `raw`
            raw = stream.raw

            def cited_ok(answer):
                cite = first_citation(answer)
                return bool(cite and 1 <= cite <= len(hits) and hits[cite - 1].article_id == str(q["source_id"]))

            rows[s].append({
                "id": q["id"], "answer": text, "raw": raw,
                "attribution": getattr(getattr(stream, "attribution", None), "action", "none"),
                "contains": contains_answer(text, q["answer"], q.get("aliases", [])),
                "f1": token_f1(text, q["answer"]),
                "cited_ok_raw": cited_ok(raw),
                "cited_ok": cited_ok(text),
                "gold_retrieved": any(h.article_id == str(q["source_id"]) for h in hits),
                "not_found": NOT_FOUND.lower()[:20] in text.lower(),
                "copied": bool(re.match(r"\s*(\[\d+\]\s*[^\n]{0,80}:|Fonte \[\d+\])", text)),
                "tokens": stream.stats.completion_tokens,
                "prompt_tokens": stream.stats.prompt_tokens,
                "cached_tokens": stream.stats.cached_tokens,
                "ttft_s": round(stream.stats.ttft_s, 3) if stream.stats.ttft_s else None,
            })
    summary = {}
    for s in styles:
        r = rows[s]
        n = len(r)
        summary[s] = {k: round(sum(x[k] for x in r) / n, 3)
                      for k in ("contains", "cited_ok_raw", "cited_ok", "gold_retrieved", "not_found", "copied")}
        summary[s]["f1"] = round(sum(x["f1"] for x in r) / n, 3)
        ttfts = sorted(x["ttft_s"] for x in r if x.get("ttft_s"))
        summary[s]["ttft_p50_s"] = round(ttfts[len(ttfts) // 2], 2) if ttfts else None
        summary[s]["prompt_tokens_mean"] = round(sum(x.get("prompt_tokens") or 0 for x in r) / n, 1)
    result = {"hardware": hardware(), "model": lm.label, "n": len(questions), "offset": args.offset, "k": args.k,
              "max_tokens": args.max_tokens, "seconds": round(time.time() - t0, 1),
              "command": "python benchmarks/rag_prompt.py " + " ".join(argv or sys.argv[1:]),
              "styles": {s: {"block": prompt_style(s).block, "instruction": prompt_style(s).instruction,
                             "answer_cue": prompt_style(s).answer_cue, "compress": prompt_style(s).compress,
                             "demos": len(prompt_style(s).demos), "best_last": prompt_style(s).best_last} for s in styles},
              "summary": summary, "rows": rows}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, ensure_ascii=False, indent=2))
    lines = [f"RAG prompt styles — {lm.label}, {len(questions)} test questions (every {step}th of data/qa/test.jsonl from #{args.offset}), "
             f"k {args.k}, greedy, {args.max_tokens} tokens; {result['hardware']}; {result['seconds']:.0f} s", "",
             "| style | answer contained | first citation = gold article (model's own) | … after attribution | gold article retrieved | copied the passages | \"não encontrei\" | token F1 | prompt tokens | 1st token p50 s |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for s in styles:
        m = summary[s]
        lines.append(f"| {s} | {m['contains']:.1%} | {m['cited_ok_raw']:.1%} | {m['cited_ok']:.1%} | {m['gold_retrieved']:.1%} | {m['copied']:.1%} | "
                     f"{m['not_found']:.1%} | {m['f1']:.3f} | {m['prompt_tokens_mean']:.0f} | {m['ttft_p50_s']} |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
