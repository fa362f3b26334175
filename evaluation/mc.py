"""Multiple-choice log-likelihood task (the way lm-evaluation-harness scores HellaSwag/ARC), on llama.cpp logits.

Items are built deterministically from the QA sets (`build_items`, run by `data/build.py`): the question,
the right answer and three distractors of the same kind (years with years, names with names) taken from
other articles of the same family, so the options are plausible. Each option is scored by the sum of the
log-probabilities of its tokens after the prompt; `acc` picks the highest sum, `acc_norm` the highest sum
per byte (lm-eval's acc_norm). Chance is 25 %.
"""
from __future__ import annotations

import hashlib
import json
import math
import random
import re
from pathlib import Path

from models.errors import ProjectError

PROMPT = "Pergunta: {question}\nResposta:"
N_CHOICES = 4


def _kind(answer: str) -> str:
    return "num" if re.search(r"\d", answer) else "text"


def _family(source_id: str | None) -> str:
    return (source_id or "geral")[:2]


def build_items(test: list[dict], general: list[dict], seed: str = "ptllm-mc-v1") -> list[dict]:
    """One 4-option item per test question and per general question; same input, same bytes."""
    items = []
    for group, rows in (("corpus", test), ("geral", general)):
        pool = {}
        for q in rows:
            key = q.get("category") if group == "geral" else _family(q.get("source_id"))
            pool.setdefault((key, _kind(q["answer"])), []).append(q["answer"])
            pool.setdefault(("*", _kind(q["answer"])), []).append(q["answer"])
        for q in rows:
            key = q.get("category") if group == "geral" else _family(q.get("source_id"))
            kind = _kind(q["answer"])
            excluded = {a.casefold() for a in [q["answer"], *(q.get("aliases") or [])]}
            rng = random.Random(hashlib.sha256(f"{seed}:{q['id']}".encode()).hexdigest())
            candidates = sorted({a for a in pool[(key, kind)] if a.casefold() not in excluded})
            if len(candidates) < N_CHOICES - 1:
                candidates = sorted({a for a in pool[("*", kind)] if a.casefold() not in excluded})
            if len(candidates) < N_CHOICES - 1:
                continue
            choices = rng.sample(candidates, N_CHOICES - 1) + [q["answer"]]
            rng.shuffle(choices)
            items.append({"id": f"mc-{q['id']}", "group": group, "question": q["question"], "choices": choices,
                          "label": choices.index(q["answer"]), "source_id": q.get("source_id")})
    return items


def load_items(path: str | Path, limit: int | None = None) -> list[dict]:
    path = Path(path)
    if not path.exists():
        raise ProjectError(f"itens de múltipla escolha não encontrados: {path}", hint="rode `python data/build.py`")
    items = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return items[:limit] if limit else items


def _log_softmax_at(row, token: int) -> float:
    import numpy as np

    row = np.asarray(row, dtype=np.float64)
    mx = row.max()
    return float(row[token] - mx - math.log(np.exp(row - mx).sum()))


def _split(llm, context: str, option: str) -> tuple[list[int], int]:
    """Tokens of context + option, and the first position to score (tokenizers may merge across the boundary:
    scoring starts where the sequence stops being the context's)."""
    ctx = llm.tokenize(context.encode("utf-8"), add_bos=True)
    full = llm.tokenize((context + " " + option).encode("utf-8"), add_bos=True)
    start = 0
    while start < min(len(ctx), len(full)) and ctx[start] == full[start]:
        start += 1
    return full, max(start, 1)


def option_logprob(llm, context: str, option: str) -> tuple[float, int]:
    """Sum of log P(option tokens | context) and the number of option tokens; the whole sequence evaluated anew
    (the reference for `option_logprobs`, kept for benchmarks/mc_reuse.py)."""
    full, start = _split(llm, context, option)
    llm.reset()
    llm.eval(full)
    total = sum(_log_softmax_at(llm.scores[i - 1], full[i]) for i in range(start, len(full)))
    return total, len(full) - start


def option_logprobs(llm, context: str, options: list[str]) -> list[tuple[float, int]]:
    """`option_logprob` for every option, evaluating the shared context once: the context is evaluated on its own
    from position 0 and each option from where the context ends, so a score does not depend on which options
    came before (the split is the same whatever the order)."""
    out, done = [], None
    for option in options:
        full, start = _split(llm, context, option)
        prefix = full[:start]
        if prefix != done:
            llm.reset()
            llm.eval(prefix)
            done = prefix
        else:
            llm.n_tokens = start  # drop the previous option; the context's KV and logits stay
        llm.eval(full[start:])
        out.append((sum(_log_softmax_at(llm.scores[i - 1], full[i]) for i in range(start, len(full))), len(full) - start))
    return out


def score_items(model_path: str | Path, items: list[dict], n_ctx: int = 512, progress: bool = True) -> dict:
    """acc and acc_norm (with bootstrap CIs) of one GGUF on `items`, plus per-item predictions."""
    import llama_cpp
    from tqdm.auto import tqdm

    from .metrics import bootstrap_ci

    llm = llama_cpp.Llama(str(model_path), n_ctx=n_ctx, logits_all=True, verbose=False)
    try:
        preds = []
        for item in tqdm(items, desc=f"múltipla escolha {Path(model_path).name}", disable=not progress):
            context = PROMPT.format(question=item["question"])
            scores = option_logprobs(llm, context, item["choices"])
            raw = [s for s, _ in scores]
            norm = [s / max(len(c.encode("utf-8")), 1) for (s, _), c in zip(scores, item["choices"])]
            preds.append({"id": item["id"], "group": item.get("group"), "label": item["label"],
                          "pred": raw.index(max(raw)), "pred_norm": norm.index(max(norm))})
    finally:
        llm.close()
    acc = [float(p["pred"] == p["label"]) for p in preds]
    acc_norm = [float(p["pred_norm"] == p["label"]) for p in preds]
    return {"n": len(preds), "acc": bootstrap_ci(acc), "acc_norm": bootstrap_ci(acc_norm), "predictions": preds}
