"""Before/after: the fine-tune against its base on the QA test split, the general questions, and perplexity."""
from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

from models.settings import REPO_ROOT

HELDOUT = REPO_ROOT / "data" / "heldout" / "pt_heldout.txt"


def answer_questions(model: str, questions: list[dict], max_tokens: int = 64) -> list[dict]:
    from models.prompts import build_messages
    from models.runtime import load_model, stream_chat
    from rag.bench import contains_answer, token_f1

    lm = load_model(model, n_ctx=1024, instance="eval")
    rows = []
    for q in questions:
        stream = stream_chat(lm, build_messages(q["question"]), max_tokens=max_tokens, temperature=0.0, seed=0)
        text = "".join(stream)
        rows.append({"id": q["id"], "answer": text, "contains": contains_answer(text, q["answer"], q.get("aliases", [])),
                     "f1": token_f1(text, q["answer"]), "tok_s": stream.stats.tokens_per_s})
    return rows


def perplexity(model: str, text: str, n_ctx: int = 512, max_tokens: int = 2048) -> float | None:
    """Perplexity with llama.cpp logits, in n_ctx chunks scoring each chunk's second half (llama.cpp's method)."""
    import llama_cpp
    import numpy as np

    from models.fetch import fetch

    path = fetch(model, progress=False)
    llm = llama_cpp.Llama(str(path), n_ctx=n_ctx, logits_all=True, verbose=False)
    try:
        tokens = llm.tokenize(text.encode("utf-8"), add_bos=True)[:max_tokens]
        nll, count = 0.0, 0
        for start in range(0, len(tokens) - n_ctx + 1, n_ctx):
            chunk = tokens[start:start + n_ctx]
            llm.reset()
            llm.eval(chunk)
            logits = np.asarray(llm.scores[: len(chunk)], dtype=np.float64)
            for i in range(len(chunk) // 2, len(chunk) - 1):
                row = logits[i]
                m = row.max()
                logz = m + math.log(np.exp(row - m).sum())
                nll += logz - row[chunk[i + 1]]
                count += 1
        return math.exp(nll / count) if count else None
    finally:
        llm.close()


def evaluate(model: str, baseline: str, qa_test: list[dict], general: list[dict], out: Path,
             limit: int | None = None) -> dict:
    qa = qa_test[:limit] if limit else qa_test
    gen = general[:limit] if limit else general
    heldout = HELDOUT.read_text(encoding="utf-8") if HELDOUT.exists() else None
    result = {"model": model, "baseline_model": baseline, "n_qa": len(qa), "n_general": len(gen)}
    for key, ref in (("baseline", baseline), ("finetuned", model)):
        qa_rows = answer_questions(ref, qa)
        gen_rows = answer_questions(ref, gen)
        result[key] = {
            "qa_contained": sum(r["contains"] for r in qa_rows) / max(len(qa_rows), 1),
            "qa_f1": statistics.mean(r["f1"] for r in qa_rows) if qa_rows else 0.0,
            "general_contained": sum(r["contains"] for r in gen_rows) / max(len(gen_rows), 1),
            "perplexity": perplexity(ref, heldout) if heldout else None,
            "rows": qa_rows, "general_rows": gen_rows,
        }
    out.mkdir(parents=True, exist_ok=True)
    (out / "eval.json").write_text(json.dumps(result, ensure_ascii=False, indent=2))
    (out / "eval.md").write_text(render(result))
    plot(result, out / "eval.png")
    return result


def render(r: dict) -> str:
    b, f = r["baseline"], r["finetuned"]

    def ppl(x):
        return f"{x:.2f}" if x else "—"

    def hits(x, key, n):
        return f"{x[key]:.3f} ({round(x[key] * n)}/{n})"

    return "\n".join([
        f"| metric | base `{r['baseline_model']}` | fine-tuned `{r['model']}` |", "|---|---:|---:|",
        f"| QA test: answer contained | {hits(b, 'qa_contained', r['n_qa'])} | {hits(f, 'qa_contained', r['n_qa'])} |",
        f"| QA test: token F1 | {b['qa_f1']:.3f} | {f['qa_f1']:.3f} |",
        f"| general questions: answer contained | {hits(b, 'general_contained', r['n_general'])} | "
        f"{hits(f, 'general_contained', r['n_general'])} |",
        f"| perplexity, held-out PT text | {ppl(b['perplexity'])} | {ppl(f['perplexity'])} |",
    ]) + "\n"


def plot(r: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = ["QA (contém)", "QA (F1)", "gerais (contém)"]
    keys = ["qa_contained", "qa_f1", "general_contained"]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    x = range(len(labels))
    ax.bar([i - 0.2 for i in x], [r["baseline"][k] for k in keys], width=0.4, label="base")
    ax.bar([i + 0.2 for i in x], [r["finetuned"][k] for k in keys], width=0.4, label="fine-tuned")
    ax.set_xticks(list(x), labels)
    ax.set_ylim(0, 1)
    ax.legend()
    ax.set_title("Antes × depois do fine-tune")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
