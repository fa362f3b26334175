"""Child process of `quantize_file`: one llama_model_quantize call.

Running it in its own process lets the parent draw progress from llama.cpp's log lines and kill it on
Ctrl-C before deleting the partial output (a C call cannot be interrupted from Python).
"""
from __future__ import annotations

import argparse
import ctypes
import sys


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m quantize._quant_child")
    parser.add_argument("src")
    parser.add_argument("dst")
    parser.add_argument("ftype", type=int)
    parser.add_argument("--nthread", type=int, default=0)
    parser.add_argument("--imatrix", default=None)
    parser.add_argument("--allow-requantize", action="store_true")
    args = parser.parse_args(argv)

    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = args.ftype
    params.nthread = args.nthread
    params.allow_requantize = args.allow_requantize
    keep_alive = None
    if args.imatrix:
        from quantize.imatrix import load_imatrix, to_c_array

        entries, meta = load_imatrix(args.imatrix)
        array, keep_alive = to_c_array(entries)
        params.imatrix = array
        print(f"imatrix: {len(entries)} tensores de {args.imatrix} ({meta.get('chunks', '?')} blocos)", file=sys.stderr, flush=True)
    rc = llama_cpp.llama_model_quantize(args.src.encode(), args.dst.encode(), ctypes.byref(params))
    del keep_alive
    return 0 if rc == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
