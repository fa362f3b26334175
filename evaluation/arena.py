"""Arena (as in FastChat): anonymous pairwise votes appended to a JSONL log; Elo and Bradley–Terry ratings.

Votes are never lost: each is one line appended under an exclusive file lock and fsynced. Ratings are
computed from the log, with bootstrap confidence intervals, so the log is the only state.
"""
from __future__ import annotations

import fcntl
import json
import math
import os
import random
import time
import uuid
from collections import defaultdict
from pathlib import Path

from models.errors import ProjectError
from models.settings import get_settings

OUTCOMES = {"a": "A é melhor", "b": "B é melhor", "tie": "Empate", "both_bad": "Ambos ruins"}


def votes_path() -> Path:
    return Path(os.environ.get("PTLLM_VOTES", get_settings().home / "arena" / "votes.jsonl"))


def record_vote(model_a: str, model_b: str, outcome: str, question: str, answer_a: str = "", answer_b: str = "",
                path: Path | None = None) -> dict:
    if outcome not in OUTCOMES:
        raise ProjectError(f"voto inválido: {outcome}")
    if model_a == model_b:
        raise ProjectError("um duelo precisa de dois variantes diferentes")
    path = Path(path or votes_path())
    path.parent.mkdir(parents=True, exist_ok=True)
    vote = {"id": uuid.uuid4().hex, "ts": time.time(), "model_a": model_a, "model_b": model_b, "outcome": outcome,
            "question": question[:2000], "answer_a": answer_a[:4000], "answer_b": answer_b[:4000]}
    line = (json.dumps(vote, ensure_ascii=False) + "\n").encode("utf-8")
    with open(path, "ab") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
    return vote


def read_votes(path: Path | None = None) -> list[dict]:
    path = Path(path or votes_path())
    if not path.exists():
        return []
    votes = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            try:
                v = json.loads(line)
            except json.JSONDecodeError:
                continue  # a torn last line from a crash is skipped, never fatal
            if v.get("outcome") in OUTCOMES:
                votes.append(v)
    return votes


def elo(votes: list[dict], k: float = 4.0, base: float = 1000.0, scale: float = 400.0) -> dict[str, float]:
    """Online Elo in log order (FastChat's K=4); 'both bad' counts as a tie."""
    ratings: dict[str, float] = defaultdict(lambda: base)
    for v in votes:
        a, b = v["model_a"], v["model_b"]
        ea = 1 / (1 + 10 ** ((ratings[b] - ratings[a]) / scale))
        sa = {"a": 1.0, "b": 0.0}.get(v["outcome"], 0.5)
        ratings[a] += k * (sa - ea)
        ratings[b] -= k * (sa - ea)
    return dict(ratings)


def bradley_terry(votes: list[dict], iters: int = 200, base: float = 1000.0, scale: float = 400.0) -> dict[str, float]:
    """Maximum-likelihood Bradley–Terry strengths (ties as half wins), on the Elo scale."""
    models = sorted({v["model_a"] for v in votes} | {v["model_b"] for v in votes})
    if not models:
        return {}
    wins = defaultdict(float)
    games = defaultdict(float)
    for v in votes:
        a, b = v["model_a"], v["model_b"]
        sa = {"a": 1.0, "b": 0.0}.get(v["outcome"], 0.5)
        wins[a] += sa
        wins[b] += 1 - sa
        games[(a, b)] += 1
        games[(b, a)] += 1
    p = {m: 1.0 for m in models}
    for _ in range(iters):  # minorization-maximization (Hunter 2004), with a tiny prior to keep it finite
        new = {}
        for m in models:
            denom = sum(games[(m, o)] / (p[m] + p[o]) for o in models if o != m and games[(m, o)])
            new[m] = (wins[m] + 0.1) / (denom + 0.2 / p[m]) if denom else p[m]
        g = math.exp(sum(math.log(x) for x in new.values()) / len(new))
        p = {m: x / g for m, x in new.items()}
    return {m: base + scale * math.log10(p[m]) for m in models}


def leaderboard(votes: list[dict], rounds: int = 200, seed: int = 0) -> list[dict]:
    """Bradley–Terry rating with a 95 % bootstrap interval, Elo, and counts per variant."""
    if not votes:
        return []
    point = bradley_terry(votes)
    rng = random.Random(seed)
    samples = defaultdict(list)
    for _ in range(rounds):
        boot = [votes[rng.randrange(len(votes))] for _ in votes]
        for m, r in bradley_terry(boot, iters=100).items():
            samples[m].append(r)
    online = elo(votes)
    counts = defaultdict(lambda: {"n": 0, "wins": 0})
    for v in votes:
        for side, m in (("a", v["model_a"]), ("b", v["model_b"])):
            counts[m]["n"] += 1
            counts[m]["wins"] += v["outcome"] == side
    rows = []
    for m, r in sorted(point.items(), key=lambda kv: -kv[1]):
        s = sorted(samples[m]) or [r]
        rows.append({"variante": m, "rating": round(r, 1), "ic95_baixo": round(s[int(0.025 * (len(s) - 1))], 1),
                     "ic95_alto": round(s[int(0.975 * (len(s) - 1))], 1), "elo": round(online.get(m, 1000.0), 1),
                     "votos": counts[m]["n"], "vitórias": counts[m]["wins"]})
    return rows
