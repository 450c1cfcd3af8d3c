"""The LangChain RAG chain, its prompts (MLflow Prompt Registry) and citations."""

from ragops.chain.prompts import DEFAULT_PROMPTS, DONT_KNOW, ResolvedPrompt, ensure_prompts, resolve_prompt
from ragops.chain.rag import RagChain, format_context

__all__ = ["DEFAULT_PROMPTS", "DONT_KNOW", "RagChain", "ResolvedPrompt", "ensure_prompts", "format_context",
           "resolve_prompt"]
