"""One quantization measured in its own process (so peak RSS belongs to that model alone).

Phase A loads the GGUF as the project does (models.runtime) and measures prompt processing (pp),
generation (tg), time to first token — through the project's runtime and through plain llama-cpp-python
on the same loaded model, interleaved, so their ratio is honest — then the JSON-intent task; peak RSS is
read here. Phase B reloads with all logits kept and measures perplexity / KLD (perplexity.py).

    python -m quantize.measure SPEC.json OUT.json     (SPEC written by quantize.evaluate)
    python -m quantize.measure --rss MODEL.gguf --ctx 4096
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import statistics
import sys
import time
from pathlib import Path

SPEED_PROMPTS = [
    "Explique em poucas frases como funciona a fotossíntese.",
    "Dê três dicas para economizar energia em casa.",
    "Escreva um parágrafo sobre a importância do sono.",
    "Quais são as regras básicas do xadrez?",
]


def _rss_now() -> int:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


def _rss_peak() -> int:
    """Peak RSS of this process image. VmHWM, not ru_maxrss: Linux carries ru_maxrss across fork+exec, so
    a worker started by a big parent (pytest, the evaluate loop) would report the parent's size."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _plain_chat(llm, messages, max_tokens, seed):
    """Plain llama-cpp-python: create_chat_completion streamed, timed the same way as the runtime does."""
    llm.reset()
    start = time.perf_counter()
    ttft, text = None, ""
    for chunk in llm.create_chat_completion(messages=messages, stream=True, max_tokens=max_tokens, temperature=0.0, seed=seed):
        piece = chunk["choices"][0]["delta"].get("content")
        if piece:
            if ttft is None:
                ttft = time.perf_counter() - start
            text += piece
    total = time.perf_counter() - start
    n = len(llm.tokenize(text.encode("utf-8"), add_bos=False, special=False))
    return {"ttft_s": ttft or total, "tok_s": (n - 1) / (total - ttft) if ttft and n > 1 and total > ttft else 0.0,
            "tokens": n, "text": text}


def _project_chat(lm, messages, max_tokens, seed):
    from models.runtime import stream_chat

    lm.llm.reset()
    stream = stream_chat(lm, messages, max_tokens=max_tokens, temperature=0.0, seed=seed)
    for _ in stream:
        pass
    st = stream.stats
    return {"ttft_s": st.ttft_s, "tok_s": st.tokens_per_s, "tokens": st.completion_tokens, "text": stream.text}


def fill_context(llm, text: str) -> dict:
    """Evaluate a full context of text once: every KV-cache and compute-buffer page is then really in
    memory (RSS counts touched pages only), and the weights are paged in before anything is timed."""
    toks = llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)
    n = llm.n_ctx() - 1
    while len(toks) < n:
        toks = toks + toks
    llm.reset()
    t = time.perf_counter()
    llm.eval(toks[:n])
    seconds = time.perf_counter() - t
    llm.reset()
    return {"tokens": n, "seconds": round(seconds, 2), "tok_s": round(n / seconds, 2)}


def measure_speed(lm, pp_text: str, pp_tokens: int, gen_tokens: int, repeats: int, seed: int) -> dict:
    """pp tok/s (batch eval of `pp_tokens`), then tg tok/s and TTFT over SPEED_PROMPTS: project vs plain, A B B A."""
    from models.prompts import build_messages

    llm = lm.llm
    toks = llm.tokenize(pp_text.encode("utf-8"), add_bos=False, special=False)[:pp_tokens]
    llm.reset()
    llm.eval(toks[:16])  # warm-up: page the weights in, allocate buffers
    pp = []
    for _ in range(max(1, repeats)):
        llm.reset()
        t = time.perf_counter()
        llm.eval(toks)
        pp.append(len(toks) / (time.perf_counter() - t))
    project, plain, same = [], [], True
    for r in range(max(1, repeats)):
        for i, prompt in enumerate(SPEED_PROMPTS):
            messages = build_messages(prompt)
            order = ("project", "plain") if (r + i) % 2 == 0 else ("plain", "project")
            outs = {}
            for who in order:
                outs[who] = (_project_chat(lm, messages, gen_tokens, seed) if who == "project"
                             else _plain_chat(llm, messages, gen_tokens, seed))
            project.append(outs["project"])
            plain.append(outs["plain"])
            same &= outs["project"]["text"] == outs["plain"]["text"]
    med = statistics.median
    res = {"pp_tokens": len(toks), "pp_tok_s": round(med(pp), 2),
           "tg_tok_s": round(med(x["tok_s"] for x in project), 2), "ttft_s": round(med(x["ttft_s"] for x in project), 3),
           "plain_tg_tok_s": round(med(x["tok_s"] for x in plain), 2), "plain_ttft_s": round(med(x["ttft_s"] for x in plain), 3),
           "runs": len(project), "gen_tokens": gen_tokens, "identical_outputs": same}
    res["tg_ratio_vs_plain"] = round(res["tg_tok_s"] / res["plain_tg_tok_s"], 4) if res["plain_tg_tok_s"] else None
    res["ttft_ratio_vs_plain"] = round(res["ttft_s"] / res["plain_ttft_s"], 4) if res["plain_ttft_s"] else None
    return res


def run(spec: dict) -> dict:
    """Measure one GGUF as described by `spec` (see evaluate.py) and return the result dict."""
    from models.runtime import load_model, unload_all
    from models.settings import get_settings

    from .intents import load_intents, load_schema, run_intents
    from .perplexity import KLDBase, evaluate_ppl

    path = spec["path"]
    s = get_settings()
    out = {"label": spec["label"], "rss_base_bytes": _rss_now()}
    text = Path(spec["heldout"]).read_text(encoding="utf-8")

    # Phase A: the model as the app loads it.
    t = time.perf_counter()
    lm = load_model(path, n_ctx=spec["n_ctx"], instance="quantize-measure")
    out["load_s"] = round(time.perf_counter() - t, 2)
    out["fill"] = fill_context(lm.llm, text)
    if spec.get("speed", True):
        _say(f"    velocidade: pp{spec['pp_tokens']} e geração de {spec['gen_tokens']} tokens × {len(SPEED_PROMPTS)} prompts")
        out["speed"] = measure_speed(lm, text, spec["pp_tokens"], spec["gen_tokens"], spec["repeats"], s.seed)
    if spec.get("intents", 0):
        examples = load_intents(spec["intents"])
        schema = load_schema()
        out["intents"] = {}
        for constrained in (False, True):
            mode = "constrained" if constrained else "free"
            _say(f"    intenções ({'com schema' if constrained else 'livre'}): {len(examples)} mensagens")
            res = run_intents(lm.llm, examples, schema, constrained, max_tokens=spec.get("intent_max_tokens", 80), seed=s.seed)
            out["intents"][mode] = res
    out["rss_peak_bytes"] = _rss_peak()
    lm.close()
    unload_all()
    gc.collect()

    # Phase B: every position's logits, chunk by chunk.
    if spec.get("ppl", True):
        import llama_cpp

        llm = llama_cpp.Llama(model_path=path, n_ctx=spec["ppl_ctx"], n_batch=spec["ppl_ctx"], n_ubatch=spec["ppl_ctx"],
                              n_threads=s.n_threads, n_threads_batch=s.n_threads, logits_all=True, verbose=False,
                              n_gpu_layers=0)
        try:
            base = KLDBase(Path(spec["kld_base"])) if spec.get("kld_base") else None
            out["ppl"] = evaluate_ppl(llm, text, spec["ppl_ctx"], spec.get("ppl_tokens"), base=base,
                                      write_base=spec.get("role") == "reference", progress=True)
        finally:
            llm.close()
        out["rss_peak_ppl_bytes"] = _rss_peak()
    return out


def measure_rss(path: str | os.PathLike, n_ctx: int = 4096, timeout: int = 600) -> int:
    """Peak RSS of a fresh process that loads `path` with `n_ctx` and evaluates a short prompt."""
    import subprocess

    cmd = [sys.executable, "-m", "quantize.measure", "--rss", str(path), "--ctx", str(n_ctx)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if res.returncode != 0:
        from models.errors import ProjectError

        raise ProjectError(f"não consegui medir a memória de {Path(path).name}: {(res.stderr or '?').strip().splitlines()[-1:]}")
    return int(json.loads(res.stdout.strip().splitlines()[-1])["rss_peak_bytes"])


def _rss_main(path: str, n_ctx: int) -> dict:
    from models.prompts import build_messages
    from models.runtime import load_model, stream_chat

    base = _rss_peak()  # the process before any model: Python, numpy, llama.cpp libraries

    lm = load_model(path, n_ctx=n_ctx, instance="rss")
    heldout = Path(__file__).resolve().parent.parent / "data" / "heldout" / "pt_heldout.txt"
    fill_context(lm.llm, heldout.read_text(encoding="utf-8"))
    for _ in stream_chat(lm, build_messages("Diga olá em uma frase."), max_tokens=16, temperature=0.0):
        pass
    peak = _rss_peak()
    lm.close()
    return {"rss_peak_bytes": peak, "n_ctx": lm.n_ctx, "rss_base_bytes": base}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m quantize.measure", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("spec", nargs="?", help="JSON com a especificação da medição")
    parser.add_argument("out", nargs="?", help="onde escrever o resultado (JSON)")
    parser.add_argument("--rss", metavar="GGUF", help="só mede a memória de pico ao carregar este GGUF")
    parser.add_argument("--ctx", type=int, default=4096)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from models.errors import ProjectError

    try:
        if args.rss:
            print(json.dumps(_rss_main(args.rss, args.ctx)))
            return 0
        spec = json.loads(Path(args.spec).read_text())
        result = run(spec)
        tmp = Path(args.out + ".partial")
        tmp.write_text(json.dumps(result, ensure_ascii=False))
        os.replace(tmp, args.out)
        return 0
    except ProjectError as exc:
        print(f"erro: {exc.one_line()}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
