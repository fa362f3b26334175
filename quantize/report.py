"""results.json → report.md (tables) and PNG plots (quality vs size, speed vs size, JSON task)."""
from __future__ import annotations

import json
import os
from pathlib import Path


def _mb(n) -> str:
    return "—" if n is None else f"{n / 1e6:,.0f}".replace(",", ".")


def _f(x, fmt=".3f", none="—") -> str:
    return none if x is None else format(x, fmt)


def _pct(x, none="—") -> str:
    return none if x is None else f"{100 * x:.0f} %"


def _rows(results: dict) -> list[dict]:
    ok = [r for r in results["variants"] if "error" not in r]
    return sorted(ok, key=lambda r: -r["file"]["size"])


def hardware_line(hw: dict) -> str:
    ram = f", {hw['ram_bytes'] / 2**30:.0f} GiB RAM" if hw.get("ram_bytes") else ""
    return (f"{hw['cpu']}, {hw['cores']} núcleos{ram}, {hw['threads']} threads, {hw['os']}, "
            f"llama-cpp-python {hw['llama_cpp_python']}, Python {hw['python']}")


def markdown(results: dict) -> str:
    from .measure import SPEED_PROMPTS
    rows = _rows(results)
    s = results["settings"]
    ref = results["reference"]
    ppl_any = next((r["ppl"] for r in rows if r.get("ppl")), None)
    lines = [f"# Quantizações de `{results['model']}` — custo e qualidade", "",
             f"Hardware: {hardware_line(results['hardware'])}. Gerado em {results['created']} "
             f"(`python -m quantize evaluate`, {results['seconds'] / 60:.0f} min nesta execução).", ""]
    ref_line = f"Referência: `{Path(ref['path']).name}` ({ref['file_type']})."
    if ref.get("note"):
        ref_line += f" **{ref['note']}**"
    lines += [ref_line, ""]
    if ppl_any:
        lines += [f"Perplexidade no texto em português de `data/heldout/pt_heldout.txt` (texto próprio, fora do corpus): "
                  f"{ppl_any['tokens_evaluated']} tokens em {ppl_any['n_chunks']} blocos de {ppl_any['n_ctx']}, "
                  f"{ppl_any['scored_tokens']} pontuados (segunda metade de cada bloco, como o `llama-perplexity`). "
                  f"KLD = KL(referência ‖ quantizado) sobre o vocabulário inteiro, média por token.", ""]

    lines += ["## Qualidade e custo", "",
              "| tipo | tamanho (MB) | bits/peso | PPL | PPL / ref | KLD | mesmo top-1 | pp tok/s | tg tok/s | TTFT (s) | RSS pico (MB) |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        p, sp = r.get("ppl") or {}, r.get("speed") or {}
        ratio = "1 (ref.)" if r["role"] == "reference" else (f"{p['ppl_ratio']:.4f} ± {p['ppl_ratio_se']:.4f}" if "ppl_ratio" in p else "—")
        kld = "0 (ref.)" if r["role"] == "reference" else (f"{p['kld']:.5f} ± {p['kld_se']:.5f}" if "kld" in p else "—")
        top = "100 %" if r["role"] == "reference" else (f"{p['same_top_pct']:.2f} %" if "same_top_pct" in p else "—")
        lines.append(f"| {r['label']} | {_mb(r['file']['size'])} | {r['file']['bits_per_weight']:.2f} | {_f(p.get('ppl'))} | "
                     f"{ratio} | {kld} | {top} | {_f(sp.get('pp_tok_s'), '.1f')} | {_f(sp.get('tg_tok_s'), '.1f')} | "
                     f"{_f(sp.get('ttft_s'), '.2f')} | {_mb(r.get('rss_peak_bytes'))} |")
    lines += ["", "Razões em relação à referência, na mesma execução:", "",
              "| tipo | tamanho | RSS | velocidade de geração | velocidade de prompt |", "|---|---:|---:|---:|---:|"]
    for r in rows:
        q = r.get("ratios") or {}
        lines.append(f"| {r['label']} | {_f(q.get('size'), '.2f')}× | {_f(q.get('rss'), '.2f')}× | {_f(q.get('tg'), '.2f')}× | {_f(q.get('pp'), '.2f')}× |")

    pub = results["llama2_7b_published"]
    lines += ["", "## Ao lado dos números publicados do llama.cpp (Llama-2-7B)", "",
              f"Fonte: {results['published_source']}. Lá o texto é inglês (Wikitext-2) e a referência é o FP16 original; "
              "aqui, português e a referência descrita acima — compare a ordem de grandeza e a forma da curva, não as casas decimais.", "",
              "| tipo | PPL / ref (aqui) | PPL / ref (Llama-2-7B) | KLD (aqui) | KLD (Llama-2-7B) | mesmo top-1 (aqui) | mesmo top-1 (Llama-2-7B) |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        if r["role"] == "reference":
            continue
        p = r.get("ppl") or {}
        base = r["type"] if not r["label"].endswith("+imatrix") else None
        q = pub.get(base or "", {})
        lines.append(f"| {r['label']} | {_f(p.get('ppl_ratio'), '.4f')} | {_f(q.get('ppl_ratio'), '.4f')} | {_f(p.get('kld'), '.5f')} | "
                     f"{_f(q.get('kld'), '.5f')} | {_f(p.get('same_top_pct'), '.2f')} | {_f(q.get('same_top_pct'), '.2f')} |")

    if any(r.get("intents") for r in rows):
        n = next(r["intents"]["free"]["n"] for r in rows if r.get("intents"))
        lines += ["", "## Saída estruturada: intenção do usuário em JSON", "",
                  f"{n} mensagens de `data/intents/intents.jsonl` (amostra estratificada pelas 10 intenções), decodificação gulosa. "
                  "*Livre*: o formato vem só das instruções; *com schema*: `response_format={\"type\": \"json_object\", \"schema\": …}` "
                  "(gramática do llama.cpp).", "",
                  "| tipo | JSON válido (livre) | schema ok (livre) | intenção (livre) | F1 entidades (livre) | JSON válido (schema) | intenção (schema) | F1 entidades (schema) | tempo livre / schema (s) |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in rows:
            it = r.get("intents")
            if not it:
                continue
            fr, co = it["free"], it["constrained"]
            lines.append(f"| {r['label']} | {_pct(fr['valid_json'])} | {_pct(fr['schema_valid'])} | {_pct(fr['intent_accuracy'])} | "
                         f"{fr['entity_f1']:.2f} | {_pct(co['valid_json'])} | {_pct(co['intent_accuracy'])} | {co['entity_f1']:.2f} | "
                         f"{fr['seconds']:.0f} / {co['seconds']:.0f} |")

    est_rows = [r for r in rows if (r.get("estimate") or {}).get("size")]
    if est_rows:
        lines += ["", "## Estimativa × medido", "",
                  f"`python -m quantize estimate` simula a escolha de tipo por tensor do llama.cpp; RSS estimado = pesos + KV cache "
                  f"({s['n_ctx']} tokens, f16) + buffers. RSS medido = pico do processo que carregou só aquele modelo.", "",
                  "| tipo | tamanho estimado (MB) | real (MB) | erro | RSS estimado (MB) | RSS medido (MB) | erro |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        for r in est_rows:
            e = r["estimate"]
            rerr = "—" if e.get("rss_error_pct") is None else f"{e['rss_error_pct']:+.1f} %"
            lines.append(f"| {r['label']} | {_mb(e['size'])} | {_mb(r['file']['size'])} | {e['size_error_pct']:+.2f} % | "
                         f"{_mb(e['rss'])} | {_mb(r.get('rss_peak_bytes'))} | {rerr} |")

    sp_rows = [r for r in rows if (r.get("speed") or {}).get("tg_ratio_vs_plain")]
    if sp_rows:
        lines += ["", "## Runtime do projeto × llama-cpp-python puro", "",
                  f"Mesmo modelo carregado, mesmos {len(SPEED_PROMPTS)} prompts, "
                  "gulosa, alternando A B B A; medianas.", "",
                  "| tipo | tg tok/s projeto | tg tok/s puro | razão | TTFT projeto (s) | TTFT puro (s) | saídas idênticas |",
                  "|---|---:|---:|---:|---:|---:|---|"]
        for r in sp_rows:
            sp = r["speed"]
            lines.append(f"| {r['label']} | {sp['tg_tok_s']:.1f} | {sp['plain_tg_tok_s']:.1f} | {sp['tg_ratio_vs_plain']:.3f} | "
                         f"{sp['ttft_s']:.2f} | {sp['plain_ttft_s']:.2f} | {'sim' if sp['identical_outputs'] else 'não'} |")

    failed = [r for r in results["variants"] if "error" in r]
    if failed:
        lines += ["", "## Falhas", ""] + [f"- {r['label']}: {r['error']}" for r in failed]
    lines += ["", "Configuração: " + ", ".join(f"{k}={v}" for k, v in s.items() if k != "heldout") + ".", ""]
    return "\n".join(lines)


def plot(results: dict, out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = _rows(results)
    made = []
    cand = [r for r in rows if r["role"] != "reference" and "kld" in (r.get("ppl") or {})]
    if cand:
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.2))
        xs = [r["file"]["size"] / 1e6 for r in cand]
        a1.plot(xs, [r["ppl"]["kld"] for r in cand], "o-")
        a1.set_yscale("log")
        a1.set_xlabel("tamanho do arquivo (MB)")
        a1.set_ylabel("KLD médio vs referência (nats)")
        a2.errorbar(xs, [r["ppl"]["ppl_ratio"] for r in cand], yerr=[r["ppl"]["ppl_ratio_se"] for r in cand], fmt="o-", capsize=3)
        a2.axhline(1.0, color="gray", lw=0.8)
        a2.set_xlabel("tamanho do arquivo (MB)")
        a2.set_ylabel("PPL / PPL da referência")
        for ax, ys in ((a1, [r["ppl"]["kld"] for r in cand]), (a2, [r["ppl"]["ppl_ratio"] for r in cand])):
            for x, y, r in zip(xs, ys, cand):
                ax.annotate(r["label"].split(" (")[0], (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
            ax.grid(alpha=0.3)
        fig.suptitle(f"{results['model']}: qualidade × tamanho (referência: {Path(results['reference']['path']).name})", fontsize=10)
        fig.tight_layout()
        fig.savefig(out / "quality_vs_size.png", dpi=110)
        plt.close(fig)
        made.append("quality_vs_size.png")
    sp = [r for r in rows if r.get("speed")]
    if sp:
        fig, ax = plt.subplots(figsize=(6.5, 4.2))
        xs = [r["file"]["size"] / 1e6 for r in sp]
        ax.plot(xs, [r["speed"]["tg_tok_s"] for r in sp], "o-", label="geração (tg)")
        ax.plot(xs, [r["speed"]["pp_tok_s"] for r in sp], "s--", label=f"prompt (pp{sp[0]['speed']['pp_tokens']})")
        for x, r in zip(xs, sp):
            ax.annotate(r["label"].split(" (")[0], (x, r["speed"]["tg_tok_s"]), textcoords="offset points", xytext=(4, 4), fontsize=8)
        ax.set_xlabel("tamanho do arquivo (MB)")
        ax.set_ylabel("tokens/s")
        ax.set_title(f"{results['model']}: velocidade × tamanho ({results['hardware']['cores']} núcleos)", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / "speed_vs_size.png", dpi=110)
        plt.close(fig)
        made.append("speed_vs_size.png")
    it = [r for r in rows if r.get("intents")]
    if it:
        import numpy as np

        fig, ax = plt.subplots(figsize=(7.5, 4.2))
        x = np.arange(len(it))
        w = 0.2
        series = [("free", "intent_accuracy", "intenção (livre)"), ("constrained", "intent_accuracy", "intenção (schema)"),
                  ("free", "entity_f1", "F1 entidades (livre)"), ("constrained", "entity_f1", "F1 entidades (schema)")]
        for k, (mode, metric, name) in enumerate(series):
            ax.bar(x + (k - 1.5) * w, [r["intents"][mode][metric] for r in it], w, label=name)
        ax.set_xticks(x, [r["label"].split(" (")[0] for r in it], fontsize=8)
        ax.set_ylim(0, 1)
        ax.set_title(f"{results['model']}: intenção em JSON por quantização", fontsize=10)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3, axis="y")
        fig.tight_layout()
        fig.savefig(out / "intents.png", dpi=110)
        plt.close(fig)
        made.append("intents.png")
    return made


def _strip_answers(results: dict) -> dict:
    """results.json keeps the scores; the raw answers go to answers.jsonl (they are long)."""
    slim = json.loads(json.dumps(results))
    for r in slim["variants"]:
        for mode in (r.get("intents") or {}).values():
            mode.pop("answers", None)
    return slim


def write_report(results: dict, out: Path, plots: bool = True) -> dict:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = {}
    if plots:
        results["plots"] = plot(results, out)
    md = markdown(results)
    if results.get("plots"):
        md += "\n" + "\n".join(f"![{p}]({p})" for p in results["plots"]) + "\n"
    for name, text in (("report.md", md), ("results.json", json.dumps(_strip_answers(results), ensure_ascii=False, indent=2))):
        tmp = out / (name + ".partial")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, out / name)
        files[name] = str(out / name)
    with open(out / "answers.jsonl.partial", "w", encoding="utf-8") as fh:
        for r in results["variants"]:
            for mode, res in (r.get("intents") or {}).items():
                fh.write(json.dumps({"label": r["label"], "mode": mode, "answers": res.get("answers", [])}, ensure_ascii=False) + "\n")
    os.replace(out / "answers.jsonl.partial", out / "answers.jsonl")
    return files
