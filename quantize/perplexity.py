"""Perplexity and KL divergence the way llama.cpp's `llama-perplexity` computes them.

The text is tokenized once and cut into chunks of n_ctx tokens; each chunk is evaluated from an empty
KV cache and only its second half is scored (every scored token has at least n_ctx/2 tokens of context).
The reference run stores, for every scored position, its full-vocabulary log-probabilities (float16,
like llama.cpp's `--kl-divergence-base` file, on disk, not in memory); a candidate run reads them back
chunk by chunk and computes KL(reference ‖ candidate), the same-top-token rate and the PPL ratio.
"""
from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

from models.errors import ProjectError

ROWS_PER_BLOCK = 32  # positions processed at once: bounds temporary memory to a few × 32 × n_vocab floats


def log_softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float32, copy=False)
    m = x.max(axis=-1, keepdims=True)
    z = x - m
    lse = np.log(np.exp(z, dtype=np.float64).sum(axis=-1, keepdims=True)).astype(np.float32)
    return z - lse


def tokenize_text(llm, text: str, n_ctx: int, max_tokens: int | None) -> tuple[list[int], int, int]:
    """(tokens, n_ctx actually used, number of chunks). BOS is added only when the model wants one."""
    tokens = llm.tokenize(text.encode("utf-8"), add_bos=True, special=False)
    if max_tokens:
        tokens = tokens[:max_tokens]
    n_ctx = min(n_ctx, len(tokens))
    if n_ctx < 16:
        raise ProjectError(f"texto curto demais para medir perplexidade: {len(tokens)} tokens")
    return tokens, n_ctx, len(tokens) // n_ctx


class KLDBase:
    """The reference's scored log-probabilities: `<stem>.npy` (float16 memmap) + `<stem>.json` (tokens, NLL)."""

    def __init__(self, stem: Path):
        self.stem = Path(stem)
        self.npy = self.stem.with_suffix(".npy")
        self.meta_path = self.stem.with_suffix(".json")

    def exists(self) -> bool:
        return self.npy.exists() and self.meta_path.exists()

    def load_meta(self) -> dict:
        return json.loads(self.meta_path.read_text())


def evaluate_ppl(llm, text: str, n_ctx: int = 512, max_tokens: int | None = None, base: KLDBase | None = None,
                 write_base: bool = False, progress: bool = True) -> dict:
    """PPL over `text`; with `base`, also KLD / same-top / PPL ratio against it (or write it, for the reference)."""
    tokens, n_ctx, n_chunks = tokenize_text(llm, text, n_ctx, max_tokens)
    if n_chunks < 1:
        raise ProjectError("texto curto demais para um bloco de perplexidade")
    if llm.n_ctx() < n_ctx:
        raise ProjectError(f"o modelo foi carregado com contexto {llm.n_ctx()}, menor que o bloco ({n_ctx})")
    first = n_ctx // 2
    per_chunk = n_ctx - 1 - first
    n_pos = n_chunks * per_chunk
    n_vocab = llm.n_vocab()
    bos = llm.token_bos()
    add_bos = bool(tokens) and tokens[0] == bos and len(llm.tokenize(b"", add_bos=True)) > 0
    ref_meta = store = None
    if base is not None and not write_base:
        if not base.exists():
            raise ProjectError(f"arquivo de logits da referência não encontrado: {base.npy}", hint="avalie a referência antes")
        ref_meta = base.load_meta()
        if ref_meta["tokens"] != tokens[: n_chunks * n_ctx] or ref_meta["n_ctx"] != n_ctx:
            raise ProjectError("os tokens do texto diferem dos da referência (tokenizador ou configuração diferentes)",
                               hint="compare quantizações do mesmo modelo, com o mesmo --ctx e --ppl-tokens")
        store = np.load(base.npy, mmap_mode="r")
    partial = None
    if write_base:
        base.stem.parent.mkdir(parents=True, exist_ok=True)
        partial = base.npy.with_name(base.npy.name + ".partial")
        store = np.lib.format.open_memmap(partial, mode="w+", dtype=np.float16, shape=(n_pos, n_vocab))
    nll = np.zeros(n_pos, dtype=np.float64)
    kld = np.zeros(n_pos, dtype=np.float64) if ref_meta else None
    same_top = np.zeros(n_pos, dtype=bool) if ref_meta else None
    p_cand = np.zeros(n_pos, dtype=np.float64)
    start = time.perf_counter()
    try:
        for c in range(n_chunks):
            chunk = list(tokens[c * n_ctx:(c + 1) * n_ctx])
            if add_bos:
                chunk[0] = bos
            llm.reset()
            llm.eval(chunk)
            logits = np.asarray(llm.scores[first:n_ctx - 1], dtype=np.float32)
            targets = np.asarray(chunk[first + 1:n_ctx])
            for b in range(0, per_chunk, ROWS_PER_BLOCK):
                rows = slice(b, min(per_chunk, b + ROWS_PER_BLOCK))
                pos = slice(c * per_chunk + rows.start, c * per_chunk + rows.stop)
                lp = log_softmax(logits[rows])
                idx = np.arange(lp.shape[0])
                nll[pos] = -lp[idx, targets[rows]]
                p_cand[pos] = np.exp(-nll[pos])
                if write_base:
                    store[pos] = lp.astype(np.float16)
                elif ref_meta:
                    ref = log_softmax(np.asarray(store[pos], dtype=np.float32))  # renormalize the float16 copy
                    kld[pos] = (np.exp(ref, dtype=np.float64) * (ref - lp)).sum(axis=1)
                    same_top[pos] = ref.argmax(axis=1) == lp.argmax(axis=1)
            if progress:
                ppl_so_far = math.exp(nll[: (c + 1) * per_chunk].mean())
                print(f"    perplexidade: bloco {c + 1}/{n_chunks}, PPL parcial {ppl_so_far:.3f}", file=sys.stderr, flush=True)
        if write_base:
            store.flush()
            del store
            os.replace(partial, base.npy)
            base.meta_path.write_text(json.dumps({"tokens": tokens[: n_chunks * n_ctx], "n_ctx": n_ctx, "n_chunks": n_chunks,
                                                  "nll": nll.tolist(), "n_vocab": n_vocab}))
    except BaseException:
        if partial is not None:
            partial.unlink(missing_ok=True)
        raise
    seconds = time.perf_counter() - start
    mean_nll = float(nll.mean())
    result = {"n_ctx": n_ctx, "n_chunks": n_chunks, "scored_tokens": int(n_pos), "tokens_evaluated": n_chunks * n_ctx,
              "ppl": math.exp(mean_nll), "ppl_se": math.exp(mean_nll) * float(nll.std(ddof=1) / math.sqrt(n_pos)),
              "seconds": round(seconds, 1), "eval_tokens_per_s": round(n_chunks * n_ctx / seconds, 2)}
    if ref_meta:
        ref_nll = np.asarray(ref_meta["nll"], dtype=np.float64)
        diff = nll - ref_nll
        ln_ratio, ln_se = float(diff.mean()), float(diff.std(ddof=1) / math.sqrt(n_pos))
        p_ref = np.exp(-ref_nll)
        dp = p_cand - p_ref
        top = float(same_top.mean())
        result.update({
            "ppl_ref": math.exp(float(ref_nll.mean())),
            "ln_ppl_ratio": ln_ratio, "ln_ppl_ratio_se": ln_se,
            "ppl_ratio": math.exp(ln_ratio), "ppl_ratio_se": math.exp(ln_ratio) * ln_se,
            "kld": float(kld.mean()), "kld_se": float(kld.std(ddof=1) / math.sqrt(n_pos)),
            "kld_median": float(np.median(kld)), "kld_p99": float(np.quantile(kld, 0.99)), "kld_max": float(kld.max()),
            "same_top_pct": 100 * top, "same_top_se": 100 * math.sqrt(top * (1 - top) / n_pos),
            "mean_dp_pct": 100 * float(dp.mean()), "rms_dp_pct": 100 * float(math.sqrt((dp ** 2).mean())),
        })
    return result
