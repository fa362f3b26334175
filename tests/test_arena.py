"""Arena votes: never lost under concurrency, torn lines tolerated, ratings ordered with intervals."""
from __future__ import annotations

import threading

import pytest

from evaluation.arena import bradley_terry, elo, leaderboard, read_votes, record_vote
from models.errors import ProjectError


def test_concurrent_votes_are_all_kept(tmp_path):
    path = tmp_path / "votes.jsonl"

    def voter(i):
        for j in range(25):
            record_vote("Base", "RAG", "b" if (i + j) % 3 else "a", f"pergunta {i}-{j}", path=path)

    threads = [threading.Thread(target=voter, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    votes = read_votes(path)
    assert len(votes) == 200 and len({v["id"] for v in votes}) == 200


def test_torn_last_line_is_skipped(tmp_path):
    path = tmp_path / "votes.jsonl"
    record_vote("Base", "RAG", "a", "q", path=path)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write('{"id": "x", "model_a": "Ba')  # a crash mid-write
    assert len(read_votes(path)) == 1


def test_invalid_votes_are_refused(tmp_path):
    with pytest.raises(ProjectError):
        record_vote("Base", "RAG", "talvez", "q", path=tmp_path / "v.jsonl")
    with pytest.raises(ProjectError):
        record_vote("Base", "Base", "a", "q", path=tmp_path / "v.jsonl")


def test_ratings_order_and_intervals():
    votes = ([{"model_a": "RAG", "model_b": "Base", "outcome": "a"}] * 30
             + [{"model_a": "RAG", "model_b": "Base", "outcome": "b"}] * 10
             + [{"model_a": "Fine-tuned", "model_b": "Base", "outcome": "a"}] * 12
             + [{"model_a": "Fine-tuned", "model_b": "Base", "outcome": "b"}] * 8
             + [{"model_a": "Fine-tuned", "model_b": "RAG", "outcome": "tie"}] * 10)
    bt = bradley_terry(votes)
    assert bt["RAG"] > bt["Fine-tuned"] > bt["Base"]
    assert elo(votes)["RAG"] > 1000 > elo(votes)["Base"]
    rows = leaderboard(votes, rounds=50)
    assert rows[0]["variante"] == "RAG"
    for r in rows:
        assert r["ic95_baixo"] <= r["rating"] <= r["ic95_alto"]
    assert sum(r["votos"] for r in rows) == 2 * len(votes)
