"""The quantize package on the real SmolLM2-135M: conversion, quantization, estimates, evaluation, publishing."""
from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from models.errors import ProjectError

from .conftest import ROOT, run_module

GB = 1e9


@pytest.fixture(scope="module")
def smollm2_f16(tiny_model_path, tmp_path_factory) -> Path:
    """SmolLM2's F16 reference: the Q4_1 GGUF dequantized through transformers and converted (cached HF dir)."""
    from quantize.convert import convert

    out = tmp_path_factory.mktemp("q") / "smollm2-f16.gguf"
    convert(str(tiny_model_path), out, "f16", progress=False)
    return out


@pytest.fixture(scope="module")
def smollm2_quants(smollm2_f16) -> list[dict]:
    from quantize.convert import quantize_many

    return quantize_many(smollm2_f16, ["Q8_0", "Q4_K_M"], smollm2_f16.parent, verify=True, progress=False)


# --- estimate --------------------------------------------------------------------------------------------

def test_estimate_llama2_7b_fp32_and_fp16():
    from quantize.estimate import estimate

    rows = {r["type"]: r for r in estimate(params="7B", n_ctx=4096)["rows"]}
    assert rows["F32"]["weights_bytes"] == pytest.approx(28 * GB, rel=0.05)
    assert rows["F16"]["weights_bytes"] == pytest.approx(14 * GB, rel=0.05)
    # KV cache of Llama-2-7B at 4,096 tokens in f16: 2 × 32 layers × 4,096 × 4,096 × 2 bytes.
    assert rows["Q4_K_M"]["kv_bytes"] == 2 * 32 * 4096 * 4096 * 2
    # Effective bits of the mixes (above their block types: Q4_K 4.5, Q2_K 2.625).
    assert 4.7 < rows["Q4_K_M"]["bpw"] < 5.0
    assert 2.6 < rows["Q2_K"]["bpw"] < 3.4
    assert rows["Q8_0"]["bpw"] == pytest.approx(8.5, abs=0.01)
    assert rows["Q6_K"]["bpw"] == pytest.approx(6.5625, abs=0.01)


def test_estimate_generic_size_scales_with_params():
    from quantize.estimate import estimate

    a = {r["type"]: r for r in estimate(params="1B")["rows"]}
    b = {r["type"]: r for r in estimate(params="2B")["rows"]}
    assert b["F16"]["weights_bytes"] == pytest.approx(2 * a["F16"]["weights_bytes"], rel=1e-6)
    assert a["F16"]["weights_bytes"] == pytest.approx(2 * GB, rel=0.01)


def test_estimate_matches_real_smollm2_files(tiny_model_path, smollm2_f16, smollm2_quants):
    from quantize.estimate import estimate

    own = estimate(model=str(tiny_model_path), types=["Q4_1"])["rows"][0]
    assert own["real_bytes"] == tiny_model_path.stat().st_size
    assert abs(own["size_error_pct"]) < 1.0
    rows = {r["type"]: r for r in estimate(model=str(smollm2_f16), types=["F16", "Q8_0", "Q4_K_M"])["rows"]}
    for t in ("F16", "Q8_0", "Q4_K_M"):
        assert rows[t]["real_bytes"], t
        assert abs(rows[t]["size_error_pct"]) < 1.0, (t, rows[t])


def test_estimate_bad_params_is_a_clear_error():
    r = run_module("quantize", "estimate", "--params", "sete bilhões")
    assert r.returncode == 2 and r.stderr.startswith("erro: --params inválido")


# --- quantize ---------------------------------------------------------------------------------------------

def test_quantized_files_load_and_generate(smollm2_quants):
    from models.gguf import read_gguf_info

    by_type = {r["type"]: r for r in smollm2_quants}
    assert read_gguf_info(by_type["Q8_0"]["path"]).file_type == "Q8_0"
    assert read_gguf_info(by_type["Q4_K_M"]["path"]).file_type == "Q4_K_M"
    for r in smollm2_quants:
        assert isinstance(r["check"], str) and r["check"].strip(), r  # loaded in llama.cpp and generated text
    assert by_type["Q4_K_M"]["size"] < by_type["Q8_0"]["size"]


def test_unknown_type_is_a_clear_error(smollm2_f16, tmp_path):
    r = run_module("quantize", "quantize", str(smollm2_f16), "--type", "Q9_9", "-o", str(tmp_path / "x.gguf"))
    assert r.returncode == 2
    assert r.stderr.startswith("erro: tipo de quantização desconhecido: 'Q9_9'")
    assert len(r.stderr.strip().splitlines()) == 1


def test_truncated_gguf_is_a_clear_error(smollm2_f16, tmp_path):
    cut = tmp_path / "cut.gguf"
    with open(smollm2_f16, "rb") as src, open(cut, "wb") as dst:
        dst.write(src.read(8 << 20))
    r = run_module("quantize", "quantize", str(cut), "--type", "Q8_0", "-o", str(tmp_path / "x.gguf"))
    assert r.returncode == 2 and r.stderr.startswith("erro: GGUF truncado")
    assert not (tmp_path / "x.gguf").exists()


def test_missing_gguf_is_a_clear_error(tmp_path):
    r = run_module("quantize", "quantize", str(tmp_path / "nada.gguf"), "--type", "Q8_0", "-o", str(tmp_path / "x.gguf"))
    assert r.returncode == 2 and r.stderr.startswith("erro: arquivo de modelo não encontrado")


def test_already_quantized_input_needs_allow_requantize(tiny_model_path, tmp_path):
    r = run_module("quantize", "quantize", str(tiny_model_path), "--type", "Q2_K", "-o", str(tmp_path / "x.gguf"))
    assert r.returncode == 2 and "já está quantizado (Q4_1)" in r.stderr


def test_disk_full_mid_write_leaves_no_partial(smollm2_f16, tmp_path):
    """A 20 MB file-size limit makes llama.cpp's write fail half-way, like a full disk."""
    out = tmp_path / "full.gguf"

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (20 << 20, 20 << 20))

    r = subprocess.run([sys.executable, "-m", "quantize", "quantize", str(smollm2_f16), "--type", "Q8_0", "-o", str(out),
                        "--no-verify", "--quiet"], cwd=ROOT, capture_output=True, text=True, preexec_fn=limit, timeout=300)
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith("erro: sem espaço em disco ao escrever full.gguf"), r.stderr
    assert not out.exists() and not out.with_name(out.name + ".partial").exists()
    assert list(tmp_path.iterdir()) == []


def test_not_enough_free_space_is_refused_before_writing(smollm2_f16, tmp_path, monkeypatch):
    from quantize.convert import quantize_file

    monkeypatch.setattr(shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10 << 30, 10 << 30, 1 << 20))
    with pytest.raises(ProjectError, match="espaço em disco insuficiente"):
        quantize_file(smollm2_f16, tmp_path / "x.gguf", "Q8_0")
    assert list(tmp_path.iterdir()) == []


def test_interrupted_output_is_removed(tmp_path):
    from quantize.convert import atomic_output

    dst = tmp_path / "out.gguf"
    with pytest.raises(KeyboardInterrupt):
        with atomic_output(dst) as tmp:
            tmp.write_bytes(b"GGUF half")
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_types_match_llama_cpp_ftypes():
    import llama_cpp

    from quantize.types import QUANT_TYPES

    for q in QUANT_TYPES.values():
        const = "LLAMA_FTYPE_ALL_F32" if q.name == "F32" else f"LLAMA_FTYPE_MOSTLY_{q.name}"
        assert getattr(llama_cpp, const) == q.ftype, q.name
    for name in ("F16", "Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M", "Q4_0", "Q3_K_M", "Q2_K"):
        assert name in QUANT_TYPES


def test_imatrix_reaches_the_quantizer(smollm2_f16, smollm2_quants, tmp_path):
    """An importance matrix passed through ctypes changes what llama.cpp writes (types that need one are refused without)."""
    import numpy as np

    from models.gguf import read_gguf_info
    from quantize.convert import quantize_file
    from quantize.imatrix import load_imatrix, save_imatrix

    info = read_gguf_info(smollm2_f16)
    weights = {n: d for n, d, _ in info.tensors if len(d) == 2 and n.startswith("blk.")}
    rng = np.random.default_rng(0)
    sums = {n: rng.uniform(0.1, 10.0, d[0]).astype(np.float32) * 4 for n, d in weights.items()}
    imat = save_imatrix(tmp_path / "imatrix.gguf", sums, {n: 4 for n in weights}, "teste", 1, 64)
    loaded, _ = load_imatrix(imat)
    name = next(iter(weights))
    assert set(loaded) == set(weights) and np.allclose(loaded[name], sums[name] / 4)
    with pytest.raises(ProjectError, match="precisa de uma matriz de importância"):
        quantize_file(smollm2_f16, tmp_path / "no.gguf", "IQ2_XXS")
    with_imat = quantize_file(smollm2_f16, tmp_path / "q4km-imat.gguf", "Q4_K_M", imatrix=imat)
    plain = next(r["path"] for r in smollm2_quants if r["type"] == "Q4_K_M")
    assert Path(plain).stat().st_size == with_imat.stat().st_size
    assert Path(plain).read_bytes() != with_imat.read_bytes()  # same layout, different rounding: the weights were used
    assert read_gguf_info(with_imat).file_type == "Q4_K_M"
    # names that match none of the model's tensors (another model's imatrix) would be silently ignored: refused
    wrong = save_imatrix(tmp_path / "wrong.gguf", {f"{n}.weight": v for n, v in sums.items()}, {f"{n}.weight": 4 for n in weights},
                         "teste", 1, 64)
    with pytest.raises(ProjectError, match="nenhum tensor deste modelo"):
        quantize_file(smollm2_f16, tmp_path / "wrong-imat.gguf", "Q4_K_M", imatrix=wrong)
    assert not (tmp_path / "wrong-imat.gguf").exists()


def test_quantize_help_says_how_imatrix_works():
    r = run_module("quantize", "quantize", "--help")
    assert r.returncode == 0 and "--imatrix" in r.stdout and "não calcula imatrix" in " ".join(r.stdout.split())


# --- convert ----------------------------------------------------------------------------------------------

def test_hf_dir_without_weights_is_a_clear_error(tmp_path):
    d = tmp_path / "hf"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"]}))
    r = run_module("quantize", "convert", str(d), "-o", str(tmp_path / "x.gguf"))
    assert r.returncode == 2 and r.stderr.startswith("erro: a pasta") and "não tem pesos" in r.stderr
    assert not (tmp_path / "x.gguf").exists()


def test_unsupported_architecture_is_a_clear_error(tmp_path):
    d = tmp_path / "hf"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"architectures": ["TotallyNewForCausalLM"]}))
    (d / "model.safetensors").write_bytes(b"\x02\x00\x00\x00\x00\x00\x00\x00{}")
    r = run_module("quantize", "convert", str(d), "-o", str(tmp_path / "x.gguf"))
    assert r.returncode == 2 and "arquitetura não suportada" in r.stderr and "TotallyNewForCausalLM" in r.stderr


def test_convert_made_a_full_precision_reference(smollm2_f16, tiny_model_path):
    from models.gguf import read_gguf_info

    ref, src = read_gguf_info(smollm2_f16), read_gguf_info(tiny_model_path)
    assert ref.file_type == "F16" and ref.architecture == "llama"
    assert ref.n_params == src.n_params


# --- intents dataset ----------------------------------------------------------------------------------------

def test_intents_dataset_is_valid_against_its_schema():
    import jsonschema

    from quantize.intents import ENTITIES_BY_INTENT, load_intents, load_schema

    rows, schema = load_intents(), load_schema()
    validator = jsonschema.Draft202012Validator(schema)
    assert len(rows) >= 150
    assert {r["intent"] for r in rows} == set(ENTITIES_BY_INTENT) == set(schema["properties"]["intent"]["enum"])
    assert len({r["text"] for r in rows}) == len(rows)
    for r in rows:
        validator.validate({"intent": r["intent"], "entities": r["entities"]})
        assert set(r["entities"]) <= set(ENTITIES_BY_INTENT[r["intent"]]), r
        for value in r["entities"].values():
            assert value.lower() in r["text"].lower(), r  # entity values are spans of the message


def test_intent_scoring():
    from quantize.intents import load_schema, score

    ex = [{"text": "Toca samba", "intent": "tocar_musica", "entities": {"genero": "samba"}},
          {"text": "Oi", "intent": "outro", "entities": {}}]
    res = score(ex, ['```json\n{"intent": "tocar_musica", "entities": {"genero": "Samba"}}\n```', "olá!"], load_schema())
    assert res["valid_json"] == 0.5 and res["schema_valid"] == 0.5 and res["intent_accuracy"] == 0.5
    assert res["entity_f1"] == 1.0


def test_heldout_text_is_long_enough():
    words = len((ROOT / "data" / "heldout" / "pt_heldout.txt").read_text(encoding="utf-8").split())
    assert 1500 <= words <= 2600


# --- evaluate + publish -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_eval(tiny_model_path, smollm2_f16, tmp_path_factory):
    """A tiny evaluate run (few tokens, few intents) in its own cache home; run twice to test the registry."""
    from models.settings import get_settings
    from quantize.evaluate import EvalSettings, Registry, evaluate

    home = tmp_path_factory.mktemp("home")
    old = os.environ.get("PTLLM_HOME")
    os.environ["PTLLM_HOME"] = str(home)
    get_settings.cache_clear()
    try:
        out = home / "report"
        settings = EvalSettings(ppl_ctx=64, ppl_tokens=192, n_ctx=1024, intents=2, gen_tokens=8, repeats=1, pp_tokens=64)
        kwargs = dict(reference=str(smollm2_f16), settings=settings, progress=False, registry=Registry(home / "reg.json"))
        first = evaluate(str(tiny_model_path), ["F16", "Q8_0"], out, **kwargs)
        second = evaluate(str(tiny_model_path), ["F16", "Q8_0"], out, **kwargs)
        yield {"first": first, "second": second, "out": out, "home": home}
    finally:
        if old is None:
            os.environ.pop("PTLLM_HOME", None)
        else:
            os.environ["PTLLM_HOME"] = old
        get_settings.cache_clear()


def test_tiny_evaluate_writes_every_field(tiny_eval):
    out = tiny_eval["out"]
    for name in ("results.json", "report.md", "quality_vs_size.png", "speed_vs_size.png"):
        assert (out / name).exists(), name
    res = json.loads((out / "results.json").read_text())
    assert res["hardware"]["cpu"] and res["reference"]["file_type"] == "F16"
    rows = {r["type"]: r for r in res["variants"]}
    assert set(rows) == {"F16", "Q8_0"} and rows["F16"]["role"] == "reference"
    q8 = rows["Q8_0"]
    assert q8["file"]["size"] > 0 and 8 < q8["file"]["bits_per_weight"] < 10 and len(q8["file"]["sha256"]) == 64
    for key in ("ppl", "ppl_ratio", "kld", "same_top_pct", "ppl_ref"):
        assert key in q8["ppl"], key
    assert q8["ppl"]["scored_tokens"] == 3 * 31
    assert 0 <= q8["ppl"]["kld"] < 0.1 and q8["ppl"]["same_top_pct"] > 80
    for key in ("pp_tok_s", "tg_tok_s", "ttft_s", "plain_tg_tok_s", "tg_ratio_vs_plain"):
        assert q8["speed"][key] > 0, key
    assert q8["rss_peak_bytes"] > q8["file"]["size"]
    for mode in ("free", "constrained"):
        it = q8["intents"][mode]
        assert it["n"] == 2 and {"valid_json", "schema_valid", "intent_accuracy", "entity_f1"} <= set(it)
    assert q8["intents"]["constrained"]["valid_json"] == 1.0  # the grammar guarantees JSON
    assert q8["ratios"]["size"] < 0.6 and q8["estimate"]["size"] > 0
    assert "PPL / ref" in (out / "report.md").read_text()


def test_evaluate_second_run_skips_what_was_measured(tiny_eval):
    assert not any(r["cached"] for r in tiny_eval["first"]["variants"])
    assert all(r["cached"] for r in tiny_eval["second"]["variants"])
    reg = json.loads((tiny_eval["home"] / "reg.json").read_text())
    assert len(reg) == 2


def test_quantized_reference_is_refused(tiny_model_path, tmp_path):
    from quantize.evaluate import evaluate

    with pytest.raises(ProjectError, match="já está quantizada \\(Q4_1\\)"):
        evaluate(str(tiny_model_path), ["Q8_0"], tmp_path, reference=str(tiny_model_path), progress=False)


def test_publish_dry_run_builds_the_model_folder(tiny_eval):
    r = run_module("quantize", "publish", str(tiny_eval["out"]), "--repo", "alguem/smollm2-pt-gguf", "--json")
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    folder = Path(res["folder"])
    assert res["pushed"] is False
    names = sorted(p.name for p in folder.iterdir())
    assert "README.md" in names and sum(n.endswith(".gguf") for n in names) == 2
    card = (folder / "README.md").read_text()
    head = card.split("---")[1]
    for needle in ("license: apache-2.0", "language:\n- pt", "- gguf", "- quantized", "- q8_0", "quantization:"):
        assert needle in head, needle
    assert "llama_cpp import Llama" in card and "PPL / ref" in card


def test_publish_push_without_network_is_a_clear_error(tiny_eval):
    r = run_module("quantize", "publish", str(tiny_eval["out"]), "--repo", "alguem/x", "--push", "--token", "hf_fake",
                   env={"HF_HUB_OFFLINE": "1"})
    assert r.returncode == 2 and r.stderr.startswith("erro: HF_HUB_OFFLINE está ativo")


# --- slow: the real thing on the 0.5B model --------------------------------------------------------------------

@pytest.mark.slow
def test_imatrix_computed_with_transformers(smollm2_f16, tiny_model_path, tmp_path):
    from models.gguf import read_gguf_info
    from quantize.convert import quantize_file
    from quantize.imatrix import compute_imatrix, load_imatrix

    res = compute_imatrix(str(tiny_model_path), tmp_path / "imatrix.gguf", n_tokens=1024, chunk=256, progress=False)
    entries, _ = load_imatrix(res["output"])
    names = {n for n, _, _ in read_gguf_info(smollm2_f16).tensors}
    assert res["tensors"] == 30 * 7 and set(entries) <= names
    out = quantize_file(smollm2_f16, tmp_path / "q.gguf", "IQ2_XXS", imatrix=res["output"])
    assert read_gguf_info(out).file_type == "IQ2_XXS"  # llama.cpp itself refuses IQ2_XXS without an imatrix


@pytest.mark.slow
def test_qwen_05b_chain_from_one_command(tmp_path):
    r = run_module("quantize", "evaluate", "--model", "qwen2.5-0.5b-instruct", "--types", "Q8_0,Q2_K,native",
                   "--ppl-tokens", "1024", "--intents", "10", "--out", str(tmp_path), timeout=3600)
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads((tmp_path / "results.json").read_text())
    assert res["reference"]["kind"] == "dequantized"
    assert {v["type"] for v in res["variants"]} >= {"F16", "Q8_0", "Q2_K", "Q4_K_M"}
