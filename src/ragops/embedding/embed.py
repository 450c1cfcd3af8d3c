"""Embed stage: ``chunks`` → ``embeddings``, only for chunks whose content changed.

A chunk needs a vector when it has none, its content hash changed, or the embedding model
changed. Embeddings of chunks that no longer exist are deleted; their deletion is what the
index sync sees in the change feed.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from ragops.chunking.chunk import indexed_text
from ragops.config import EmbeddingConfig, Settings
from ragops.embedding import embedder_identity, get_embedder
from ragops.lakehouse import Lakehouse
from ragops.lakehouse.schemas import EMBEDDINGS, utcnow

log = logging.getLogger(__name__)

#: Rows per embedding batch: large, so the model's length-sorting pads little (throughput ≈ plain encode).
EMBED_BATCH_ROWS = 2048


@dataclass
class EmbedSummary:
    chunks: int = 0
    embedded: int = 0
    deleted: int = 0
    model: str = ""
    dimension: int = 0
    embeddings_version: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def embed_chunks(batch: pd.DataFrame, *, config: EmbeddingConfig, include_title: bool) -> pd.DataFrame:
    """Pure batch transform: chunks rows → embeddings rows."""
    embedder = get_embedder(config)
    texts = [
        indexed_text(t, s, x, include_title)
        for t, s, x in zip(batch["title"], batch["section"], batch["text"], strict=True)
    ]
    vectors = embedder.encode(texts)
    out = pd.DataFrame(
        {
            "chunk_id": batch["chunk_id"].to_numpy(),
            "doc_id": batch["doc_id"].to_numpy(),
            "content_hash": batch["content_hash"].to_numpy(),
            "text": batch["text"].to_numpy(),
            "title": batch["title"].to_numpy(),
            "source_uri": batch["source_uri"].to_numpy(),
            "section": batch["section"].to_numpy(),
            "model": embedder.model_name,
            "dimension": np.int32(embedder.dimension),
            "vector": list(vectors),
            "embedded_at": utcnow(),
        }
    )
    return out[EMBEDDINGS.columns]


def run_embedding(lh: Lakehouse, settings: Settings) -> EmbedSummary:
    config = settings.embedding
    lh.ensure_table("embeddings")
    chunks = lh.read("chunks", ["chunk_id", "content_hash"])
    existing = lh.read("embeddings", ["chunk_id", "content_hash", "model"])
    summary = EmbedSummary(chunks=len(chunks))

    current = set(zip(chunks["chunk_id"], chunks["content_hash"], strict=True))
    model = embedder_identity(config)
    have = dict(zip(existing["chunk_id"], zip(existing["content_hash"], existing["model"], strict=True), strict=True))
    need = [cid for cid, h in current if have.get(cid) != (h, model)]
    summary.model = model
    if need:
        summary.dimension = get_embedder(config).dimension

    written = lh.transform_table(
        "chunks",
        functools.partial(embed_chunks, config=config, include_title=settings.chunking.include_title),
        "embeddings",
        where={"chunk_id": sorted(need)},
        columns=["chunk_id", "doc_id", "content_hash", "text", "title", "source_uri", "section"],
        batch_rows=EMBED_BATCH_ROWS,
        desc="embed chunks",
    )
    summary.embedded = written.rows
    gone = sorted(set(existing["chunk_id"]) - {cid for cid, _ in current})
    summary.deleted = lh.delete("embeddings", "chunk_id", gone).rows
    summary.embeddings_version = lh.version("embeddings")
    log.info(
        "embed: %d chunks, %d embedded, %d deleted (%s, %d-d)",
        summary.chunks, summary.embedded, summary.deleted, summary.model, summary.dimension,
    )
    return summary
