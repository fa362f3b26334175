"""Aggregate the study's answers into tables with 95 % bootstrap CIs, paired tests, plots and a verdict."""
from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from . import metrics as m
from .study import VARIANT_LABELS, VARIANTS, AnswerCache, StudyConfig

# Ovadia et al. 2023 ("Fine-Tuning or Retrieval?"), Llama-2-7B on new facts ("current events"), accuracy.
OVADIA_LLAMA2 = {"base": 0.353, "rag": 0.585, "finetuned": 0.219, "finetuned (paraphrases)": 0.392}
QUANT_ORDER = ["F16", "Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M", "Q4_0", "Q3_K_M", "Q2_K", "native"]


def _hardware() -> str:
    from rag.bench import hardware

    return hardware()


def _rows(cfg: StudyConfig) -> list[dict]:
    cache = AnswerCache(cfg.out_dir / "answers.jsonl")
    settings = cfg.gen_settings()
    # Keep only rows made with the current settings and requested cells (older runs stay in the file).
    wanted = {(p.base, q, v) for p in cfg.models for q in cfg.quants for v in cfg.variants}
    rows = [r for r in cache.rows.values() if (r["base_model"], r["quant"], r["variant"]) in wanted]
    from .study import load_questions

    allowed = {q["id"] for qs in load_questions(cfg).values() for q in qs}
    rows = [r for r in rows if r["qid"] in allowed]
    wanted_settings = {v: cfg.settings_for(v) for v in cfg.variants}
    return [r for r in rows if r.get("settings", settings) == wanted_settings[r["variant"]]]


def aggregate(rows: list[dict]) -> dict:
    """{(base_model, quant, variant): {metric: (mean, lo, hi) | value}} for the test and general splits."""
    cells: dict[tuple, dict] = defaultdict(lambda: {"test": [], "general": []})
    for r in rows:
        cells[(r["base_model"], r["quant"], r["variant"])][r["split"] if r["split"] == "general" else "test"].append(r)
    out = {}
    for key, by in cells.items():
        t, g = by["test"], by["general"]
        cell = {"n_test": len(t), "n_general": len(g), "model": (t or g)[0]["model"], "file_mib": (t or g)[0]["file_mib"]}
        for name in ("contains", "exact", "f1", "rouge_l", "semantic", "faithfulness", "citation_correct",
                     "retrieved_gold", "portuguese"):
            vals = [float(r["scores"][name]) for r in t if r["scores"].get(name) is not None]
            if vals:
                cell[name] = m.bootstrap_ci(vals)
        if g:
            cell["general_contains"] = m.bootstrap_ci([float(r["scores"]["contains"]) for r in g])
            cell["general_abstained"] = m.bootstrap_ci([float(r["scores"]["abstained"]) for r in g])
            cell["general_portuguese"] = m.bootstrap_ci([float(r["scores"]["portuguese"]) for r in g])
        if t:
            cell["test_abstained"] = m.bootstrap_ci([float(r["scores"]["abstained"]) for r in t])
        allr = t + g
        cell["ttft_s"] = m.mean(r["ttft_s"] for r in allr)
        cell["total_s"] = m.mean(r["total_s"] for r in allr)
        cell["tok_s"] = m.mean(r["tok_s"] for r in allr if r["tok_s"])
        cell["rss_mib"] = max(r["rss_mib"] for r in allr)
        out[key] = cell
    return out


def paired(rows: list[dict]) -> list[dict]:
    """Each variant against the base at the same model and quantization, on the same test questions."""
    by = defaultdict(dict)
    for r in rows:
        if r["split"] != "general":
            by[(r["base_model"], r["quant"], r["variant"])][r["qid"]] = r
    tests = []
    for (model, quant, variant), answers in sorted(by.items()):
        base = by.get((model, quant, "base"))
        if variant == "base" or not base:
            continue
        common = sorted(set(base) & set(answers))
        a = [bool(base[q]["scores"]["contains"]) for q in common]
        b = [bool(answers[q]["scores"]["contains"]) for q in common]
        tests.append({"model": model, "quant": quant, "variant": variant, "n": len(common),
                      "mcnemar": m.mcnemar(a, b),
                      "f1_diff": m.paired_bootstrap([base[q]["scores"]["f1"] for q in common],
                                                    [answers[q]["scores"]["f1"] for q in common])})
    return tests


def _fmt(ci, pct: bool = True) -> str:
    if ci is None:
        return "–"
    mean, lo, hi = ci
    if mean is None:
        return "–"
    k = 100 if pct else 1
    return f"{mean * k:.1f} [{lo * k:.1f}, {hi * k:.1f}]"


def _order(keys):
    return sorted(keys, key=lambda k: (k[0], QUANT_ORDER.index(k[1]) if k[1] in QUANT_ORDER else 99,
                                       VARIANTS.index(k[2])))


def verdict(agg: dict, tests: list[dict]) -> list[str]:
    """Plain sentences: who wins where, with CIs, and whether it is significant."""
    lines = []
    by_mq = defaultdict(dict)
    for (model, quant, variant), cell in agg.items():
        if "contains" in cell:
            by_mq[(model, quant)][variant] = cell
    for (model, quant), cells in sorted(by_mq.items()):
        best = max(cells, key=lambda v: cells[v]["contains"][0])
        c = cells[best]["contains"]
        sig = {(t["variant"]): t for t in tests if t["model"] == model and t["quant"] == quant}
        parts = [f"**{model} {quant}**: melhor variante nas perguntas do corpus: **{VARIANT_LABELS[best]}** "
                 f"({c[0] * 100:.1f} % [{c[1] * 100:.1f}, {c[2] * 100:.1f}])"]
        for v in ("finetuned", "rag", "finetuned_rag"):
            if v in cells and "base" in cells and v in sig:
                d = cells[v]["contains"][0] - cells["base"]["contains"][0]
                p = sig[v]["mcnemar"]["p"]
                word = "significativa" if p < 0.05 else "não significativa"
                parts.append(f"{VARIANT_LABELS[v]} vs Base: {d * 100:+.1f} pontos (McNemar p = {p:.3g}, {word})")
        if "finetuned" in cells and "base" in cells and "general_contains" in cells["finetuned"] \
                and "general_contains" in cells["base"]:
            d = cells["finetuned"]["general_contains"][0] - cells["base"]["general_contains"][0]
            parts.append(f"conhecimento geral após o fine-tune: {d * 100:+.1f} pontos")
        lines.append("; ".join(parts) + ".")
    return lines


def render(cfg: StudyConfig, agg: dict, tests: list[dict], mc: dict | None, counts: dict | None = None,
           judge: dict | None = None) -> str:
    hw = _hardware()
    out = [f"# Estudo: fine-tuning vs RAG vs ambos — `{cfg.name}`", "",
           f"Hardware: {hw}. Geração: llama.cpp, gulosa (temperatura 0, seed {cfg.seed}), até {cfg.max_tokens} tokens, "
           f"contexto {cfg.n_ctx}, RAG com k = {cfg.k}. Intervalos: bootstrap 95 % sobre as perguntas.", "",
           "## Veredito", ""]
    out += [f"- {line}" for line in verdict(agg, tests)] or ["- (sem resultados ainda)"]
    out += ["", "Referência (Ovadia et al. 2023, Llama-2-7B, fatos novos): "
            + ", ".join(f"{k} {v:.3f}" for k, v in OVADIA_LLAMA2.items()) + ".", "",
            "## Perguntas sobre o corpus (split test)", "",
            "| modelo | quant. | variante | n | contém resposta % | EM % | F1 % | ROUGE-L % | semântica % | "
            "fidelidade % | citação correta % | fonte certa recuperada % | em português % |",
            "|---|---|---|---:|---|---|---|---|---|---|---|---|---|"]
    for key in _order(agg):
        c = agg[key]
        if not c["n_test"]:
            continue
        out.append(f"| {key[0]} | {key[1]} | {VARIANT_LABELS[key[2]]} | {c['n_test']} | {_fmt(c.get('contains'))} | "
                   f"{_fmt(c.get('exact'))} | {_fmt(c.get('f1'))} | {_fmt(c.get('rouge_l'))} | "
                   f"{_fmt(c.get('semantic'))} | {_fmt(c.get('faithfulness'))} | {_fmt(c.get('citation_correct'))} | "
                   f"{_fmt(c.get('retrieved_gold'))} | {_fmt(c.get('portuguese'))} |")
    out += ["", "## Perguntas gerais (fora do corpus)", "",
            "Mede o que o fine-tune custa em conhecimento geral e se o RAG diz \"não sei\" quando as fontes não têm a resposta.", "",
            "| modelo | quant. | variante | n | acerto % | diz \"não sei\" % | em português % |", "|---|---|---|---:|---|---|---|"]
    for key in _order(agg):
        c = agg[key]
        if c["n_general"]:
            out.append(f"| {key[0]} | {key[1]} | {VARIANT_LABELS[key[2]]} | {c['n_general']} | "
                       f"{_fmt(c.get('general_contains'))} | {_fmt(c.get('general_abstained'))} | "
                       f"{_fmt(c.get('general_portuguese'))} |")
    out += ["", "## Custo", "", "| modelo | quant. | variante | arquivo MiB | 1º token s | total s | tokens/s | RSS máx. MiB |",
            "|---|---|---|---:|---:|---:|---:|---:|"]
    for key in _order(agg):
        c = agg[key]
        out.append(f"| {key[0]} | {key[1]} | {VARIANT_LABELS[key[2]]} | {c['file_mib']} | {c['ttft_s']:.2f} | "
                   f"{c['total_s']:.2f} | {c['tok_s'] or 0:.1f} | {c['rss_mib']:.0f} |")
    if tests:
        out += ["", "## Testes pareados contra a Base (mesmas perguntas)", "",
                "| modelo | quant. | variante | n | só Base acerta | só variante acerta | McNemar p | ΔF1 [IC 95 %] | p (bootstrap) |",
                "|---|---|---|---:|---:|---:|---:|---|---:|"]
        for t in tests:
            f = t["f1_diff"]
            ci = f"{f['diff'] * 100:+.1f} [{f['low'] * 100:+.1f}, {f['high'] * 100:+.1f}]" if f["diff"] is not None else "–"
            out.append(f"| {t['model']} | {t['quant']} | {VARIANT_LABELS[t['variant']]} | {t['n']} | "
                       f"{t['mcnemar']['only_a']} | {t['mcnemar']['only_b']} | {t['mcnemar']['p']:.3g} | {ci} | "
                       f"{f['p'] if f['p'] is not None else '–'} |")
    if mc:
        out += ["", "## Múltipla escolha por log-verossimilhança (estilo HellaSwag / lm-eval)", "",
                f"Itens: `{cfg.mc_file}`; acc = maior log-prob total da opção, acc_norm = normalizada pelo número de bytes.", "",
                "| modelo | quant. | n | acc % | acc_norm % |", "|---|---|---:|---|---|"]
        for key, r in sorted(mc.items()):
            out.append(f"| {r['model']} | {r['quant']} | {r['n']} | {_fmt(r['acc'])} | {_fmt(r['acc_norm'])} |")
    if judge:
        out += ["", f"## Juiz LLM par a par (`{cfg.judge}`, duas ordens; só conta veredito consistente)", "",
                "| modelo | quant. | variante vs Base | vitórias | empates | derrotas |", "|---|---|---|---:|---:|---:|"]
        for key, t in sorted(judge.items()):
            model, quant, variant = key.split("|")
            out.append(f"| {model} | {quant} | {VARIANT_LABELS[variant]} | {t.get('win', 0)} | {t.get('tie', 0)} | "
                       f"{t.get('loss', 0)} |")
    if counts and counts.get("skipped"):
        out += ["", "## Células não avaliadas", ""]
        seen = set()
        for s in counts["skipped"]:
            k = (s["model"], s["quant"])
            if k not in seen:
                seen.add(k)
                out.append(f"- {s['model']} {s['quant']}: {s['why']}")
    out += ["", "![acerto por variante e quantização](accuracy_by_variant.png)", "",
            "![acerto vs tamanho do arquivo](accuracy_vs_size.png)", "", "![acerto vs latência](accuracy_vs_latency.png)", ""]
    return "\n".join(out)


def plots(agg: dict, out_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    keys = [k for k in _order(agg) if "contains" in agg[k]]
    if not keys:
        return files
    quants = [q for q in QUANT_ORDER if any(k[1] == q for k in keys)]
    models = sorted({k[0] for k in keys})
    variants = [v for v in VARIANTS if any(k[2] == v for k in keys)]
    fig, axes = plt.subplots(1, len(models), figsize=(max(6, 2.2 * len(quants) * len(models)), 4.2), squeeze=False)
    width = 0.8 / max(len(variants), 1)
    for ax, model in zip(axes[0], models):
        for i, v in enumerate(variants):
            xs, ys, err = [], [], [[], []]
            for j, q in enumerate(quants):
                c = agg.get((model, q, v))
                if c and "contains" in c:
                    mean, lo, hi = c["contains"]
                    xs.append(j + i * width - 0.4 + width / 2)
                    ys.append(mean * 100)
                    err[0].append((mean - lo) * 100)
                    err[1].append((hi - mean) * 100)
            ax.bar(xs, ys, width, yerr=err, capsize=3, label=VARIANT_LABELS[v])
        ax.set_xticks(range(len(quants)), quants)
        ax.set_ylabel("contém a resposta (%)")
        ax.set_title(model)
        ax.set_ylim(0, 100)
        ax.legend(fontsize=8)
    fig.tight_layout()
    files.append(out_dir / "accuracy_by_variant.png")
    fig.savefig(files[-1], dpi=110)
    plt.close(fig)

    for fname, xkey, xlabel in (("accuracy_vs_size.png", "file_mib", "tamanho do arquivo (MiB)"),
                                ("accuracy_vs_latency.png", "total_s", "tempo médio por resposta (s)")):
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        for v in variants:
            pts = [(agg[k][xkey], agg[k]["contains"][0] * 100, k[1]) for k in keys if k[2] == v]
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], "o", label=VARIANT_LABELS[v])
                for x, y, q in pts:
                    ax.annotate(q, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("contém a resposta (%)")
        ax.legend(fontsize=8)
        fig.tight_layout()
        files.append(out_dir / fname)
        fig.savefig(files[-1], dpi=110)
        plt.close(fig)
    return files


def build_report(cfg: StudyConfig, counts: dict | None = None) -> dict:
    rows = _rows(cfg)
    agg = aggregate(rows)
    tests = paired(rows)
    mc_path = cfg.out_dir / "mc.json"
    mc = json.loads(mc_path.read_text()) if mc_path.exists() else None
    if mc:
        wanted = {(m_, q) for p in cfg.models for m_ in (p.base, p.finetuned) if m_ for q in cfg.quants}
        mc = {k: v for k, v in mc.items() if (v["model"], v["quant"]) in wanted} or None
    judge_path = cfg.out_dir / "judge.json"
    judge = json.loads(judge_path.read_text()) if cfg.judge and judge_path.exists() else None
    out = cfg.out_dir
    out.mkdir(parents=True, exist_ok=True)
    md = render(cfg, agg, tests, mc, counts, judge)
    (out / "report.md").write_text(md, encoding="utf-8")
    data = {"config": cfg.name, "hardware": _hardware(), "n_answers": len(rows),
            "cells": [{"model": k[0], "quant": k[1], "variant": k[2], **v} for k, v in _order_items(agg)],
            "paired": tests, "mc": mc, "judge": judge, "verdict": verdict(agg, tests)}
    (out / "report.json").write_text(json.dumps(data, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    plots(agg, out)
    return data


def _order_items(agg):
    return [(k, agg[k]) for k in _order(agg)]
