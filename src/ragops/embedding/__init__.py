"""Embedders (local sentence-transformers, OpenAI-compatible HTTP, Databricks serving) and the embed stage."""

from __future__ import annotations

import functools

from ragops.config import EmbeddingConfig, SettingsError
from ragops.embedding.base import Embedder, EmbeddingError
from ragops.weights.embedder import ModelNotFoundError, embedder_name, resolve_model_path


def embedder_identity(config: EmbeddingConfig) -> str:
    """The ``model`` value an embedder of this config stores with its vectors — known without
    loading the model, so a no-op run stays cheap and a model change is detected."""
    if config.backend == "local":
        return embedder_name(config.model)
    if config.backend == "databricks":
        return f"databricks:{config.endpoint or config.model}"
    return config.model


@functools.lru_cache(maxsize=4)
def get_embedder(config: EmbeddingConfig) -> Embedder:
    """One embedder per config per process (workers reuse it across batches)."""
    if config.backend == "local":
        from ragops.embedding.local import LocalEmbedder

        return LocalEmbedder(config.model, batch_size=config.batch_size, dtype=config.dtype)
    if config.backend == "openai":
        from ragops.embedding.remote import OpenAIEmbedder

        return OpenAIEmbedder(config.endpoint, config.model, batch_size=config.batch_size)
    if config.backend == "databricks":
        from ragops.embedding.remote import DatabricksEmbedder

        return DatabricksEmbedder(config.endpoint or config.model, batch_size=config.batch_size)
    raise SettingsError(f"embedding_backend={config.backend!r}: use local, openai or databricks")


from ragops.embedding.embed import EmbedSummary, run_embedding  # noqa: E402 - needs get_embedder above

__all__ = [
    "EmbedSummary",
    "run_embedding","Embedder", "EmbeddingError", "ModelNotFoundError", "embedder_identity", "get_embedder", "resolve_model_path"]
