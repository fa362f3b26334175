"""The study: metrics and statistics, multiple-choice items, and a real (tiny) run on SmolLM2 that resumes."""
from __future__ import annotations

import json

import pytest

from evaluation import metrics as m
from evaluation.mc import build_items
from tests.conftest import ROOT, TEST_MODEL, run_module

FIXTURE = ROOT / "tests" / "fixtures" / "mini_wiki.jsonl"

TEST_QS = [
    {"id": "9002-q1", "question": "Em que ano Curitiba foi fundada oficialmente?", "answer": "1693", "aliases": [],
     "source_id": "9002", "source_title": "Curitiba", "split": "test",
     "evidence": "A cidade foi fundada oficialmente em 29 de março de 1693, com o nome de Vila de Nossa Senhora da Luz dos Pinhais."},
    {"id": "9005-q1", "question": "Qual rei fundou a Universidade de Coimbra?", "answer": "D. Dinis",
     "aliases": ["Dom Dinis", "Dinis"], "source_id": "9005", "source_title": "Coimbra", "split": "test",
     "evidence": "A Universidade de Coimbra, fundada em 1290 pelo rei D. Dinis, é uma das mais antigas da Europa."},
    {"id": "9003-q1", "question": "Em que cidade nasceu Machado de Assis?", "answer": "Rio de Janeiro", "aliases": [],
     "source_id": "9003", "source_title": "Machado de Assis", "split": "test", "evidence": "x"},
]
GENERAL_QS = [
    {"id": "gen-1", "question": "Qual é o símbolo químico do ouro?", "answer": "Au", "aliases": [],
     "source_id": None, "source_title": None, "evidence": None, "split": "general", "category": "ciência"},
    {"id": "gen-2", "question": "Quantos lados tem um hexágono?", "answer": "seis", "aliases": ["6"],
     "source_id": None, "source_title": None, "evidence": None, "split": "general", "category": "ciência"},
]


# ------------------------------------------------------------------------------------------------ metrics

def test_contains_ignores_case_accents_and_uses_aliases():
    assert m.contains("Foi fundada por dom dinis em 1290.", "D. Dinis", ["Dom Dinis"])
    assert m.contains("A capital é SÃO LUÍS.", "São Luís")
    assert not m.contains("Foi em 16930.", "1693")  # whole words only
    assert m.exact_match("1693 [1]", "1693") and not m.exact_match("Em 1693.", "1693")


def test_f1_rouge_and_abstention():
    assert m.token_f1("Rio de Janeiro", "Rio de Janeiro") == 1.0
    assert 0 < m.token_f1("no Rio", "Rio de Janeiro") < 1
    assert m.rouge_l("a b c d", "a c d") == pytest.approx(2 * 0.75 * 1.0 / 1.75)
    assert m.abstained("Desculpe, não sei responder.") and m.abstained("Não encontrei essa informação nas fontes.")
    assert not m.abstained("Foi em 1693.")


def test_language_faithfulness_and_citations():
    assert m.is_portuguese("A cidade foi fundada em 1693 pelos portugueses.")
    assert not m.is_portuguese("The city was founded in 1693 by the Portuguese and it is the capital.")
    assert m.faithfulness("Fundada em 1693 [1].", ["Curitiba foi fundada em 1693."]) == 1.0
    assert m.faithfulness("Fundada por marcianos.", ["Curitiba foi fundada em 1693."]) == 0.5
    assert m.citation_correct("Em 1693 [2].", ["9001", "9002"], "9002") is True
    assert m.citation_correct("Em 1693 [1].", ["9001", "9002"], "9002") is False
    assert m.citation_correct("Em 1693 [7].", ["9001", "9002"], "9002") is False
    assert m.citation_correct("Em 1693.", ["9002"], "9002") is False


def test_bootstrap_and_paired_tests():
    mean, lo, hi = m.bootstrap_ci([1, 0, 1, 1, 0, 1, 1, 1, 0, 1])
    assert mean == pytest.approx(0.7) and lo <= mean <= hi and hi - lo > 0.1
    same = m.paired_bootstrap([0.5] * 20, [0.5] * 20)
    assert same["diff"] == 0 and same["p"] == 1.0
    better = m.paired_bootstrap([0] * 30, [1] * 30)
    assert better["diff"] == 1 and better["p"] < 0.01
    assert m.mcnemar([False] * 12, [True] * 12)["p"] < 0.001
    assert m.mcnemar([True, False], [True, False])["p"] == 1.0


def test_mc_items_are_deterministic_and_well_formed():
    test = [dict(q, answer=a, id=f"{i}-q1", source_id=f"10000{i}")
            for i, (q, a) in enumerate(zip([TEST_QS[0]] * 5, ["1693", "1554", "1711", "1823", "1940"]))]
    items = build_items(test, GENERAL_QS)
    assert items == build_items(test, GENERAL_QS)
    assert len(items) == 5  # two general questions are too few for four options: left out
    for item, q in zip(items, test):
        assert len(item["choices"]) == 4 and len(set(item["choices"])) == 4
        assert item["choices"][item["label"]] == q["answer"]
        assert all(any(ch.isdigit() for ch in c) for c in item["choices"])  # years with years


# ------------------------------------------------------------------------------------------- the real run

@pytest.fixture(scope="module")
def study_dirs(tmp_path_factory):
    from rag.store import ingest

    base = tmp_path_factory.mktemp("study")
    qa = base / "qa"
    qa.mkdir()
    (qa / "test.jsonl").write_text("".join(json.dumps(q, ensure_ascii=False) + "\n" for q in TEST_QS))
    (qa / "general.jsonl").write_text("".join(json.dumps(q, ensure_ascii=False) + "\n" for q in GENERAL_QS))
    mc = base / "mc.jsonl"
    items = [{"id": "mc-1", "group": "corpus", "question": "Em que ano Curitiba foi fundada?",
              "choices": ["1554", "1693", "1711", "1823"], "label": 1, "source_id": "9002"},
             {"id": "mc-2", "group": "geral", "question": "Qual é o símbolo químico do ouro?",
              "choices": ["Ag", "Fe", "Au", "Cu"], "label": 2, "source_id": None}]
    mc.write_text("".join(json.dumps(i, ensure_ascii=False) + "\n" for i in items))
    store = base / "store"
    ingest(str(FIXTURE), store, progress=False)
    cfg = base / "study.yaml"
    cfg.write_text(f"""name: tiny
models:
  - base: {TEST_MODEL}
    finetuned: modelo-que-nao-existe
quants: [native]
variants: [base, finetuned, rag]
splits: [test, general]
qa_dir: {qa}
store: {store}
k: 2
max_tokens: 12
n_ctx: 1024
mc: true
mc_file: {mc}
out: {base / 'out'}
""")
    return cfg, base / "out"


def test_study_runs_resumes_and_reports(study_dirs):
    cfg, out = study_dirs
    r = run_module("evaluation", "run", "--config", str(cfg), "--quiet", timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    rows = [json.loads(line) for line in (out / "answers.jsonl").read_text().splitlines()]
    assert len(rows) == 2 * (len(TEST_QS) + len(GENERAL_QS))  # base and rag; the fine-tune does not exist
    assert {r["variant"] for r in rows} == {"base", "rag"}
    rag_rows = [r for r in rows if r["variant"] == "rag" and r["split"] == "test"]
    assert all("retrieved_gold" in r["scores"] for r in rag_rows if r["sources"])
    assert all(r["file_sha256"] and r["ttft_s"] > 0 for r in rows if r["tokens"])
    report = json.loads((out / "report.json").read_text())
    assert {(c["variant"], c["n_test"], c["n_general"]) for c in report["cells"]} == {("base", 3, 2), ("rag", 3, 2)}
    assert report["paired"] and report["paired"][0]["variant"] == "rag" and report["paired"][0]["n"] == 3
    assert report["verdict"] and report["mc"]
    (mc,) = report["mc"].values()
    assert mc["n"] == 2 and 0 <= mc["acc"][0] <= 1
    md = (out / "report.md").read_text()
    assert "modelo-que-nao-existe" in md and "## Veredito" in md  # the skipped cell is named, with its reason
    for png in ("accuracy_by_variant.png", "accuracy_vs_size.png", "accuracy_vs_latency.png"):
        assert (out / png).stat().st_size > 1000

    # Second run: everything comes from the cache, nothing is generated again.
    r2 = run_module("evaluation", "run", "--config", str(cfg), "--quiet", timeout=600)
    assert r2.returncode == 0, r2.stderr[-3000:]
    assert "0 geradas, 10 do cache" in r2.stderr
    assert len((out / "answers.jsonl").read_text().splitlines()) == len(rows)


def test_turning_the_citation_check_off_rescores_without_generating(study_dirs, tmp_path):
    """The citation check runs after generation: toggling it re-scores the cached answers (same passages,
    retrieved again) instead of asking the model again."""
    cfg, out = study_dirs
    n_before = len((out / "answers.jsonl").read_text().splitlines())
    off = tmp_path / "study-off.yaml"
    off.write_text(cfg.read_text().replace("variants: [base, finetuned, rag]", "variants: [rag]")
                   + "rag_attribution: false\n")
    r = run_module("evaluation", "run", "--config", str(off), "--quiet", "--no-mc", timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "0 geradas, 5 do cache (das quais 5 reavaliadas" in r.stderr
    rows = [json.loads(line) for line in (out / "answers.jsonl").read_text().splitlines()][n_before:]
    assert len(rows) == 5 and all(r["settings"]["rag_attribution"] is False and r["rescored_from"] for r in rows)
    assert all(r["answer"] == r["raw_answer"] for r in rows)  # the model's own text, no marker added


def test_cache_survives_a_cut_line(study_dirs, tmp_path):
    from evaluation.study import AnswerCache

    _, out = study_dirs
    path = tmp_path / "answers.jsonl"
    lines = (out / "answers.jsonl").read_text().splitlines()
    path.write_text("\n".join(lines[:3]) + "\n" + lines[3][: len(lines[3]) // 2])  # a crash mid-write
    cache = AnswerCache(path)
    assert len(cache.rows) == 3


def test_bad_config_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nvariants: [base, magic]\n")
    r = run_module("evaluation", "run", "--config", str(bad))
    assert r.returncode == 2 and "variantes desconhecidas: magic" in r.stderr
    bad.write_text("name: x\ntemperatura: 3\n")
    r = run_module("evaluation", "report", "--config", str(bad))
    assert r.returncode == 2 and "chaves desconhecidas" in r.stderr


def test_multiple_choice_scores_options_from_the_shared_context(tiny_model_path):
    """The context is evaluated once per item and each option from its end: every option gets its own token
    count, the scores do not depend on the order the options come in, and they stay close to scoring each
    option's whole sequence anew (llama.cpp computes short batches with other kernels, so not bit-equal)."""
    import llama_cpp

    from evaluation.mc import PROMPT, option_logprob, option_logprobs

    llm = llama_cpp.Llama(str(tiny_model_path), n_ctx=512, logits_all=True, verbose=False)
    context = PROMPT.format(question="Qual é a capital de Portugal?")
    options = ["Lisboa", "Porto", "Coimbra, às margens do rio Mondego", "Braga"]
    shared = option_logprobs(llm, context, options)
    reordered = option_logprobs(llm, context, options[::-1])[::-1]
    anew = [option_logprob(llm, context, o) for o in options]
    assert [n for _, n in shared] == [n for _, n in anew] and shared[2][1] > shared[0][1] >= 1
    assert all(s < 0 for s, _ in shared)
    assert [s for s, _ in shared] == pytest.approx([s for s, _ in reordered], abs=1e-6)
    assert [s for s, _ in shared] == pytest.approx([s for s, _ in anew], abs=0.25 * len(options[2].split()) + 0.5)
    llm.close()
