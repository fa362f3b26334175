"""LangChain surface for the same pipeline: a retriever over the store and an LCEL chain with citations.

    from rag.lc import ProjectRetriever, make_chain
    retriever = ProjectRetriever(store_dir="~/.cache/pt-llm-compare/stores/wiki_pt", k=4)
    chain = make_chain(retriever, model="qwen2.5-0.5b-instruct")
    chain.invoke("Onde nasce o rio Tietê?")  # {"answer": "...", "sources": [Document, ...]}

Generation still goes through the project's llama.cpp runtime (one lock per model).
"""
from __future__ import annotations

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import Runnable, RunnableLambda, RunnableParallel, RunnablePassthrough

from .store import Hit


def hit_to_document(hit: Hit) -> Document:
    return Document(page_content=hit.text, id=hit.chunk_id,
                    metadata={"article_id": hit.article_id, "title": hit.title, "url": hit.url, "score": hit.score,
                              "dense": hit.dense, "bm25": hit.bm25, "chunk_id": hit.chunk_id})


def document_to_hit(doc: Document) -> Hit:
    m = doc.metadata
    return Hit(m.get("chunk_id", doc.id or ""), m.get("article_id", ""), m.get("title", ""), m.get("url", ""),
               doc.page_content, m.get("score", 0.0), m.get("dense"), m.get("bm25"))


class ProjectRetriever(BaseRetriever):
    """Hybrid (dense + BM25, RRF) retrieval over a store built by `python -m rag ingest`."""

    store_dir: str
    k: int = 4
    mode: str = "hybrid"

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        from .retrieve import search

        return [hit_to_document(h) for h in search(query, self.store_dir, k=self.k, mode=self.mode)]


def make_chain(retriever: BaseRetriever, model: str | None = None, max_tokens: int | None = None,
               temperature: float = 0.0) -> Runnable:
    """LCEL: {sources, question} -> prompt with numbered passages -> llama.cpp -> {answer, sources}."""
    from models.runtime import load_model, stream_chat

    from .pipeline import NOT_FOUND, build_context, checked, is_relevant

    def generate(inputs: dict) -> dict:
        hits = [document_to_hit(d) for d in inputs["sources"]]
        if not is_relevant(hits):
            return {"answer": NOT_FOUND, "sources": []}
        lm = load_model(model)
        messages, used = build_context(lm, inputs["question"], hits, max_tokens or 256)
        # the same citation check as the project's own pipeline
        stream = checked(stream_chat(lm, messages, max_tokens=max_tokens, temperature=temperature), inputs["question"], used)
        for _ in stream:
            pass
        return {"answer": stream.text, "sources": [hit_to_document(h) for h in used]}

    return RunnableParallel(sources=retriever, question=RunnablePassthrough()) | RunnableLambda(generate)
