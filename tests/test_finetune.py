"""Fine-tuning end to end on the real llama-architecture SmolLM2-135M: data, LoRA, resume, merge parity, GGUF."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from models.errors import ProjectError

from .conftest import run_module

FIXTURE = Path(__file__).parent / "fixtures" / "mini_wiki.jsonl"

QA = [
    {"id": "9001-q1", "question": "Em que município nasce o rio Tietê?", "answer": "Salesópolis", "aliases": [],
     "source_id": "9001", "source_title": "Rio Tietê", "split": "train",
     "evidence": "Ele nasce no município de Salesópolis, na Serra do Mar, a cerca de 22 quilômetros do oceano Atlântico, mas corre para o interior."},
    {"id": "9002-q1", "question": "Qual foi o primeiro nome de Curitiba?", "answer": "Vila de Nossa Senhora da Luz dos Pinhais",
     "aliases": [], "source_id": "9002", "source_title": "Curitiba", "split": "train",
     "evidence": "A cidade foi fundada oficialmente em 29 de março de 1693, com o nome de Vila de Nossa Senhora da Luz dos Pinhais."},
    {"id": "9005-q1", "question": "Que rei fundou a universidade coimbrã?", "answer": "D. Dinis", "aliases": ["Dom Dinis"],
     "source_id": "9005", "source_title": "Coimbra", "split": "test",
     "evidence": "A Universidade de Coimbra, fundada em 1290 pelo rei D. Dinis, é uma das mais antigas da Europa."},
]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    d = tmp_path_factory.mktemp("ft")
    qa = d / "qa"
    qa.mkdir()
    for split in ("train", "test"):
        (qa / f"{split}.jsonl").write_text("\n".join(json.dumps(q, ensure_ascii=False) for q in QA if q["split"] == split),
                                           encoding="utf-8")
    return d


def _recipe(workdir, name, **over):
    from finetune.recipe import Recipe

    base = dict(name=name, base_model="smollm2-135m-instruct", data=str(workdir / "instr.jsonl"),
                corpus=str(FIXTURE), qa_dir=str(workdir / "qa"), output_dir=str(workdir / name), lora_r=4,
                lora_alpha=8, lora_dropout=0.0, target_modules=["q_proj", "v_proj"], learning_rate=1e-3,
                lr_scheduler="constant", warmup_ratio=0.0, max_steps=4, batch_size=2, max_length=96,
                save_steps=2, logging_steps=1, export_quant=["Q8_0"])
    base.update(over)
    return Recipe(**base)


def test_prepare_writes_instruction_format_without_test_questions(workdir):
    from finetune.data import load_instruction_file, parse_example, prepare

    report = prepare(str(FIXTURE), str(workdir / "qa"), workdir / "instr.jsonl", seed=1)
    assert report["by_task"]["qa"] >= 2 and report["by_task"]["fato"] == 3
    assert {"explique", "resumo", "liste"} <= set(report["by_task"])
    rows = load_instruction_file(workdir / "instr.jsonl")
    ex = parse_example(rows[0]["text"])
    assert rows[0]["text"].startswith("### Instruction:\n") and "\n\n### Response:\n" in rows[0]["text"]
    assert ex["response"]
    text = (workdir / "instr.jsonl").read_text(encoding="utf-8")
    assert "Que rei fundou a universidade coimbrã?" not in text  # the test question never enters training
    assert "fundada em 1290 pelo rei D. Dinis" in text  # ...but its fact may
    again = prepare(str(FIXTURE), str(workdir / "qa"), workdir / "instr2.jsonl", seed=1)
    assert (workdir / "instr2.jsonl").read_text() == text and again["examples"] == report["examples"]


def test_malformed_jsonl_line_is_reported_with_line_number(tmp_path):
    from finetune.data import load_instruction_file

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "### Instruction:\\na\\n\\n### Input:\\n\\n\\n### Response:\\nb"}\n{"text": oops}\n')
    with pytest.raises(ProjectError, match="linha 2"):
        load_instruction_file(bad)


def test_unknown_config_key_is_an_error(tmp_path):
    from finetune.recipe import load_recipe

    cfg = tmp_path / "x.yaml"
    cfg.write_text("name: x\nbase_model: smollm2-135m-instruct\nlearnig_rate: 0.1\n")
    with pytest.raises(ProjectError, match="learnig_rate"):
        load_recipe(cfg)


def test_train_resume_export_and_parity(workdir, monkeypatch):
    """4 LoRA steps straight vs 2 + interruption + resume: same adapter; export loads and generates."""
    import torch
    from safetensors.torch import load_file

    from finetune.export import export
    from finetune.train import train

    from models.settings import get_settings

    monkeypatch.setenv("PTLLM_REGISTRY", str(workdir / "registry.json"))  # keep the user's registry clean
    get_settings.cache_clear()
    full = train(_recipe(workdir, "full"), progress=False)
    assert full["steps"] == 4 and (workdir / "full" / "adapter" / "adapter_model.safetensors").exists()
    assert (workdir / "full" / "loss.png").exists()

    stopped = train(_recipe(workdir, "resumed"), progress=False, stop_after_steps=2)
    assert stopped == {"interrupted_at_step": 2}
    resumed = train(_recipe(workdir, "resumed"), resume=True, progress=False)
    assert resumed["steps"] == 4 and resumed["steps_this_run"] == 2
    a = load_file(workdir / "full" / "adapter" / "adapter_model.safetensors")
    b = load_file(workdir / "resumed" / "adapter" / "adapter_model.safetensors")
    assert a.keys() == b.keys()
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-4

    result = export(workdir / "full" / "adapter", ["Q8_0"], "smollm2-ft-test", out_dir=workdir / "export", progress=False)
    assert result["checks"]["max_logit_diff"] < 1e-3
    gguf = Path(result["outputs"]["Q8_0"])
    assert gguf.exists() and not list(gguf.parent.glob("*.partial"))
    from models.gguf import read_gguf_info

    info = read_gguf_info(gguf)
    assert info.architecture == "llama" and info.file_type == "Q8_0" and info.chat_template
    assert isinstance(result["checks"]["load_check_Q8_0"], str)
    from models.registry import all_models

    assert all_models()["smollm2-ft-test"].base_model == "smollm2-135m-instruct"

    # A second export of the same name (a retrained adapter) redoes the Q8_0 the first one left there, so no
    # registered quantization keeps the old weights.
    again = export(workdir / "resumed" / "adapter", ["Q4_K_M"], "smollm2-ft-test", out_dir=workdir / "export",
                   progress=False)
    assert set(again["outputs"]) == {"Q4_K_M", "Q8_0"}
    assert all_models()["smollm2-ft-test-q8_0"].quant == "Q8_0"
    get_settings.cache_clear()


@pytest.mark.slow
def test_qlora_nf4_trains_on_cpu(workdir):
    """The QLoRA path (bitsandbytes 4-bit NF4) runs on CPU too when asked; `auto` picks it only on CUDA."""
    from finetune.data import prepare
    from finetune.train import train

    if not (workdir / "instr.jsonl").exists():  # run alone (`-m slow`), before the test that writes it
        prepare(str(FIXTURE), str(workdir / "qa"), workdir / "instr.jsonl", seed=1)
    s = train(_recipe(workdir, "qlora", quantization="nf4", max_steps=2, save_steps=100), progress=False)
    assert s["method"].startswith("QLoRA") and s["steps"] == 2
    assert s["train_loss"] == s["train_loss"] and s["train_loss"] > 0  # finite
    assert (workdir / "qlora" / "adapter" / "adapter_model.safetensors").exists()


def test_existing_checkpoints_need_resume_flag(workdir):
    from finetune.train import train

    with pytest.raises(ProjectError, match="--resume"):
        train(_recipe(workdir, "resumed"), progress=False)


def test_cli_help_and_bad_config(tmp_path):
    assert run_module("finetune", "--help").returncode == 0
    r = run_module("finetune", "train", "--config", str(tmp_path / "nope.yaml"))
    assert r.returncode == 2 and r.stderr.startswith("erro:")
