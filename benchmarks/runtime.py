"""Overhead of the project's runtime (models.runtime.stream_chat) over plain llama-cpp-python.

Both paths drive the same loaded `Llama` with the same prompts, greedy decoding and seed; runs are
interleaved (A B B A …) and the KV cache is reset before each, so neither side gets cache hits the
other does not. Reports median time to first token and generation tokens/s, and their ratios.

    python benchmarks/runtime.py [--model NAME] [--repeats 3] [--max-tokens 128]
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from models.prompts import build_messages  # noqa: E402
from models.runtime import load_model, stream_chat  # noqa: E402

PROMPTS = [
    "Explique em poucas frases o que é a fotossíntese.",
    "Quais são as principais cidades de Portugal?",
    "Escreva um parágrafo sobre a história do Brasil.",
    "Dê três dicas para estudar melhor.",
]


def hardware() -> str:
    cpu = "?"
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import os

    return f"{cpu}, {os.cpu_count()} núcleos, {platform.system()} {platform.machine()}, Python {platform.python_version()}"


def run_plain(lm, messages, max_tokens, seed):
    llm = lm.llm
    llm.reset()
    start = time.perf_counter()
    ttft, text = None, ""
    for chunk in llm.create_chat_completion(messages=messages, stream=True, max_tokens=max_tokens,
                                            temperature=0.0, seed=seed):
        piece = chunk["choices"][0]["delta"].get("content")
        if piece:
            if ttft is None:
                ttft = time.perf_counter() - start
            text += piece
    total = time.perf_counter() - start
    n = lm.count_tokens(text)
    return {"ttft_s": ttft, "total_s": total, "tokens": n, "tok_s": (n - 1) / (total - ttft), "text": text}


def run_project(lm, messages, max_tokens, seed):
    lm.llm.reset()
    stream = stream_chat(lm, messages, max_tokens=max_tokens, temperature=0.0, seed=seed)
    for _ in stream:
        pass
    st = stream.stats
    return {"ttft_s": st.ttft_s, "total_s": st.total_s, "tokens": st.completion_tokens, "tok_s": st.tokens_per_s,
            "text": stream.text}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="qwen2.5-0.5b-instruct")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "runtime"))
    args = parser.parse_args(argv)

    lm = load_model(args.model, n_ctx=2048)
    results = {"plain": [], "project": []}
    # Warm-up (first eval allocates buffers) — not measured.
    run_plain(lm, build_messages(PROMPTS[0]), 8, args.seed)
    for r in range(args.repeats):
        for i, prompt in enumerate(PROMPTS):
            messages = build_messages(prompt)
            order = ("plain", "project") if (r + i) % 2 == 0 else ("project", "plain")
            for side in order:
                fn = run_plain if side == "plain" else run_project
                res = fn(lm, messages, args.max_tokens, args.seed)
                res["prompt"] = i
                results[side].append(res)
    same_text = all(a["text"] == b["text"] for a, b in zip(
        sorted(results["plain"], key=lambda x: x["prompt"]), sorted(results["project"], key=lambda x: x["prompt"])))

    def med(side, key):
        return statistics.median(x[key] for x in results[side])

    summary = {
        "model": lm.label,
        "hardware": hardware(),
        "repeats": args.repeats,
        "prompts": len(PROMPTS),
        "max_tokens": args.max_tokens,
        "identical_outputs": same_text,
        "plain": {"ttft_s": med("plain", "ttft_s"), "tok_s": med("plain", "tok_s")},
        "project": {"ttft_s": med("project", "ttft_s"), "tok_s": med("project", "tok_s")},
    }
    summary["ratio_tok_s"] = summary["project"]["tok_s"] / summary["plain"]["tok_s"]
    summary["ratio_ttft"] = summary["project"]["ttft_s"] / summary["plain"]["ttft_s"]
    summary["overhead_pct"] = (1 - summary["ratio_tok_s"]) * 100

    md = "\n".join([
        f"Runtime overhead — `{lm.label}`, {args.repeats}×{len(PROMPTS)} prompts, greedy, max {args.max_tokens} tokens",
        f"Hardware: {summary['hardware']}",
        "",
        "| path | median TTFT (s) | median generation tok/s |",
        "|---|---:|---:|",
        f"| plain `Llama.create_chat_completion` | {summary['plain']['ttft_s']:.3f} | {summary['plain']['tok_s']:.1f} |",
        f"| project `models.runtime.stream_chat` | {summary['project']['ttft_s']:.3f} | {summary['project']['tok_s']:.1f} |",
        f"| ratio project / plain | {summary['ratio_ttft']:.3f} | {summary['ratio_tok_s']:.3f} |",
        "",
        f"Identical outputs on both paths: {'yes' if same_text else 'no'}. Overhead on tokens/s: {summary['overhead_pct']:.1f} %.",
    ])
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"summary": summary, "runs": results}, ensure_ascii=False, indent=2))
    out.with_suffix(".md").write_text(md + "\n")
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
