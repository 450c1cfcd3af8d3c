"""The Embedder interface: texts → L2-normalised float32 vectors.

Subclasses LangChain's ``Embeddings`` so any embedder plugs into LangChain retrievers too;
``encode`` is the fast path the pipeline uses (one numpy array, no per-vector lists).
"""

from __future__ import annotations

from abc import abstractmethod

import numpy as np
from langchain_core.embeddings import Embeddings

from ragops.errors import RagopsError


class EmbeddingError(RagopsError, RuntimeError):
    pass


class Embedder(Embeddings):
    #: identity stored with every vector (``embeddings.model``)
    model_name: str
    dimension: int

    @abstractmethod
    def encode(self, texts: list[str], *, batch_size: int | None = None, show_progress: bool = False) -> np.ndarray:
        """(n, dimension) float32, rows L2-normalised (so inner product = cosine)."""

    def encode_query(self, text: str) -> np.ndarray:
        return self.encode([text])[0]

    # LangChain Embeddings API
    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.encode(list(texts)).tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.encode_query(text).tolist()


def normalize(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)
