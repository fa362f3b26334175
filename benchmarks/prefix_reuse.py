"""How much does keeping the RAG prompt's fixed prefix between questions save, per llama.cpp batch size?

    .venv/bin/python benchmarks/prefix_reuse.py [--n 12] [--batches 512,256,128,64] [--style v10]

The runtime keeps the KV cache of whole n_batch blocks of the previous prompt (models.runtime.LoadedModel): a
smaller n_batch keeps more of the fixed system turn + worked examples, but evaluates the rest in smaller blocks.
Every configuration is its own llama.cpp instance of the default model and answers the same RAG questions
(prompt style, k 3, greedy, 64 tokens), interleaved per question so a noisy machine affects them alike; "cold"
is n_batch 512 forced to evaluate every prompt from scratch (what the app did before the reuse). Answers are
compared with the cold ones: a different n_batch splits the prompt differently and may change a greedy answer,
reuse itself never does. Writes benchmarks/results/prefix_reuse.{json,md}.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=12, help="test questions (every 7th of data/qa/test.jsonl from --offset)")
    ap.add_argument("--offset", type=int, default=2)
    ap.add_argument("--batches", default="512,256,128,64")
    ap.add_argument("--style", default="v10")
    ap.add_argument("--model", default=None)
    ap.add_argument("--k", type=int, default=3)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "prefix_reuse"))
    args = ap.parse_args(argv)

    from tqdm import tqdm

    from models.runtime import load_model
    from models.settings import get_settings
    from rag.bench import contains_answer, hardware, load_jsonl
    from rag.pipeline import rag_stream

    questions = load_jsonl(ROOT / "data" / "qa" / "test.jsonl")[args.offset::7][: args.n]
    configs = ["cold"] + [f"n_batch {b}" for b in args.batches.split(",")]
    models = {}
    for c in configs:
        b = 512 if c == "cold" else int(c.split()[1])
        models[c] = load_model(args.model, n_ctx=2048, n_batch=b, instance=f"prefix-bench-{c}")
    store = get_settings().store_dir
    rows = {c: [] for c in configs}
    t0 = time.time()
    for q in tqdm(questions, desc="perguntas", unit="q"):
        for c in configs:
            lm = models[c]
            if c == "cold":
                lm.llm.reset()  # nothing kept (what the app did before): the next prompt is evaluated from position 0
            stream, hits = rag_stream(lm, q["question"], store, k=args.k, max_tokens=args.max_tokens,
                                      temperature=0.0, seed=0, style=args.style, attribution=True)
            for _ in stream:
                pass
            st = stream.stats
            rows[c].append({"id": q["id"], "answer": stream.text, "prompt_tokens": st.prompt_tokens,
                            "cached_tokens": st.cached_tokens, "ttft_s": round(st.ttft_s, 3),
                            "contains": contains_answer(stream.text, q["answer"], q.get("aliases", []))})
    cold = rows["cold"]
    cold_p50 = statistics.median(r["ttft_s"] for r in cold[1:])
    summary = {}
    for c in configs:
        r = rows[c]
        warm = r[1:]  # the first question of every instance is cold
        p50 = statistics.median(x["ttft_s"] for x in warm)
        summary[c] = {"ttft_p50_s": round(p50, 2), "ratio_vs_cold": round(p50 / cold_p50, 2),
                      "cached_mean": round(statistics.mean(x["cached_tokens"] for x in warm), 1),
                      "prompt_tokens_mean": round(statistics.mean(x["prompt_tokens"] for x in r), 1),
                      "first_ttft_s": r[0]["ttft_s"],
                      "same_answer_as_cold": round(sum(a["answer"] == b["answer"] for a, b in zip(r, cold)) / len(r), 3),
                      "contains": round(sum(x["contains"] for x in r) / len(r), 3)}
    result = {"hardware": hardware(), "model": models["cold"].label, "style": args.style, "n": len(questions),
              "k": args.k, "max_tokens": args.max_tokens, "seconds": round(time.time() - t0, 1),
              "command": "python benchmarks/prefix_reuse.py " + " ".join(argv or sys.argv[1:]),
              "summary": summary, "rows": rows}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, ensure_ascii=False, indent=2))
    lines = [f"Prompt-prefix reuse — {result['model']}, RAG prompt {args.style}, {len(questions)} test questions, k {args.k}, "
             f"greedy, {args.max_tokens} tokens; {result['hardware']}; {result['seconds']:.0f} s", "",
             "| configuration | prompt tokens | kept from the previous prompt | 1st token p50 (questions 2…n) | vs cold | 1st question (cold) | same answer as cold | answer contained |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for c in configs:
        m = summary[c]
        lines.append(f"| {c} | {m['prompt_tokens_mean']:.0f} | {m['cached_mean']:.0f} | {m['ttft_p50_s']:.2f} s | "
                     f"{m['ratio_vs_cold']:.2f} | {m['first_ttft_s']:.2f} s | {m['same_answer_as_cold']:.0%} | {m['contains']:.0%} |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
