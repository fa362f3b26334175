"""Wall time of the whole quantization chain for one model: GGUF → HF (dequantize) → F16 GGUF → Q8_0 / Q4_K_M / Q2_K.

Every stage starts cold (fresh temporary folder, no cache reused), each output is verified by loading it in
llama.cpp and generating a few tokens, and the load average is recorded next to the times because other
jobs on a shared machine change them.

    python benchmarks/quantize_time.py [--model qwen2.5-0.5b-instruct] [--types Q8_0,Q4_K_M,Q2_K]

Output: benchmarks/results/quantize_time.{json,md}.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from models.errors import run_cli  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="qwen2.5-0.5b-instruct")
    parser.add_argument("--types", default="Q8_0,Q4_K_M,Q2_K")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "quantize_time"))
    args = parser.parse_args(argv)

    from models.fetch import fetch
    from models.gguf import read_gguf_info
    from models.hf import gguf_to_hf
    from models.settings import get_settings
    from quantize.convert import hf_to_gguf, load_check, quantize_file
    from quantize.evaluate import hardware
    from quantize.types import parse_types

    types = parse_types(args.types)
    src = fetch(args.model, progress=False)
    src_info = read_gguf_info(src)
    stages = []
    load_before = os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="quantize-bench-", dir=get_settings().home))
    total_start = time.perf_counter()
    try:
        t = time.perf_counter()
        hf_dir = gguf_to_hf(src, out_dir=work / "hf", progress=False)
        stages.append({"stage": f"desquantizar {src_info.file_type} → HF fp32 (transformers)", "seconds": time.perf_counter() - t,
                       "output_bytes": sum(p.stat().st_size for p in Path(hf_dir).glob("*.safetensors"))})
        t = time.perf_counter()
        f16 = hf_to_gguf(hf_dir, work / "ref-f16.gguf", "f16")
        stages.append({"stage": "converter HF → GGUF F16 (convert_hf_to_gguf)", "seconds": time.perf_counter() - t,
                       "output_bytes": f16.stat().st_size})
        shutil.rmtree(hf_dir, ignore_errors=True)
        for q in types:
            t = time.perf_counter()
            dst = quantize_file(f16, work / f"ref-{q.lower()}.gguf", q)
            seconds = time.perf_counter() - t
            t = time.perf_counter()
            check = load_check(dst)
            stages.append({"stage": f"quantizar F16 → {q} (llama_model_quantize)", "seconds": seconds,
                           "output_bytes": dst.stat().st_size, "verify_seconds": time.perf_counter() - t, "check": check})
    finally:
        total = time.perf_counter() - total_start
        shutil.rmtree(work, ignore_errors=True)
    load_after = os.getloadavg()
    hw = hardware()
    result = {"model": args.model, "source_file": src.name, "source_type": src_info.file_type, "types": types,
              "stages": stages, "total_seconds": total, "hardware": hw,
              "loadavg_before": load_before, "loadavg_after": load_after, "created": time.strftime("%Y-%m-%d %H:%M:%S")}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, ensure_ascii=False, indent=2))
    lines = [f"Quantization chain — `{args.model}` ({src.name}, {src_info.file_type}), every stage cold",
             f"Hardware: {hw['cpu']}, {hw['cores']} núcleos, {hw['threads']} threads, llama-cpp-python {hw['llama_cpp_python']}; "
             f"load average {load_before[0]:.1f} → {load_after[0]:.1f} (máquina compartilhada)", "",
             "| stage | time (s) | output (MB) | load + generate check (s) |", "|---|---:|---:|---:|"]
    for s in stages:
        verify = f"{s['verify_seconds']:.1f}" if "verify_seconds" in s else "—"
        lines.append(f"| {s['stage']} | {s['seconds']:.1f} | {s['output_bytes'] / 1e6:,.0f} | {verify} |")
    convert_s = sum(s["seconds"] for s in stages[:2])
    quant_s = sum(s["seconds"] for s in stages[2:])
    lines += ["", f"Total convert + quantize to {', '.join(types)}: **{convert_s + quant_s:.0f} s** "
                  f"(conversion {convert_s:.0f} s, quantization {quant_s:.0f} s); with the load checks {total:.0f} s."]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
