"""Consistency checks for the shipped corpus (data/wiki_pt) and QA set (data/qa): `check_corpus` lists problems.

Besides schema and sizes, it guards the evaluation: every evidence is quoted from its article, every answer
is in its evidence, and no test or general question leaks into a training file (data/qa/train.jsonl,
data/instructions/*.jsonl).
"""
from __future__ import annotations

import json
import re
import unicodedata
from pathlib import Path

from .corpus import COLUMNS, article_url

MIN_WORDS, MAX_WORDS = 200, 600
QA_FILES = {"train.jsonl": "train", "test.jsonl": "test", "general.jsonl": "general"}
QA_KEYS = {"id", "question", "answer", "aliases", "source_id", "source_title", "evidence", "split"}


def normalize_question(text: str) -> str:
    """Lowercase, accents stripped, punctuation collapsed: what "the same question" means for leaks."""
    text = unicodedata.normalize("NFKD", text.casefold())
    text = "".join(c for c in text if not unicodedata.combining(c))
    return " ".join(re.sub(r"[\W_]+", " ", text).split())


def check_corpus(corpus_dir, qa_dir, instructions_dir=None) -> list[str]:
    """Problems found in the corpus shards and the QA set, one pt-BR sentence each; [] means all good.

    `instructions_dir` defaults to the `instructions/` folder next to `qa_dir` (checked only if present).
    """
    corpus_dir, qa_dir = Path(corpus_dir), Path(qa_dir)
    instructions_dir = Path(instructions_dir) if instructions_dir else qa_dir.parent / "instructions"
    problems: list[str] = []
    articles = _check_articles(corpus_dir, problems)
    questions = _check_questions(qa_dir, articles, problems)
    _check_contamination(qa_dir, instructions_dir, questions, problems)
    return problems


def _check_articles(corpus_dir: Path, problems: list[str]) -> dict[str, dict]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    shards = sorted(corpus_dir.glob("*.parquet")) if corpus_dir.is_dir() else [corpus_dir]
    if not shards or not shards[0].exists():
        problems.append(f"nenhum shard .parquet em {corpus_dir}")
        return {}
    articles: dict[str, dict] = {}
    for shard in shards:
        try:
            table = pq.read_table(shard)
        except (pa.ArrowException, OSError) as exc:
            problems.append(f"{shard}: parquet ilegível ({exc})")
            continue
        names = table.schema.names
        if tuple(names) != COLUMNS:
            problems.append(f"{shard}: colunas {names}, esperado {list(COLUMNS)}")
            continue
        wrong_types = [f"'{name}' é {table.schema.field(name).type}" for name in COLUMNS
                       if not pa.types.is_string(table.schema.field(name).type)
                       and not pa.types.is_large_string(table.schema.field(name).type)]
        if wrong_types:
            problems.append(f"{shard}: coluna {', '.join(wrong_types)}, esperado string")
            continue
        for row in table.to_pylist():
            ident, title, text = row["id"], row["title"] or "", row["text"] or ""
            where = f"{shard.name}: artigo {ident} ({title})"
            if ident in articles:
                problems.append(f"{where}: id repetido")
            if not text.strip():
                problems.append(f"{where}: texto vazio")
            else:
                words = len(text.split())
                if not MIN_WORDS <= words <= MAX_WORDS:
                    problems.append(f"{where}: {words} palavras, esperado entre {MIN_WORDS} e {MAX_WORDS}")
            if row["url"] != article_url(title):
                problems.append(f"{where}: url {row['url']} não corresponde ao título")
            articles[ident] = row
    return articles


def _read_jsonl(path: Path, problems: list[str]):
    with open(path, encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError as exc:
                problems.append(f"{path}, linha {line_no}: JSON inválido ({exc})")
                continue
            if not isinstance(record, dict):
                problems.append(f"{path}, linha {line_no}: esperado um objeto JSON")
                continue
            yield line_no, record


def _check_questions(qa_dir: Path, articles: dict[str, dict], problems: list[str]) -> list[dict]:
    """Check the three QA files; return the evaluation questions (test and general) for the leak check."""
    seen_ids: set = set()
    evaluation: list[dict] = []
    for filename, split in QA_FILES.items():
        path = qa_dir / filename
        if not path.exists():
            problems.append(f"arquivo ausente: {path}")
            continue
        for line_no, q in _read_jsonl(path, problems):
            where = f"{path.name}, linha {line_no} ({q.get('id')})"
            missing = QA_KEYS - q.keys()
            if missing:
                problems.append(f"{where}: faltam os campos {', '.join(sorted(missing))}")
                continue
            if q["id"] in seen_ids:
                problems.append(f"{where}: id repetido")
            seen_ids.add(q["id"])
            if q["split"] != split:
                problems.append(f"{where}: split '{q['split']}', esperado '{split}'")
            if not isinstance(q["question"], str) or not q["question"].strip():
                problems.append(f"{where}: pergunta vazia")
                continue
            if not isinstance(q["answer"], str) or not q["answer"].strip():
                problems.append(f"{where}: resposta vazia")
                continue
            if not isinstance(q["aliases"], list) or not all(isinstance(a, str) for a in q["aliases"]):
                problems.append(f"{where}: 'aliases' deve ser uma lista de strings")
            if split == "general":
                for key in ("source_id", "source_title", "evidence"):
                    if q[key] is not None:
                        problems.append(f"{where}: '{key}' deve ser null nas perguntas gerais")
            else:
                _check_grounding(q, where, articles, problems)
            if split != "train":
                evaluation.append(q)
    return evaluation


def _check_grounding(q: dict, where: str, articles: dict[str, dict], problems: list[str]) -> None:
    article = articles.get(q["source_id"])
    if article is None:
        problems.append(f"{where}: source_id {q['source_id']} não está no corpus")
        return
    if q["source_title"] != article["title"]:
        problems.append(f"{where}: source_title '{q['source_title']}' difere do título '{article['title']}'")
    evidence = q["evidence"]
    if not isinstance(evidence, str) or not evidence.strip():
        problems.append(f"{where}: evidência vazia")
        return
    if evidence not in article["text"]:
        problems.append(f"{where}: a evidência não é um trecho literal do artigo {article['id']}")
    # Case-insensitive: an answer may start a sentence in the evidence ("Lisboa é…") but not in the key.
    if q["answer"].casefold() not in evidence.casefold():
        problems.append(f"{where}: a resposta '{q['answer']}' não aparece na evidência")


def _strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def _check_contamination(qa_dir: Path, instructions_dir: Path, questions: list[dict], problems: list[str]) -> None:
    training = [qa_dir / "train.jsonl"]
    if instructions_dir.is_dir():
        training += sorted(instructions_dir.glob("*.jsonl"))
    for path in training:
        if not path.exists():
            continue
        # One padded line per record so a match cannot straddle two records or cut a word in half.
        haystack = "\n".join(" " + normalize_question(" ".join(_strings(record))) + " "
                             for _, record in _read_jsonl(path, problems))
        for q in questions:
            needle = normalize_question(q["question"])
            if needle and f" {needle} " in haystack:
                problems.append(f"contaminação: a pergunta de {q['split']} {q['id']} \"{q['question']}\" "
                                f"aparece no arquivo de treino {path}")
