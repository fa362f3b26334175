"""Multiple-choice scoring: the context evaluated once per item (evaluation.mc.option_logprobs) against the
whole sequence evaluated anew for every option (option_logprob, what the study used before), in one run.

    .venv/bin/python benchmarks/mc_reuse.py [--model qwen2.5-0.5b-instruct] [--limit 0]

Both scorers get their own llama.cpp instance of the same file and score the same items, alternating per item
(A B, B A, …) so a noisy machine affects them alike. Reports seconds, the ratio, acc / acc_norm of each and how
many items get the same prediction. Writes benchmarks/results/mc_reuse.{json,md}.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="qwen2.5-0.5b-instruct")
    ap.add_argument("--limit", type=int, default=0, help="items (0 = all of data/mc/ptwiki_mc.jsonl)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "mc_reuse"))
    args = ap.parse_args(argv)

    import llama_cpp
    from tqdm import tqdm

    from evaluation.mc import PROMPT, load_items, option_logprob, option_logprobs
    from models.registry import resolve
    from models.fetch import fetch
    from rag.bench import hardware

    path = fetch(resolve(args.model))
    items = load_items(ROOT / "data" / "mc" / "ptwiki_mc.jsonl", args.limit or None)
    llms = {name: llama_cpp.Llama(str(path), n_ctx=512, logits_all=True, verbose=False) for name in ("anew", "reuse")}
    scorers = {"anew": lambda llm, ctx, opts: [option_logprob(llm, ctx, o) for o in opts], "reuse": option_logprobs}
    seconds = {name: 0.0 for name in scorers}
    preds = {name: [] for name in scorers}
    max_diff = 0.0
    for i, item in enumerate(tqdm(items, desc="itens", unit="item")):
        context = PROMPT.format(question=item["question"])
        got = {}
        for name in (("anew", "reuse") if i % 2 == 0 else ("reuse", "anew")):
            t0 = time.perf_counter()
            got[name] = scorers[name](llms[name], context, item["choices"])
            seconds[name] += time.perf_counter() - t0
        for name, scores in got.items():
            raw = [s for s, _ in scores]
            norm = [s / max(len(c.encode("utf-8")), 1) for (s, _), c in zip(scores, item["choices"])]
            preds[name].append((raw.index(max(raw)), norm.index(max(norm)), item["label"]))
        max_diff = max(max_diff, max(abs(a[0] - b[0]) for a, b in zip(got["anew"], got["reuse"])))
    summary = {}
    for name in scorers:
        p = preds[name]
        summary[name] = {"seconds": round(seconds[name], 1), "acc": round(sum(a == y for a, _, y in p) / len(p), 4),
                         "acc_norm": round(sum(b == y for _, b, y in p) / len(p), 4)}
    same = sum(a[:2] == b[:2] for a, b in zip(preds["anew"], preds["reuse"]))
    result = {"hardware": hardware(), "model": args.model, "file": path.name, "items": len(items),
              "command": "python benchmarks/mc_reuse.py " + " ".join(argv or sys.argv[1:]), "summary": summary,
              "speedup": round(seconds["anew"] / seconds["reuse"], 2), "same_predictions": same,
              "max_abs_logprob_diff": round(max_diff, 5)}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, ensure_ascii=False, indent=2))
    lines = [f"Multiple-choice scoring — {path.name}, {len(items)} items × 4 options; {result['hardware']}", "",
             "| scorer | seconds | acc | acc_norm |", "|---|---:|---:|---:|"]
    for name, label in (("anew", "every option evaluated anew (before)"), ("reuse", "context once, options from its end")):
        m = summary[name]
        lines.append(f"| {label} | {m['seconds']:.1f} | {m['acc']:.1%} | {m['acc_norm']:.1%} |")
    lines += ["", f"Speed-up {result['speedup']}×; same predictions (acc and acc_norm) on {same} / {len(items)} items; "
              f"largest difference in an option's log-probability {result['max_abs_logprob_diff']}."]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
