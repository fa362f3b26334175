"""`python -m quantize …`: convert to GGUF, quantize, estimate memory, evaluate quantizations, publish."""
from __future__ import annotations

import argparse
import json
import sys

from models.errors import run_cli

IMATRIX_HELP = ("matriz de importância (GGUF do llama-imatrix, .dat legado, ou a gerada por `python -m quantize imatrix`). "
                "O llama-cpp-python não calcula imatrix (o llama-imatrix é um programa C++ que ele não traz); "
                "`quantize imatrix` calcula a mesma estatística com transformers")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m quantize",
        description="Qual quantização do meu modelo devo usar, e quanto ela me custa? Conversão HF→GGUF, todos os tipos "
                    "do llama.cpp, estimativa de memória, avaliação (PPL, KLD, velocidade, RSS, JSON) e publicação.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMANDO")

    p = sub.add_parser("types", help="lista os tipos de quantização do llama.cpp (bits por peso, precisa de imatrix?)")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("convert", help="pasta HF, id do hub ou GGUF → GGUF (conversor do llama.cpp)",
                       description="Converte SRC para GGUF. SRC pode ser uma pasta de modelo Hugging Face, um id do hub "
                                   "(baixa; precisa de rede), um nome do registro ou um .gguf — um GGUF quantizado é antes "
                                   "desquantizado pelo transformers (é assim que os modelos embutidos ganham uma referência F16).")
    p.add_argument("src", help="pasta HF | owner/modelo (hub) | arquivo .gguf | nome do registro")
    p.add_argument("-o", "--out", required=True, help="arquivo .gguf de saída")
    p.add_argument("--outtype", default="f16", choices=["f16", "bf16", "f32", "q8_0"], help="precisão da saída (padrão f16)")
    p.add_argument("--quiet", action="store_true")

    p = sub.add_parser("quantize", help="GGUF F16/F32 → um ou vários tipos (Q8_0, Q4_K_M, Q2_K, …), verificados ao carregar",
                       description="Quantiza com o quantizador do llama.cpp (llama_model_quantize). Com vários tipos, -o é uma pasta. "
                                   "Cada saída é escrita como .partial e só ganha o nome final depois de completa e de carregar e "
                                   "gerar texto no llama.cpp.")
    p.add_argument("src", help="GGUF de entrada (em precisão total; veja --allow-requantize)")
    p.add_argument("--type", "-t", required=True, help="tipo(s), separados por vírgula: ex. Q4_K_M ou Q8_0,Q4_K_M,Q2_K")
    p.add_argument("-o", "--out", required=True, help="arquivo .gguf (um tipo) ou pasta (vários)")
    p.add_argument("--imatrix", default=None, metavar="ARQUIVO", help=IMATRIX_HELP)
    p.add_argument("--allow-requantize", action="store_true", help="aceita uma entrada já quantizada (soma os erros)")
    p.add_argument("--no-verify", action="store_true", help="não carrega a saída para conferir")
    p.add_argument("--force", action="store_true", help="refaz saídas que já existem")
    p.add_argument("--json", action="store_true")
    p.add_argument("--quiet", action="store_true")

    p = sub.add_parser("imatrix", help="calcula uma matriz de importância (transformers) para --imatrix",
                       description="Média do quadrado das ativações de entrada por coluna de cada camada linear, em texto de "
                                   "calibração (padrão: o corpus em português do projeto, não o texto de avaliação). "
                                   "O llama-cpp-python não tem como calcular isso; usamos o modelo HF em precisão total. "
                                   "Saída no formato GGUF do llama-imatrix.")
    p.add_argument("model", help="pasta HF, id do hub, GGUF ou nome do registro (GGUF é desquantizado antes)")
    p.add_argument("-o", "--out", required=True, help="arquivo de saída (.gguf)")
    p.add_argument("--text", default=None, help="texto de calibração (.txt ou pasta com .jsonl/.parquet)")
    p.add_argument("--tokens", type=int, default=8192, help="tokens de calibração (padrão 8192)")
    p.add_argument("--chunk", type=int, default=512)
    p.add_argument("--quiet", action="store_true")

    p = sub.add_parser("estimate", help="memória por quantização (pesos, KV cache, total) e se cabe nesta máquina",
                       description="Estimativa tensor a tensor seguindo as regras de mistura do llama.cpp (src/llama-quant.cpp) "
                                   "e os tamanhos de bloco do ggml. Com --model, compara com os arquivos reais presentes.")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--params", help="tamanho do modelo: 7B, 13B, 70B (formas do Llama 2) ou qualquer N (ex. 3B, 500M)")
    g.add_argument("--model", help="nome do registro, caminho .gguf, pasta HF ou id do hub")
    p.add_argument("--ctx", type=int, default=4096, help="contexto para o KV cache (padrão 4096)")
    p.add_argument("--types", default=None, help="tipos a mostrar (padrão F32,F16,Q8_0,Q6_K,Q4_K_M,Q2_K)")
    p.add_argument("--measure-rss", action="store_true", help="carrega cada arquivo real num processo e mede o RSS de pico")
    p.add_argument("--json", action="store_true")

    for name, helptext in (("evaluate", "converte → quantiza → mede cada tipo: tamanho, PPL, KLD, velocidade, RSS, JSON"),
                           ("report", "o relatório completo de um modelo (todos os tipos padrão + o arquivo original)")):
        p = sub.add_parser(name, help=helptext, description=helptext + ". Retomável: o que já foi medido (sha256 do arquivo + "
                           "configuração) é pulado; --force mede de novo. Saída: results.json, report.md e gráficos PNG.")
        p.add_argument("--model", required=True, help="nome do registro ou caminho .gguf")
        p.add_argument("--types", default=None,
                       help="tipos separados por vírgula; 'native' = o arquivo original do modelo "
                            + ("(padrão: F16,Q8_0,Q4_K_M,Q2_K)" if name == "evaluate" else "(padrão: F16,Q8_0,Q6_K,Q5_K_M,Q4_K_M,Q4_0,Q3_K_M,Q2_K,native)"))
        p.add_argument("--out", default=None, help="pasta de saída (padrão quantize/results/<modelo>)")
        p.add_argument("--reference", default=None, help="GGUF de referência em precisão total (padrão: o modelo, ou sua desquantização F16)")
        p.add_argument("--allow-quantized-reference", action="store_true", help="aceita uma --reference já quantizada")
        p.add_argument("--imatrix", default=None, metavar="ARQUIVO", help=IMATRIX_HELP)
        p.add_argument("--ppl-tokens", type=int, default=None, help="limita os tokens do texto de perplexidade (padrão: o texto todo)")
        p.add_argument("--ctx", type=int, default=512, help="tamanho do bloco de perplexidade (padrão 512, como o llama.cpp)")
        p.add_argument("--intents", type=int, default=30, help="mensagens da tarefa de JSON por tipo (0 = pula; padrão 30)")
        p.add_argument("--n-ctx", type=int, default=1024, help="contexto ao medir velocidade, JSON e RSS (padrão 1024)")
        p.add_argument("--gen-tokens", type=int, default=64, help="tokens gerados por prompt na medida de velocidade")
        p.add_argument("--repeats", type=int, default=2, help="repetições da medida de velocidade")
        p.add_argument("--force", action="store_true", help="mede de novo o que já está no registro")
        p.add_argument("--no-plots", action="store_true")
        p.add_argument("--quiet", action="store_true")

    p = sub.add_parser("publish", help="monta a pasta de um modelo no Hugging Face (GGUFs + model card); envia só com --push",
                       description="Lê DIR/results.json (de evaluate/report) e monta DIR/hf/<repo>/ com os GGUFs e um README.md "
                                   "com metadados YAML, a tabela medida e como rodar com llama-cpp-python. Simulação por padrão.")
    p.add_argument("dir", help="pasta de saída de evaluate/report")
    p.add_argument("--repo", required=True, help="usuario/nome-do-modelo no Hugging Face")
    p.add_argument("--types", default=None, help="só estes tipos (padrão: todos os medidos)")
    p.add_argument("--out", default=None, help="pasta a montar (padrão DIR/hf/<usuario>__<nome>)")
    p.add_argument("--base-model", default=None, help="id do modelo original no hub (metadado base_model)")
    p.add_argument("--license", default=None, help="identificador da licença (padrão: a do registro)")
    p.add_argument("--push", action="store_true", help="envia de verdade (precisa de token e rede)")
    p.add_argument("--token", default=None, help="token do Hugging Face (padrão: HF_TOKEN ou o login salvo)")
    p.add_argument("--json", action="store_true")
    return parser


def _cmd_types(args) -> int:
    from .types import QUANT_TYPES

    rows = [{"type": q.name, "ftype": q.ftype, "block": q.base, "bits_per_weight": round(q.bpw, 4),
             "needs_imatrix": q.needs_imatrix, "note": q.note} for q in QUANT_TYPES.values()]
    if args.json:
        print(json.dumps(rows, ensure_ascii=False, indent=2))
        return 0
    print(f"{'tipo':9} {'bloco':8} {'bits/peso':>9}  {'imatrix':8} nota")
    for r in rows:
        print(f"{r['type']:9} {r['block']:8} {r['bits_per_weight']:9.4f}  {'exige' if r['needs_imatrix'] else 'opcional':8} {r['note']}")
    print("\nbits/peso do tipo de bloco; um arquivo Q4_K_M/Q2_K é uma mistura com alguns tensores em tipos maiores "
          "(veja `python -m quantize estimate`).")
    return 0


def _settings(args):
    from .evaluate import EvalSettings

    return EvalSettings(ppl_ctx=args.ctx, ppl_tokens=args.ppl_tokens, n_ctx=args.n_ctx, intents=args.intents,
                        gen_tokens=args.gen_tokens, repeats=args.repeats)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "types":
        return _cmd_types(args)
    if args.command == "convert":
        from .convert import convert

        res = convert(args.src, args.out, args.outtype, progress=not args.quiet)
        print(f"{res['file_type']} · {res['n_params'] / 1e6:.0f} M parâmetros · {res['size'] / 1e6:.0f} MB", file=sys.stderr)
        print(res["output"])
        return 0
    if args.command == "quantize":
        from .convert import quantize_many
        from .types import parse_types

        rows = quantize_many(args.src, parse_types(args.type), args.out, imatrix=args.imatrix,
                             allow_requantize=args.allow_requantize, verify=not args.no_verify,
                             progress=not args.quiet, force=args.force)
        if args.json:
            print(json.dumps(rows, ensure_ascii=False, indent=2))
        else:
            for r in rows:
                print(f"{r['type']:8} {r['size'] / 1e6:8.1f} MB  {r['bits_per_weight']:6.2f} bits/peso  {r['seconds']:6.1f} s  {r['path']}")
        return 0
    if args.command == "imatrix":
        from .imatrix import compute_imatrix

        res = compute_imatrix(args.model, args.out, text=args.text, n_tokens=args.tokens, chunk=args.chunk, progress=not args.quiet)
        print(f"{res['tensors']} tensores, {res['tokens']} tokens de {res['dataset']}, {res['seconds']:.0f} s", file=sys.stderr)
        print(res["output"])
        return 0
    if args.command == "estimate":
        from .estimate import estimate, format_table

        types = [t for t in args.types.split(",") if t.strip()] if args.types else None
        res = estimate(model=args.model, params=args.params, n_ctx=args.ctx, types=types, measure_rss=args.measure_rss)
        print(json.dumps(res, ensure_ascii=False, indent=2) if args.json else format_table(res))
        return 0
    if args.command in ("evaluate", "report"):
        from .evaluate import evaluate
        from .types import DEFAULT_EVAL_TYPES, STANDARD_TYPES

        default = DEFAULT_EVAL_TYPES if args.command == "evaluate" else STANDARD_TYPES + ["native"]
        res = evaluate(args.model, args.types or default, args.out, reference=args.reference,
                       allow_quantized_reference=args.allow_quantized_reference, imatrix=args.imatrix,
                       settings=_settings(args), force=args.force, progress=not args.quiet, plots=not args.no_plots)
        out = args.out or f"quantize/results/{res['model']}"
        failed = [r for r in res["variants"] if "error" in r]
        print(f"{len(res['variants']) - len(failed)} quantizações medidas; relatório em {out}/report.md", file=sys.stderr)
        print(f"{out}/results.json")
        return 1 if failed else 0
    if args.command == "publish":
        from .publish import publish

        types = [t.strip() for t in args.types.split(",")] if args.types else None
        res = publish(args.dir, args.repo, push_to_hub=args.push, token=args.token, out=args.out, types=types,
                      base_model=args.base_model, license_id=args.license)
        if args.json:
            print(json.dumps(res, ensure_ascii=False, indent=2))
            return 0
        print(f"pasta: {res['folder']} ({res['bytes'] / 1e6:.0f} MB)")
        for name in res["files"]:
            print(f"  {name}")
        print(f"enviado: {res['url']}" if res["pushed"] else f"simulação: nada foi enviado (use --push para enviar a {args.repo})")
        return 0
    return 1


if __name__ == "__main__":
    sys.exit(run_cli(main))
