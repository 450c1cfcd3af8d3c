"""Chunk stage: ``raw_documents`` → ``chunks``, only for new or changed documents.

A document is up to date when its chunks carry its current content hash and the current
chunking-config hash. Everything else is (re)chunked; chunks of deleted documents, and chunks
left over from an older version of a document or an older config, are deleted. The stage
converges from whatever state a crash left behind.
"""

from __future__ import annotations

import functools
import hashlib
import logging
from dataclasses import asdict, dataclass

import pandas as pd

from ragops.chunking.strategies import TokenCounter, hf_tokenize, regex_tokenize, split_text
from ragops.config import ChunkingConfig, Settings, config_hash
from ragops.lakehouse import Lakehouse
from ragops.lakehouse.schemas import CHUNKS, utcnow

log = logging.getLogger(__name__)


@dataclass
class ChunkSummary:
    documents: int = 0
    rechunked_documents: int = 0
    chunks_written: int = 0
    chunks_deleted: int = 0
    chunk_config_hash: str = ""
    chunks_version: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def chunk_config_hash(cfg: ChunkingConfig, tokenizer_name: str) -> str:
    """The chunking config plus the tokenizer sizes are counted in: both change the chunks."""
    return config_hash({"chunking": asdict(cfg), "tokenizer": tokenizer_name}, length=8)


def indexed_text(title: str | None, section: str | None, text: str, include_title: bool) -> str:
    """What is embedded and keyword-indexed for a chunk: its text, prefixed by the document title
    and section path when ``include_title`` — short chunks then still say what they are about."""
    if not include_title:
        return text
    head = " — ".join(p for p in (title or "", section or "") if p)
    return f"{head}\n\n{text}" if head else text


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@functools.lru_cache(maxsize=4)
def _tokenize_fn(tokenizer_name: str):
    if tokenizer_name == "regex":
        return regex_tokenize
    from ragops.weights import load_tokenizer

    return hf_tokenize(load_tokenizer(tokenizer_name))


def chunk_documents(batch: pd.DataFrame, *, cfg: ChunkingConfig, tokenizer_name: str, cfg_hash: str) -> pd.DataFrame:
    """Pure batch transform: raw_documents rows → chunks rows."""
    tokenize = _tokenize_fn(tokenizer_name)
    now = utcnow()
    rows = []
    for doc in batch.itertuples(index=False):
        text = doc.text or ""
        counter = TokenCounter(text, tokenize)
        for i, span in enumerate(split_text(text, counter, cfg)):
            piece = text[span.start : span.end]
            rows.append(
                {
                    "chunk_id": f"{doc.doc_id}::{cfg_hash}::{i:04d}",
                    "doc_id": doc.doc_id,
                    "chunk_index": i,
                    "text": piece,
                    "content_hash": _sha(indexed_text(doc.title, span.section, piece, cfg.include_title)),
                    "n_tokens": counter.count(span.start, span.end),
                    "start_char": span.start,
                    "end_char": span.end,
                    "title": doc.title,
                    "source_uri": doc.source_uri,
                    "section": span.section,
                    "doc_content_hash": doc.content_hash,
                    "chunk_config_hash": cfg_hash,
                    "created_at": now,
                }
            )
    frame = pd.DataFrame(rows, columns=CHUNKS.columns)
    return frame.astype({"chunk_index": "int32", "n_tokens": "int32", "start_char": "int64", "end_char": "int64"})


def tokenizer_for(settings: Settings) -> str:
    """Chunk sizes count the local embedding model's tokens; remote models fall back to words."""
    return settings.embedding.model if settings.embedding.backend == "local" else "regex"


def run_chunking(lh: Lakehouse, settings: Settings) -> ChunkSummary:
    cfg = settings.chunking
    tok = tokenizer_for(settings)
    cfg_hash = chunk_config_hash(cfg, tok)
    lh.ensure_table("chunks")
    docs = lh.read("raw_documents", ["doc_id", "content_hash"])
    existing = lh.read("chunks", ["chunk_id", "doc_id", "doc_content_hash", "chunk_config_hash"])
    current = dict(zip(docs["doc_id"], docs["content_hash"], strict=True))

    fresh = (existing["doc_id"].map(current) == existing["doc_content_hash"]) & (
        existing["chunk_config_hash"] == cfg_hash
    )
    stale_docs = set(existing.loc[~fresh, "doc_id"])
    chunked_docs = set(existing["doc_id"])
    to_chunk = sorted(d for d in current if d not in chunked_docs or d in stale_docs)

    summary = ChunkSummary(documents=len(current), rechunked_documents=len(to_chunk), chunk_config_hash=cfg_hash)
    written = lh.transform_table(
        "raw_documents",
        functools.partial(chunk_documents, cfg=cfg, tokenizer_name=tok, cfg_hash=cfg_hash),
        "chunks",
        where={"doc_id": to_chunk},
        columns=["doc_id", "title", "text", "source_uri", "content_hash"],
        batch_rows=64,
        desc="chunk documents",
    )
    summary.chunks_written = written.rows

    # Everything not produced by the current (document version, config) goes.
    if written.rows or stale_docs or set(existing["doc_id"]) - set(current):
        after = lh.read("chunks", ["chunk_id", "doc_id", "doc_content_hash", "chunk_config_hash"])
        keep = (after["doc_id"].map(current) == after["doc_content_hash"]) & (after["chunk_config_hash"] == cfg_hash)
        deleted = lh.delete("chunks", "chunk_id", after.loc[~keep, "chunk_id"].tolist())
        summary.chunks_deleted = deleted.rows
    summary.chunks_version = lh.version("chunks")
    log.info(
        "chunk: %d documents, %d (re)chunked → %d chunks written, %d stale chunks deleted (config %s, %s)",
        summary.documents, summary.rechunked_documents, summary.chunks_written, summary.chunks_deleted,
        cfg_hash, cfg.strategy,
    )
    return summary
