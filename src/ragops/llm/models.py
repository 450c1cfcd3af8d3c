"""Moved to :mod:`ragops.weights.llm`; these names stay importable from here."""

from ragops.weights.llm import DEFAULT_LLM, PACKAGED_LLMS, LLMNotFoundError, model_cache_dir, resolve_llm_path

__all__ = ["DEFAULT_LLM", "PACKAGED_LLMS", "LLMNotFoundError", "model_cache_dir", "resolve_llm_path"]
