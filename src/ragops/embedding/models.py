"""Moved to :mod:`ragops.weights.embedder`; these names stay importable from here."""

from ragops.weights.embedder import PACKAGED_MODELS, ModelNotFoundError, load_tokenizer, resolve_model_path

__all__ = ["PACKAGED_MODELS", "ModelNotFoundError", "load_tokenizer", "resolve_model_path"]
