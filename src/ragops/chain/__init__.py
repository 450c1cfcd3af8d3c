"""The LangChain RAG chain, its prompts (MLflow Prompt Registry) and citations.

Names resolve lazily (PEP 562): ``ragops.chain.prompts`` (the "I don't know" answer the metrics
check for) must not pull in LangChain and the index, which ``ragops.chain.rag`` does."""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {"DEFAULT_PROMPTS": "prompts", "DONT_KNOW": "prompts", "ResolvedPrompt": "prompts",
          "ensure_prompts": "prompts", "resolve_prompt": "prompts", "RagChain": "rag", "format_context": "rag"}

__all__ = ["DEFAULT_PROMPTS", "DONT_KNOW", "RagChain", "ResolvedPrompt", "ensure_prompts", "format_context",
           "resolve_prompt"]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'ragops.chain' has no attribute {name!r}")
    return getattr(importlib.import_module(f"ragops.chain.{_WHERE[name]}"), name)
