"""Optional pairwise LLM-as-judge (off by default): each variant against the base, asked in both orders.

A verdict counts only when the judge agrees with itself after the answers swap places (MT-Bench's remedy
for position bias); otherwise it is a tie. Judgements are cached in `<out>/judge.jsonl`.
"""
from __future__ import annotations

import hashlib
import json
from collections import Counter, defaultdict

from .study import AnswerCache, StudyConfig

JUDGE_PROMPT = (
    "Você é um avaliador imparcial. Compare duas respostas à pergunta abaixo, usando a resposta de referência "
    "como verdade. Prefira a resposta correta; entre duas corretas, a mais clara.\n\n"
    "Pergunta: {question}\nResposta de referência: {gold}\n\nResposta A: {a}\n\nResposta B: {b}\n\n"
    "Qual é melhor? Responda só com uma letra: A, B ou E (empate)."
)


def _ask(lm, question: str, gold: str, a: str, b: str) -> str:
    from models.runtime import stream_chat

    stream = stream_chat(lm, [{"role": "user", "content": JUDGE_PROMPT.format(question=question, gold=gold, a=a, b=b)}],
                         max_tokens=4, temperature=0.0, seed=0)
    text = "".join(stream).strip().upper()
    return text[:1] if text[:1] in ("A", "B", "E") else "E"


def run_judge(cfg: StudyConfig, progress: bool = True) -> dict:
    """Win/tie/loss of each variant vs the base (per model and quantization) according to `cfg.judge`."""
    from tqdm.auto import tqdm

    from models.runtime import load_model

    answers = AnswerCache(cfg.out_dir / "answers.jsonl").rows.values()
    by = defaultdict(dict)
    for r in answers:
        if r["split"] != "general":
            by[(r["base_model"], r["quant"], r["variant"])][r["qid"]] = r
    cache = AnswerCache(cfg.out_dir / "judge.jsonl")
    lm = load_model(cfg.judge, n_ctx=cfg.n_ctx, instance="judge")
    tally: dict[str, Counter] = defaultdict(Counter)
    for (model, quant, variant), rows in sorted(by.items()):
        base = by.get((model, quant, "base"))
        if variant == "base" or not base:
            continue
        for qid in tqdm(sorted(set(rows) & set(base)), desc=f"juiz {variant} {quant}", disable=not progress):
            x, y = base[qid], rows[qid]
            key = hashlib.sha256(f"{cfg.judge}|{x['key']}|{y['key']}".encode()).hexdigest()[:24]
            hit = cache.get(key)
            if hit is None:
                first = _ask(lm, y["question"], y["gold"], x["answer"], y["answer"])    # base is A
                second = _ask(lm, y["question"], y["gold"], y["answer"], x["answer"])   # base is B
                if first == "B" and second == "A":
                    outcome = "win"
                elif first == "A" and second == "B":
                    outcome = "loss"
                else:
                    outcome = "tie"
                hit = {"key": key, "judge": cfg.judge, "qid": qid, "model": model, "quant": quant,
                       "variant": variant, "orders": [first, second], "outcome": outcome}
                cache.put(hit)
            tally[f"{model}|{quant}|{variant}"][hit["outcome"]] += 1
    result = {k: dict(v) for k, v in tally.items()}
    (cfg.out_dir / "judge.json").write_text(json.dumps(result, ensure_ascii=False, indent=1) + "\n")
    return result
