"""Chunking strategies (token, recursive, markdown, sentence) and the chunk stage."""

from ragops.chunking.chunk import ChunkSummary, chunk_config_hash, chunk_documents, indexed_text, run_chunking
from ragops.chunking.strategies import STRATEGIES, Span, TokenCounter, split_text

__all__ = [
    "STRATEGIES",
    "ChunkSummary",
    "Span",
    "TokenCounter",
    "chunk_config_hash",
    "chunk_documents",
    "indexed_text",
    "run_chunking",
    "split_text",
]
