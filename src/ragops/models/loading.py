"""Rebuild a :class:`RagChain` from a logged model's artifacts (no lakehouse, no prompt registry)."""

from __future__ import annotations

import json
from pathlib import Path

from ragops.chain.prompts import ResolvedPrompt
from ragops.chain.rag import RagChain
from ragops.config import ChainConfig, EmbeddingConfig, IndexConfig, LLMConfig
from ragops.embedding import get_embedder
from ragops.index.search import Searcher
from ragops.index.snapshot import SnapshotStore
from ragops.llm import get_chat_model


def chain_from_artifacts(config_path: str | Path, snapshot_path: str | Path) -> RagChain:
    cfg = json.loads(Path(config_path).read_text())
    llm = LLMConfig(**cfg["chain"]["llm"])
    chain_cfg = ChainConfig(**{**cfg["chain"], "llm": llm})
    snapshot_path = Path(snapshot_path)
    index_config = IndexConfig(**cfg["index"])
    snapshot = SnapshotStore(snapshot_path.parent.parent).load(snapshot_path.name, index_config, path=snapshot_path)
    embedder = get_embedder(EmbeddingConfig(**cfg["embedding"]))
    searcher = Searcher.for_config(snapshot, embedder, index_config)
    prompt = ResolvedPrompt(**cfg["prompt"])
    return RagChain(searcher, get_chat_model(llm), prompt, chain_cfg, lineage=cfg.get("lineage"))
