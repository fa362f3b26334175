"""Gradio web chat: one Portuguese question, answered side by side by the base model, its fine-tune and RAG.

A thin layer: generation lives in models.runtime, retrieval in rag, the fine-tune in finetune.
Run `python app.py` (or `make run`); on a Hugging Face Space set PTLLM_SPACE=1 (or SPACE_ID is set).
"""
from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

from models.errors import ProjectError  # noqa: E402
from models.prompts import build_messages  # noqa: E402
from models.registry import all_models  # noqa: E402
from models.settings import get_settings  # noqa: E402

MAX_HISTORY_TURNS = 4
EXAMPLES = [
    "Em que ano foi fundada a cidade de Curitiba?",
    "Quem escreveu o romance Vidas Secas?",
    "Onde nasce o rio São Francisco?",
    "Qual é a capital de Cabo Verde?",
]


@dataclass
class Variant:
    key: str
    title: str
    model: str | None
    uses_rag: bool = False

    def missing(self) -> str | None:
        """Why this column cannot answer yet, and what to run to fix it (None when ready)."""
        if self.model is None:
            return "Modelo fine-tuned ainda não existe. Rode `python -m finetune run` (ou `make run`, que o prepara)."
        if self.uses_rag:
            try:
                from rag import pipeline  # noqa: F401
            except ImportError:
                return "O pipeline RAG ainda não está disponível nesta versão."
            store = get_settings().store_dir
            if not store.exists():
                return f"Índice RAG não encontrado em {store}. Rode `python -m rag ingest data/wiki_pt --store {store}`."
        return None


def variants() -> list[Variant]:
    s = get_settings()
    ft = s.finetuned_model if s.finetuned_model in all_models() else None
    return [
        Variant("base", "Base", s.default_model),
        Variant("ft", "Fine-tuned", ft),
        Variant("rag", "RAG", s.default_model, uses_rag=True),
    ]


def _text(content) -> str:
    """Gradio 6 may hand message content back as a list of typed parts; keep the text."""
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        return str(content.get("text", ""))
    if isinstance(content, (list, tuple)):
        return "".join(_text(part) for part in content)
    return ""


def _history_for_model(history: list[dict]) -> list[dict]:
    """Recent turns as plain text, without the warnings the UI shows."""
    turns = [{"role": m["role"], "content": _text(m.get("content"))} for m in history
             if m.get("role") in ("user", "assistant")]
    turns = [t for t in turns if t["content"] and not t["content"].startswith("⚠️")]
    return turns[-2 * MAX_HISTORY_TURNS:]


def answer(variant: Variant, question: str, history: list[dict], temperature: float, max_tokens: int, k: int):
    """Stream one column: yields (chat history, stats markdown, sources markdown)."""
    from models.runtime import load_model, stream_chat, validate_question

    history = [{"role": m["role"], "content": _text(m.get("content"))} for m in (history or [])]
    try:
        question = validate_question(question)
    except ProjectError as exc:
        yield history, f"⚠️ {exc.one_line()}", ""
        return
    problem = variant.missing()
    prior = _history_for_model(history)
    history = history + [{"role": "user", "content": question}, {"role": "assistant", "content": ""}]
    if problem:
        history[-1]["content"] = f"⚠️ {problem}"
        yield history, "", ""
        return
    sources_md = ""
    try:
        lm = load_model(variant.model, instance=variant.key)
        if variant.uses_rag:
            from rag.pipeline import rag_stream, sources_markdown

            stream, sources = rag_stream(lm, question, store=get_settings().store_dir, k=k, history=prior,
                                         max_tokens=max_tokens, temperature=temperature)
            sources_md = sources_markdown(sources)
            yield history, "recuperando e lendo as fontes…", sources_md
        else:
            stream = stream_chat(lm, build_messages(question, prior), max_tokens=max_tokens, temperature=temperature)
        header = f"**{lm.label}**"
        yield history, f"{header} · aguardando o modelo…", sources_md
        for piece in stream:
            history[-1]["content"] += piece
            yield history, f"{header} · gerando…", sources_md
        yield history, f"{header} · {stream.stats.summary()}", sources_md
    except ProjectError as exc:
        history[-1]["content"] += f"\n\n⚠️ {exc.one_line()}"
        yield history, "erro", sources_md
    except Exception as exc:  # a model failing mid-stream must not take the other columns down
        history[-1]["content"] += f"\n\n⚠️ erro inesperado: {type(exc).__name__}: {exc}"
        yield history, "erro", sources_md


def build_ui():
    import gradio as gr

    cols = variants()
    with gr.Blocks(title="Comparador PT: base × fine-tune × RAG") as demo:
        gr.Markdown("# Comparador PT — modelo base × fine-tuned × RAG\n"
                    "Uma pergunta em português, três respostas lado a lado, geradas pelo llama.cpp na CPU.")
        with gr.Tab("Comparar"):
            with gr.Row():
                question = gr.Textbox(label="Pergunta", placeholder="Pergunte algo em português…", scale=5,
                                      elem_id="pergunta", max_lines=6)
                send = gr.Button("Enviar", variant="primary", scale=1, elem_id="enviar")
            with gr.Row():
                stop = gr.Button("Parar", scale=1)
                clear = gr.Button("Limpar conversa", scale=1)
            with gr.Accordion("Configurações de geração", open=False):
                temperature = gr.Slider(0.0, 1.5, value=get_settings().temperature, step=0.05, label="Temperatura")
                max_tokens = gr.Slider(16, 1024, value=get_settings().max_tokens, step=16, label="Máx. de tokens")
                k = gr.Slider(1, 10, value=4, step=1, label="Passagens recuperadas (k, RAG)")
            gr.Examples(EXAMPLES, inputs=question, label="Exemplos")
            outputs, events = [], []
            with gr.Row(equal_height=False):
                for v in cols:
                    with gr.Column():
                        gr.Markdown(f"### {v.title}")
                        bot = gr.Chatbot(label=v.title, height=420, elem_id=f"chat-{v.key}")
                        stats = gr.Markdown(elem_id=f"stats-{v.key}")
                        sources = gr.Markdown(elem_id=f"sources-{v.key}", visible=v.uses_rag)
                        outputs.append((v, bot, stats, sources))
            for v, bot, stats, sources in outputs:
                def run(q, h, t, m, kk, _v=v):
                    yield from answer(_v, q, h, t, int(m), int(kk))

                ev = gr.on([send.click, question.submit], run, inputs=[question, bot, temperature, max_tokens, k],
                           outputs=[bot, stats, sources], concurrency_limit=2, concurrency_id=f"col-{v.key}",
                           api_name=f"responder_{v.key}")
                events.append(ev)
            gr.on([send.click, question.submit], lambda: "", outputs=question, queue=False)
            stop.click(None, cancels=events)
            clear.click(lambda: [[]] * len(outputs) + [""] * len(outputs),
                        outputs=[o[1] for o in outputs] + [o[2] for o in outputs], queue=False)
    return demo


def prepare(progress: bool = True) -> None:
    """Everything the app needs before it starts: the default model, the RAG index, the fine-tune."""
    from models.fetch import fetch

    s = get_settings()
    print(f"==> modelo padrão: {s.default_model}", file=sys.stderr)
    fetch(s.default_model, progress=progress)
    try:
        from rag.pipeline import prepare_default_store
    except ImportError:
        prepare_default_store = None
    if prepare_default_store:
        print("==> índice RAG do corpus embutido", file=sys.stderr)
        prepare_default_store(progress=progress)
    try:
        from finetune.export import prepare_default_finetune
    except ImportError:
        prepare_default_finetune = None
    if prepare_default_finetune:
        print("==> modelo fine-tuned padrão", file=sys.stderr)
        prepare_default_finetune(progress=progress)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Comparador PT: base × fine-tune × RAG (Gradio).")
    on_space = bool(os.environ.get("SPACE_ID") or os.environ.get("PTLLM_SPACE"))
    parser.add_argument("--host", default="0.0.0.0" if on_space else "127.0.0.1",
                        help="endereço (padrão 127.0.0.1; 0.0.0.0 só num Space)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", 7860)))
    parser.add_argument("--no-prepare", action="store_true", help="não prepara modelos/índice antes de abrir")
    parser.add_argument("--prepare-only", action="store_true", help="só prepara e sai")
    args = parser.parse_args(argv)
    if not args.no_prepare:
        prepare()
    if args.prepare_only:
        return 0
    demo = build_ui()
    demo.queue(default_concurrency_limit=2, max_size=64)
    print(f"==> abrindo http://{args.host}:{args.port}", file=sys.stderr)
    demo.launch(server_name=args.host, server_port=args.port, share=False, show_error=True, footer_links=["api"])
    return 0


if __name__ == "__main__":
    from models.errors import run_cli

    sys.exit(run_cli(main))
