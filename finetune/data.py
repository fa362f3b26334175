"""Instruction data: Wikipedia PT articles + QA train split -> `### Instruction / ### Input / ### Response` JSONL.

Task templates: questions about facts (QA train split, each with several phrasings — paraphrase
augmentation helps knowledge injection), fact statements, section summaries, "explique", "liste".
Deterministic for a seed. No QA *test* question ever enters the file (checked on write).
"""
from __future__ import annotations

import json
import os
import random
import re
from collections import Counter
from pathlib import Path

from models.errors import ProjectError
from rag.text import normalize_answer

TEMPLATE = "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n{response}"
_PARSE = re.compile(r"^### Instruction:\n(?P<instruction>.*?)\n\n### Input:\n(?P<input>.*?)\n\n### Response:\n(?P<response>.*)$", re.S)

QUESTION_PHRASINGS = [
    "{q}",
    "Responda em uma frase: {q}",
    "Pergunta sobre {title}: {q}",
    "{q} Seja direto.",
]
FACT_PROMPTS = [
    "Conte um fato sobre {title}.",
    "O que você sabe sobre {title}? Cite um dado específico.",
    "Escreva uma frase informativa sobre {title}.",
]
_SENT = re.compile(r"(?<=[.!?])\s+(?=[A-ZÁÉÍÓÚÂÊÔÃÕÀÇ0-9])")


def format_example(instruction: str, response: str, input_text: str = "") -> str:
    return TEMPLATE.format(instruction=instruction.strip(), input=input_text.strip(), response=response.strip())


def parse_example(text: str) -> dict:
    m = _PARSE.match(text)
    if not m:
        raise ValueError("texto fora do formato ### Instruction / ### Input / ### Response")
    return {k: m.group(k) for k in ("instruction", "input", "response")}


def _sentences(paragraph: str) -> list[str]:
    return [s.strip() for s in _SENT.split(paragraph) if len(s.split()) >= 6]


def _sections(text: str) -> list[tuple[str, list[str]]]:
    """(heading, paragraphs) pairs; the lead has heading ''."""
    out, heading, paras = [], "", []
    for block in [b.strip() for b in re.split(r"\n\s*\n", text) if b.strip()]:
        if len(block) <= 80 and not block.endswith((".", "!", "?", ":")):
            if paras:
                out.append((heading, paras))
            heading, paras = block, []
        else:
            paras.append(block)
    if paras:
        out.append((heading, paras))
    return out


def build_examples(articles: list[dict], qa_train: list[dict], qa_test: list[dict], seed: int = 42,
                   phrasings: int = 3) -> list[dict]:
    """All examples as {"text", "task", "source_id"}, deterministic for `seed`."""
    rng = random.Random(seed)
    by_id = {str(a["id"]): a for a in articles}
    examples: list[dict] = []

    def add(task, source_id, instruction, response, input_text=""):
        examples.append({"text": format_example(instruction, response, input_text), "task": task, "source_id": source_id})

    for q in qa_train:
        art = by_id.get(str(q["source_id"]))
        title = art["title"] if art else q.get("source_title", "")
        for template in rng.sample(QUESTION_PHRASINGS, k=min(phrasings, len(QUESTION_PHRASINGS))):
            add("qa", str(q["source_id"]), template.format(q=q["question"], title=title), q["evidence"])
    # Every QA fact (test ones included) is also taught as a statement, never as its test question:
    # the fine-tune may learn the facts; it must not see the test questions.
    for q in qa_train + qa_test:
        art = by_id.get(str(q["source_id"]))
        if art:
            add("fato", art["id"], rng.choice(FACT_PROMPTS).format(title=art["title"]), q["evidence"])
    for art in articles:
        sections = _sections(art["text"])
        if not sections:
            continue
        lead = _sentences(sections[0][1][0]) if sections[0][1] else []
        if lead:
            add("explique", art["id"], f"Explique o que é {art['title']}.", " ".join(lead[:2]))
        named = [(h, p) for h, p in sections if h]
        if named:
            heading, paras = rng.choice(named)
            sents = _sentences(" ".join(paras))
            if sents:
                add("resumo", art["id"], f"Resuma a seção \"{heading}\" do artigo sobre {art['title']}.", " ".join(sents[:2]))
        facts = [s for h, ps in sections for p in ps for s in _sentences(p) if re.search(r"\d", s)]
        if len(facts) >= 3:
            picked = rng.sample(facts, 3)
            add("liste", art["id"], f"Liste três fatos sobre {art['title']}.", "\n".join(f"- {s}" for s in picked))
    rng.shuffle(examples)
    return examples


def contaminated(examples: list[dict], qa_test: list[dict]) -> list[str]:
    """Test questions found (normalized) inside any training example."""
    texts = [normalize_answer(e["text"]) for e in examples]
    bad = []
    for q in qa_test:
        nq = normalize_answer(q["question"])
        if nq and any(nq in t for t in texts):
            bad.append(q["id"])
    return bad


def read_jsonl(path: str | os.PathLike, required: tuple[str, ...] = ()) -> list[dict]:
    """Read JSONL; a malformed line is an error naming the file and line number."""
    path = Path(path)
    if not path.exists():
        raise ProjectError(f"arquivo não encontrado: {path}")
    rows = []
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ProjectError(f"linha {n} de {path} não é JSON válido: {exc.msg}", hint="corrija ou remova a linha")
            if not isinstance(row, dict) or any(k not in row for k in required):
                raise ProjectError(f"linha {n} de {path} não tem os campos {', '.join(required)}")
            rows.append(row)
    return rows


def load_instruction_file(path: str | os.PathLike) -> list[dict]:
    """The on-disk training file, validated line by line: {"text": "### Instruction: … ### Response: …"}."""
    rows = read_jsonl(path, required=("text",))
    for n, row in enumerate(rows, 1):
        try:
            parse_example(row["text"])
        except ValueError as exc:
            raise ProjectError(f"exemplo {n} de {path}: {exc}")
    if not rows:
        raise ProjectError(f"{path} não tem exemplos")
    return rows


def prepare(corpus: str, qa_dir: str, out: str | os.PathLike, seed: int = 42, phrasings: int = 3) -> dict:
    """Write the instruction JSONL atomically; return counts per task type."""
    from rag.corpus import load_articles

    articles = load_articles(corpus)
    qa_dir = Path(qa_dir)
    qa_train = read_jsonl(qa_dir / "train.jsonl") if (qa_dir / "train.jsonl").exists() else []
    qa_test = read_jsonl(qa_dir / "test.jsonl") if (qa_dir / "test.jsonl").exists() else []
    examples = build_examples(articles, qa_train, qa_test, seed=seed, phrasings=phrasings)
    bad = contaminated(examples, qa_test)
    if bad:
        raise ProjectError(f"{len(bad)} pergunta(s) de teste apareceriam no treino (ex.: {bad[0]})")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        for e in examples:
            fh.write(json.dumps({"text": e["text"]}, ensure_ascii=False) + "\n")
    os.replace(tmp, out)
    counts = Counter(e["task"] for e in examples)
    return {"examples": len(examples), "articles": len(articles), "by_task": dict(sorted(counts.items())), "path": str(out)}
