"""`python -m models …`: list, fetch and inspect models, chat in the terminal, serve an OpenAI-compatible API."""
from __future__ import annotations

import argparse
import json
import sys

from .errors import run_cli


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m models", description="Registro de modelos GGUF e runtime llama.cpp.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMANDO")

    p = sub.add_parser("list", help="lista os modelos do registro")
    p.add_argument("--json", action="store_true", help="saída em JSON")

    p = sub.add_parser("fetch", help="prepara (monta/baixa e verifica) um modelo; a última linha é o caminho do GGUF")
    p.add_argument("model", nargs="?", help="nome do registro, caminho .gguf ou repo:arquivo.gguf (padrão: modelo padrão)")
    p.add_argument("--quiet", action="store_true", help="sem barras de progresso")

    p = sub.add_parser("path", help="mostra onde o GGUF do modelo fica (sem prepará-lo)")
    p.add_argument("model", nargs="?")

    p = sub.add_parser("info", help="metadados de um GGUF (arquitetura, quantização, parâmetros, contexto)")
    p.add_argument("model", nargs="?")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("chat", help="faz uma pergunta e mostra a resposta em streaming no terminal")
    p.add_argument("question", help="a pergunta, em português")
    p.add_argument("--model", help="nome, caminho .gguf ou repo:arquivo.gguf (padrão: modelo padrão)")
    p.add_argument("--max-tokens", type=int, default=None)
    p.add_argument("--temperature", type=float, default=None)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--system", default=None, help="prompt de sistema (padrão: assistente em pt-BR)")
    p.add_argument("--json", action="store_true", help="imprime {answer, model, stats} em JSON no fim, sem streaming")

    p = sub.add_parser("serve", help="API compatível com OpenAI (llama_cpp.server) com vários modelos")
    p.add_argument("models", nargs="*", help="modelos a servir (padrão: modelo padrão e o fine-tune, se existir)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--print-config", action="store_true", help="só imprime a configuração multi-modelo")
    return parser


def _cmd_list(args) -> int:
    from .fetch import is_verified
    from .registry import all_models

    rows = []
    for spec in all_models().values():
        ready = spec.source != "hub" and (is_verified(spec.local_path, spec) if spec.source == "pip" else spec.local_path.exists())
        rows.append({**spec.to_dict(), "ready": ready})
    if args.json:
        print(json.dumps(rows, ensure_ascii=False, indent=2))
        return 0
    print(f"{'nome':26} {'origem':6} {'arq.':7} {'quant':7} {'pronto':6}  descrição")
    for r in rows:
        print(f"{r['name']:26} {r['source']:6} {r['arch']:7} {r['quant']:7} {'sim' if r['ready'] else 'não':6}  {r['description']}")
    return 0


def _cmd_chat(args) -> int:
    from .runtime import chat

    stream = chat(args.question, model=args.model, system_prompt=args.system, max_tokens=args.max_tokens,
                  temperature=args.temperature, seed=args.seed)
    if args.json:
        for _ in stream:
            pass
        print(json.dumps({"answer": stream.text, "model": stream.model.label, "stats": stream.stats.to_dict()}, ensure_ascii=False))
        return 0
    print(f"[{stream.model.label}]", file=sys.stderr)
    for piece in stream:
        print(piece, end="", flush=True)
    print()
    print(f"[{stream.stats.summary()}]", file=sys.stderr)
    return 0


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "list":
        return _cmd_list(args)
    if args.command == "fetch":
        from .fetch import fetch

        print(fetch(args.model, progress=not args.quiet))
        return 0
    if args.command == "path":
        from .fetch import model_path

        print(model_path(args.model))
        return 0
    if args.command == "info":
        from .fetch import fetch
        from .gguf import read_gguf_info

        info = read_gguf_info(fetch(args.model, progress=True))
        data = {"path": str(info.path), "name": info.name, "architecture": info.architecture, "file_type": info.file_type,
                "n_params": info.n_params, "file_size": info.file_size, "bits_per_weight": round(info.bits_per_weight, 3),
                "context_length": info.context_length, "has_chat_template": bool(info.chat_template),
                "tensor_types": info.tensor_types}
        if args.json:
            print(json.dumps(data, ensure_ascii=False, indent=2))
        else:
            for k, v in data.items():
                print(f"{k:18} {v}")
        return 0
    if args.command == "chat":
        return _cmd_chat(args)
    if args.command == "serve":
        from .serve import serve

        return serve(args.models, host=args.host, port=args.port, print_config=args.print_config)
    return 1


if __name__ == "__main__":
    sys.exit(run_cli(main))
