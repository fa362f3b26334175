"""Build the shipped dataset from the hand-written sources, deterministically (same bytes on every run).

    python data/build.py [--sources data/sources] [--out data]

Reads sources/wiki_pt/<family>.jsonl ({id, url, title, text}) and sources/qa/*.jsonl (3 questions per
article; general.jsonl holds the general questions) and writes wiki_pt/train-00000-of-00001.parquet,
qa/{train,test,general}.jsonl, mc/ptwiki_mc.jsonl, families.json and the families table in README.md.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import re
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from models.errors import ProjectError, run_cli  # noqa: E402

DATA = Path(__file__).resolve().parent
COLUMNS = ("id", "url", "title", "text")
WIKI_BASE = "https://pt.wikipedia.org/wiki/"
SPLIT_SEED = "ptllm-qa-split-v1"  # changing it reshuffles which question of each article is held out
README_START, README_END = "<!-- families:start -->", "<!-- families:end -->"


def read_jsonl(path: Path) -> list[tuple[int, dict]]:
    rows = []
    for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as exc:
            raise ProjectError(f"linha {line_no} de {path} não é JSON válido: {exc}", hint="corrija a linha") from None
        if not isinstance(record, dict):
            raise ProjectError(f"linha {line_no} de {path} não é um objeto JSON", hint="corrija a linha")
        rows.append((line_no, record))
    return rows


def read_articles(wiki_dir: Path) -> tuple[list[dict], dict[str, int]]:
    """All source articles (sorted by id) and the article count per family (= file stem)."""
    articles: dict[str, dict] = {}
    families: dict[str, int] = {}
    for path in sorted(wiki_dir.glob("*.jsonl")):
        families[path.stem] = 0
        for line_no, record in read_jsonl(path):
            missing = [k for k in ("id", "title", "text") if not isinstance(record.get(k), (str, int))]
            if missing:
                raise ProjectError(f"linha {line_no} de {path}: faltam os campos {', '.join(missing)}",
                                   hint="cada linha precisa de id, url, title, text")
            ident = str(record["id"])
            if ident in articles:
                raise ProjectError(f"linha {line_no} de {path}: id {ident} repetido "
                                   f"(já usado em {articles[ident]['_family']})", hint="use ids únicos")
            title = str(record["title"]).strip()
            articles[ident] = {"id": ident, "url": record.get("url") or WIKI_BASE + title.replace(" ", "_"),
                               "title": title, "text": str(record["text"]).strip(), "_family": path.stem}
            families[path.stem] += 1
    return [articles[k] for k in sorted(articles, key=_id_key)], families


def _id_key(ident: str):
    # Numeric ids (as in the hub dataset) sort as numbers; others as text, after them.
    return (0, int(ident), "") if ident.isdigit() else (1, 0, ident)


def write_parquet(articles: list[dict]) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([(c, pa.string()) for c in COLUMNS])
    table = pa.table({c: [a[c] for a in articles] for c in COLUMNS}, schema=schema)
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="snappy")
    return buffer.getvalue()


def held_out_index(article_id: str, n_questions: int) -> int:
    """Which of an article's questions is held out for test: a seeded hash, so stable across runs and machines."""
    digest = hashlib.sha256(f"{SPLIT_SEED}:{article_id}".encode()).hexdigest()
    return int(digest, 16) % n_questions


def _require(record: dict, keys: tuple, path: Path, line_no: int) -> None:
    missing = [k for k in keys if not isinstance(record.get(k), str) or not record[k].strip()]
    if missing:
        raise ProjectError(f"linha {line_no} de {path}: faltam os campos {', '.join(missing)}",
                           hint="cada pergunta precisa de question e answer (e source_id, evidence)")


def split_questions(qa_dir: Path, articles: list[dict]) -> tuple[list[dict], list[dict], list[str]]:
    """(train, test, warnings) from the per-article question files; one question per article goes to test."""
    by_id = {a["id"]: a for a in articles}
    grouped: dict[str, list[dict]] = defaultdict(list)
    notes = []
    for path in sorted(qa_dir.glob("*.jsonl")):
        if path.name == "general.jsonl":
            continue
        for line_no, q in read_jsonl(path):
            _require(q, ("question", "answer"), path, line_no)
            source_id = q.get("source_id")
            if source_id is None:
                raise ProjectError(f"linha {line_no} de {path}: falta source_id",
                                   hint="diga de qual artigo (id) é a pergunta")
            source_id = str(source_id)
            if source_id not in by_id:
                notes.append(f"{path.name}, linha {line_no}: artigo {source_id} não está no corpus; pergunta ignorada")
                continue
            if q.get("source_title") not in (None, by_id[source_id]["title"]):
                notes.append(f"{path.name}, linha {line_no}: source_title '{q['source_title']}' trocado pelo título "
                             f"do artigo, '{by_id[source_id]['title']}'")
            grouped[source_id].append(q)
    train, test = [], []
    for source_id in sorted(grouped, key=_id_key):
        article, questions = by_id[source_id], grouped[source_id]
        if len(questions) != 3:
            notes.append(f"artigo {source_id} tem {len(questions)} perguntas (esperado 3)")
        held_out = held_out_index(source_id, len(questions))
        for k, q in enumerate(questions):
            split = "test" if k == held_out else "train"
            record = {"id": str(q.get("id") or f"{source_id}-q{k + 1}"), "question": q["question"].strip(),
                      "answer": q["answer"].strip(), "aliases": list(q.get("aliases") or []),
                      "source_id": source_id, "source_title": article["title"],
                      "evidence": q.get("evidence"), "split": split}
            (test if split == "test" else train).append(record)
    return train, test, notes


def general_questions(qa_dir: Path) -> list[dict]:
    path = qa_dir / "general.jsonl"
    if not path.exists():
        return []
    rows = []
    for n, (line_no, q) in enumerate(read_jsonl(path), start=1):
        _require(q, ("question", "answer"), path, line_no)
        rows.append({"id": str(q.get("id") or f"geral-{n:03d}"), "question": q["question"].strip(),
                     "answer": q["answer"].strip(), "aliases": list(q.get("aliases") or []),
                     "source_id": None, "source_title": None, "evidence": None, "split": "general",
                     "category": q.get("category")})
    return rows


def mc_items(test: list[dict], general: list[dict]) -> list[dict]:
    """Four-option items for the log-likelihood task (evaluation/mc.py), one per test and general question."""
    from evaluation.mc import build_items

    return build_items(test, general)


def jsonl_bytes(rows: list[dict]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8")


def families_table(families: dict[str, int]) -> str:
    lines = ["| família | artigos |", "|---|---:|"]
    lines += [f"| {slug} | {count} |" for slug, count in sorted(families.items())]
    lines.append(f"| **total** | **{sum(families.values())}** |")
    return "\n".join(lines)


def update_readme(readme: Path, families: dict[str, int]) -> bytes | None:
    """README.md with the marked families section regenerated, or None if the markers are missing."""
    if not readme.exists():
        return None
    text = readme.read_text(encoding="utf-8")
    pattern = re.compile(re.escape(README_START) + r".*?" + re.escape(README_END), re.DOTALL)
    if not pattern.search(text):
        return None
    block = f"{README_START}\n{families_table(families)}\n{README_END}"
    return pattern.sub(lambda _: block, text, count=1).encode("utf-8")


def write_if_changed(path: Path, data: bytes) -> bool:
    """Write only when the bytes differ, so a re-run leaves files (and their mtimes) untouched."""
    if path.exists() and path.read_bytes() == data:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    return True


def build(sources: Path, out: Path) -> dict:
    """Write the shipped dataset under `out` from `sources`; returns counts."""
    articles, families = read_articles(sources / "wiki_pt")
    if not articles:
        raise ProjectError(f"nenhum artigo em {sources / 'wiki_pt'}/*.jsonl",
                           hint="escreva as fontes (uma linha {id, url, title, text} por artigo) e rode de novo")
    train, test, notes = split_questions(sources / "qa", articles)
    general = general_questions(sources / "qa")
    outputs = {
        out / "wiki_pt" / "train-00000-of-00001.parquet": write_parquet(articles),
        out / "qa" / "train.jsonl": jsonl_bytes(train),
        out / "qa" / "test.jsonl": jsonl_bytes(test),
        out / "qa" / "general.jsonl": jsonl_bytes(general),
        out / "mc" / "ptwiki_mc.jsonl": jsonl_bytes(mc_items(test, general)),
        out / "families.json": (json.dumps(families, ensure_ascii=False, indent=2, sort_keys=True) + "\n").encode(),
    }
    readme = update_readme(out / "README.md", families)
    if readme is not None:
        outputs[out / "README.md"] = readme
    changed = [p for p, data in outputs.items() if write_if_changed(p, data)]
    return {"articles": len(articles), "families": len(families), "train": len(train), "test": len(test),
            "general": len(general), "changed": [str(p) for p in changed], "notes": notes,
            "readme_updated": readme is not None}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python data/build.py", description="Gera o corpus e as perguntas "
                                     "publicados em data/ a partir de data/sources/ (determinístico).")
    parser.add_argument("--sources", type=Path, default=DATA / "sources", help="padrão: data/sources")
    parser.add_argument("--out", type=Path, default=DATA, help="padrão: data/")
    parser.add_argument("--no-check", action="store_true", help="não roda a verificação no fim")
    args = parser.parse_args(argv)

    result = build(args.sources, args.out)
    for note in result["notes"]:
        print(f"aviso: {note}", file=sys.stderr)
    if not result["readme_updated"]:
        print(f"aviso: {args.out / 'README.md'} sem a seção {README_START}; tabela de famílias não atualizada",
              file=sys.stderr)
    print(f"corpus: {result['articles']} artigos em {result['families']} famílias; perguntas: {result['train']} "
          f"de treino, {result['test']} de teste, {result['general']} gerais")
    print(f"arquivos alterados: {len(result['changed'])}" + "".join(f"\n  {p}" for p in result["changed"]))
    if not args.no_check:
        from rag.checks import check_corpus

        problems = check_corpus(args.out / "wiki_pt", args.out / "qa")
        if problems:
            print(f"aviso: a verificação achou {len(problems)} problema(s); veja "
                  f"python -m rag corpus {args.out / 'wiki_pt'} --check", file=sys.stderr)
        else:
            print("verificação: ok")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
