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
    optional: bool = False  # hidden until the user turns it on (a fourth column costs a fourth generation)

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
        Variant("ftrag", "Fine-tuned + RAG", ft, uses_rag=True, optional=True),
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


def model_choices() -> list[tuple[str, str]]:
    """(label, registry name) for the per-column model selector: every registry entry, with its quantization."""
    return [(f"{name} · {spec.quant}", name) for name, spec in sorted(all_models().items())]


def answer(variant: Variant, question: str, history: list[dict], temperature: float, max_tokens: int, k: int,
           model: str | None = None):
    """Stream one column: yields (chat history, stats markdown, sources markdown)."""
    from dataclasses import replace

    from models.runtime import load_model, stream_chat, validate_question

    if model:
        variant = replace(variant, model=model)
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
        history[-1]["content"] = stream.text  # RAG: citations checked against the sources once it ended
        yield history, f"{header} · {stream.stats.summary()}", sources_md
    except ProjectError as exc:
        history[-1]["content"] += f"\n\n⚠️ {exc.one_line()}"
        yield history, "erro", sources_md
    except Exception as exc:  # a model failing mid-stream must not take the other columns down
        history[-1]["content"] += f"\n\n⚠️ erro inesperado: {type(exc).__name__}: {exc}"
        yield history, "erro", sources_md


def ready_variants() -> list[Variant]:
    return [v for v in variants() if v.missing() is None]


REPORTS = [
    ("Estudo: base × fine-tune × RAG", "evaluation/results"),
    ("Quantização", "quantize/results"),
    ("RAG: recuperação e respostas", "rag/results"),
    ("Fine-tune: antes × depois", "finetune/results"),
]


def collect_reports() -> list[tuple[str, str, list[str]]]:
    """(title, markdown, png paths) for every committed report that exists."""
    from models.settings import REPO_ROOT

    out = []
    for title, folder in REPORTS:
        base = REPO_ROOT / folder
        if not base.exists():
            continue
        mds = sorted(base.rglob("*.md"))
        pngs = [str(p) for p in sorted(base.rglob("*.png"))]
        if not mds and not pngs:
            continue
        text = "\n\n".join(m.read_text(encoding="utf-8") for m in mds)
        out.append((title, text, pngs))
    return out


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
                fourth = gr.Checkbox(value=False, label="Mostrar a 4ª coluna: Fine-tuned + RAG (uma geração a mais por pergunta)",
                                     elem_id="mostrar-ftrag")
            gr.Examples(EXAMPLES, inputs=question, label="Exemplos")
            outputs, events = [], []
            optional_cols = []
            with gr.Row(equal_height=False):
                for v in cols:
                    with gr.Column(visible=not v.optional) as column:
                        if v.optional:
                            optional_cols.append(column)
                        gr.Markdown(f"### {v.title}")
                        picker = gr.Dropdown(model_choices(), value=v.model, label="Modelo · quantização",
                                             elem_id=f"modelo-{v.key}", allow_custom_value=True)
                        bot = gr.Chatbot(label=v.title, height=420, elem_id=f"chat-{v.key}")
                        stats = gr.Markdown(elem_id=f"stats-{v.key}")
                        sources = gr.Markdown(elem_id=f"sources-{v.key}", visible=v.uses_rag)
                        outputs.append((v, bot, stats, sources, picker))
            for v, bot, stats, sources, picker in outputs:
                def run(q, h, t, m, kk, model=None, shown=True, _v=v):
                    if _v.optional and not shown:  # hidden column: no model call
                        yield h or [], "", ""
                        return
                    yield from answer(_v, q, h, t, int(m), int(kk), model)

                ev = gr.on([send.click, question.submit], run,
                           inputs=[question, bot, temperature, max_tokens, k, picker, fourth],
                           outputs=[bot, stats, sources], concurrency_limit=2, concurrency_id=f"col-{v.key}",
                           api_name=f"responder_{v.key}")
                events.append(ev)
            fourth.change(lambda on: [gr.update(visible=on)] * len(optional_cols), inputs=fourth,
                          outputs=optional_cols, queue=False)
            gr.on([send.click, question.submit], lambda: "", outputs=question, queue=False)
            stop.click(None, cancels=events)
            clear.click(lambda: [[]] * len(outputs) + [""] * len(outputs),
                        outputs=[o[1] for o in outputs] + [o[2] for o in outputs], queue=False)
        build_arena_tab(gr)
        build_reports_tab(gr)
    return demo


def build_arena_tab(gr):
    """Two anonymous variants answer; the user votes; identities are revealed after the vote."""
    import random

    from evaluation.arena import OUTCOMES, leaderboard, read_votes, record_vote

    by_key = {v.key: v for v in variants()}

    def board():
        rows = leaderboard(read_votes())
        cols = ["variante", "rating", "ic95_baixo", "ic95_alto", "elo", "votos", "vitórias"]
        return [[r[c] for c in cols] for r in rows]

    with gr.Tab("Arena"):
        gr.Markdown("Dois variantes anônimos respondem à mesma pergunta. Vote no melhor; os nomes aparecem depois do voto.")
        with gr.Row():
            q = gr.Textbox(label="Pergunta", scale=5, elem_id="arena-pergunta")
            go = gr.Button("Perguntar", variant="primary", scale=1, elem_id="arena-perguntar")
        pair = gr.State({})
        with gr.Row():
            chat_a = gr.Chatbot(label="Modelo A", height=320, elem_id="arena-a")
            chat_b = gr.Chatbot(label="Modelo B", height=320, elem_id="arena-b")
        with gr.Row():
            vote_buttons = {key: gr.Button(label, interactive=False, elem_id=f"voto-{key}") for key, label in OUTCOMES.items()}
        reveal = gr.Markdown(elem_id="arena-revelacao")
        table = gr.Dataframe(headers=["variante", "rating", "ic95_baixo", "ic95_alto", "elo", "votos", "vitórias"],
                             value=board, label="Classificação (Bradley–Terry, IC 95 % por bootstrap; Elo online)",
                             interactive=False)

        def pick(question):
            ready = [v.key for v in ready_variants()]
            if len(ready) < 2:
                return {}, "⚠️ A arena precisa de pelo menos dois variantes prontos.", [], [], *[gr.update(interactive=False)] * 4
            a, b = random.sample(ready, 2)
            return {"a": a, "b": b, "voted": False}, "", [], [], *[gr.update(interactive=False)] * 4

        def stream(side):
            def run(question, state, _side=side):
                if not state:
                    yield []
                    return
                v = by_key[state[_side]]
                for history, _, _ in answer(v, question, [], get_settings().temperature, get_settings().max_tokens, 4):
                    yield history
            return run

        def enable(state):
            return [gr.update(interactive=bool(state))] * 4

        picked = gr.on([go.click, q.submit], pick, inputs=q,
                       outputs=[pair, reveal, chat_a, chat_b, *vote_buttons.values()], queue=False)
        sa = picked.then(stream("a"), inputs=[q, pair], outputs=chat_a, concurrency_id="col-base")
        sb = picked.then(stream("b"), inputs=[q, pair], outputs=chat_b, concurrency_id="col-rag")
        sa.then(enable, inputs=pair, outputs=list(vote_buttons.values()))

        for outcome, button in vote_buttons.items():
            def vote(question, state, ha, hb, _outcome=outcome):
                if not state or state.get("voted"):
                    return state, "Faça uma nova pergunta para votar de novo.", board(), *[gr.update(interactive=False)] * 4
                record_vote(by_key[state["a"]].title, by_key[state["b"]].title, _outcome, question,
                            _text(ha[-1]["content"]) if ha else "", _text(hb[-1]["content"]) if hb else "")
                state = dict(state, voted=True)
                msg = (f"Voto registrado: **{OUTCOMES[_outcome]}**. Modelo A = **{by_key[state['a']].title}**, "
                       f"Modelo B = **{by_key[state['b']].title}**.")
                return state, msg, board(), *[gr.update(interactive=False)] * 4

            button.click(vote, inputs=[q, pair, chat_a, chat_b],
                         outputs=[pair, reveal, table, *vote_buttons.values()], concurrency_limit=4)


def build_reports_tab(gr):
    """The committed reports (study, quantization, RAG, fine-tune) as tables and plots."""
    with gr.Tab("Avaliação"):
        reports = collect_reports()
        if not reports:
            gr.Markdown("Nenhum relatório ainda. Rode `python -m quantize evaluate`, `python -m rag bench` ou "
                        "`python -m finetune evaluate` para gerar.")
        for title, text, pngs in reports:
            with gr.Accordion(title, open=False):
                gr.Markdown(text)
                if pngs:
                    gr.Gallery(value=pngs, columns=2, height="auto", label=title)


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
