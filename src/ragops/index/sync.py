"""Index sync: keep the FAISS + BM25 snapshot in step with the ``embeddings`` table.

Incremental by default: the current snapshot's manifest records the embeddings-table version
it was built from; the sync reads the change data feed since that version and applies only
those inserts, updates and deletes. Where the engine has no change feed (a Spark Connect server
such as Sail), it falls back to a content-hash diff against the snapshot and says so. A new
embedding model or index config forces a full rebuild. Every sync publishes a new immutable
snapshot and switches the pointer atomically (see :mod:`ragops.index.snapshot`).
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

import ragops
from ragops.chunking.chunk import indexed_text
from ragops.config import Settings, config_hash
from ragops.errors import RagopsError
from ragops.index.keyword import KeywordIndex
from ragops.index.snapshot import ROW_COLUMNS, Manifest, SnapshotStore, new_snapshot_id
from ragops.index.vector import VectorIndex, faiss_ids
from ragops.lakehouse import ChangeFeedUnavailable, Lakehouse
from ragops.lakehouse.schemas import utcnow

log = logging.getLogger(__name__)

#: Set to a fail point name to make the sync crash there (used by the crash-recovery tests).
FAILURE_ENV = "RAGOPS_INJECT_FAILURE"


class IndexSyncError(RagopsError, RuntimeError):
    """The embeddings table is in a state no snapshot can be built from (mixed models, say)."""


class InjectedFailure(RagopsError, RuntimeError):
    pass


def _maybe_fail(point: str) -> None:
    if os.environ.get(FAILURE_ENV) == point:
        raise InjectedFailure(f"injected failure at {point} ({FAILURE_ENV})")


@dataclass
class SyncSummary:
    snapshot_id: str | None
    previous_snapshot: str | None
    mode: str  # up_to_date | full | change_feed | hash_diff | empty
    source_version: int | None
    added: int = 0
    updated: int = 0
    deleted: int = 0
    total: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def index_config_hash(settings: Settings) -> str:
    """Build-time settings only: search-time knobs (k, mode, efSearch, rrf_k) do not need a rebuild."""
    ic = settings.index
    build = {
        "vector_index": ic.vector_index,
        "hnsw_m": ic.hnsw_m,
        "bm25_k1": ic.bm25_k1,
        "bm25_b": ic.bm25_b,
        "stemmer": ic.stemmer,
        "include_title": settings.chunking.include_title,
    }
    return config_hash(build)


def _final_changes(changes: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Collapse a change feed to the last state per chunk: (rows to upsert, chunk ids to delete)."""
    if changes.empty:
        return changes, []
    order = {"update_preimage": 0, "delete": 1, "insert": 2, "update_postimage": 2}
    ch = changes[changes["_change_type"] != "update_preimage"].copy()
    ch["_order"] = ch["_change_type"].map(order)
    ch = ch.sort_values(["_commit_version", "_order"], kind="stable")
    last = ch.drop_duplicates("chunk_id", keep="last")
    deletes = last.loc[last["_change_type"] == "delete", "chunk_id"].tolist()
    upserts = last[last["_change_type"] != "delete"]
    return upserts, deletes


def _keyword_index(rows: pd.DataFrame, settings: Settings) -> KeywordIndex:
    texts = [
        indexed_text(t, s, x, settings.chunking.include_title)
        for t, s, x in zip(rows["title"], rows["section"], rows["text"], strict=True)
    ]
    return KeywordIndex.build(texts, settings.index)


def _rows_from(df: pd.DataFrame) -> pd.DataFrame:
    out = df.copy()
    out["faiss_id"] = faiss_ids(out["chunk_id"])
    return out[ROW_COLUMNS].reset_index(drop=True)


def _stack(vectors: pd.Series) -> np.ndarray:
    return np.stack([np.asarray(v, dtype=np.float32) for v in vectors]) if len(vectors) else np.zeros((0, 0), np.float32)


def run_index_sync(lh: Lakehouse, settings: Settings, *, full: bool = False) -> SyncSummary:
    store = SnapshotStore(settings.index_root)
    store.prune(settings.index.keep_snapshots)
    lh.ensure_table("embeddings")
    version = lh.version("embeddings")
    cfg_hash = index_config_hash(settings)
    previous = store.manifest()
    prev_id = previous.snapshot_id if previous else None

    if previous and not full and previous.source_version == version and previous.config_hash == cfg_hash:
        log.info("index sync: snapshot %s is up to date with embeddings v%s", prev_id, version)
        return SyncSummary(prev_id, prev_id, "up_to_date", version, total=previous.counts.get("chunks", 0))

    models = lh.read("embeddings", ["model"], version=version)["model"].unique().tolist()
    if len(models) > 1:
        raise IndexSyncError(
            f"embeddings table v{version} mixes models {models}; run the embed task to finish re-embedding"
        )
    model = models[0] if models else (previous.model if previous else "")

    mode = "full"
    if previous and not full and previous.config_hash == cfg_hash and (not models or previous.model == model):
        try:
            changes = lh.changes("embeddings", previous.source_version, version)
            upserts, deletes = _final_changes(changes)
            mode = "change_feed"
        except ChangeFeedUnavailable as exc:
            log.warning("index sync: %s — falling back to a content-hash diff against the snapshot", exc)
            mode = "hash_diff"
    elif previous:
        log.info("index sync: model or index config changed since %s — full rebuild", prev_id)

    if mode == "full":
        table = lh.read("embeddings", version=version)
        if table.empty and previous is None:
            log.info("index sync: embeddings table is empty; nothing to index yet")
            return SyncSummary(None, None, "empty", version)
        dimension = int(table["dimension"].iloc[0]) if len(table) else previous.dimension
        rows = _rows_from(table)
        vectors = VectorIndex(dimension, settings.index)
        vectors.add(rows["faiss_id"].to_numpy(), _stack(table["vector"]))
        added, updated, deleted = len(rows), 0, 0
    else:
        snap = store.load(prev_id, settings.index)
        rows, vectors, dimension = snap.rows, snap.vectors, previous.dimension
        if mode == "hash_diff":
            current = lh.read("embeddings", ["chunk_id", "content_hash"], version=version)
            have = dict(zip(rows["chunk_id"], rows["content_hash"], strict=True))
            now_ids = set(current["chunk_id"])
            deletes = [c for c in rows["chunk_id"] if c not in now_ids]
            changed = [c for c, h in zip(current["chunk_id"], current["content_hash"], strict=True) if have.get(c) != h]
            upserts = lh.read("embeddings", version=version, where={"chunk_id": changed})
        existing = set(rows["chunk_id"])
        up_ids = set(upserts["chunk_id"]) if len(upserts) else set()
        updated = len(up_ids & existing)
        added = len(up_ids) - updated
        drop = (set(deletes) & existing) | (up_ids & existing)
        deleted = len(set(deletes) & existing)
        vectors.remove(faiss_ids(sorted(drop)))
        rows = rows[~rows["chunk_id"].isin(drop)]
        if len(upserts):
            new_rows = _rows_from(upserts)
            vectors.add(new_rows["faiss_id"].to_numpy(), _stack(upserts["vector"]))
            rows = pd.concat([rows, new_rows], ignore_index=True)
        rows = rows.reset_index(drop=True)

    if len(rows) != len(vectors):
        raise IndexSyncError(f"index sync: {len(rows)} rows but {len(vectors)} vectors — snapshot would be inconsistent")
    _maybe_fail("index_sync:before_publish")
    keywords = _keyword_index(rows, settings)
    snapshot_id = new_snapshot_id(version)
    manifest = Manifest(
        snapshot_id=snapshot_id,
        created_at=utcnow().isoformat(),
        source_table=lh.location("embeddings"),
        source_version=int(version),
        model=model,
        dimension=int(dimension),
        config_hash=cfg_hash,
        index_config=asdict(settings.index),
        counts={
            "chunks": len(rows),
            "documents": int(rows["doc_id"].nunique()),
            "added": added,
            "updated": updated,
            "deleted": deleted,
        },
        sync_mode=mode,
        previous_snapshot=prev_id,
        git_commit=settings.git_commit,
        ragops_version=ragops.__version__,
        extra={"catalog": settings.catalog, "schema": settings.schema, "engine": lh.engine},
    )
    store.publish(manifest, rows, vectors, keywords, before_switch=lambda: _maybe_fail("index_sync:before_switch"))
    log.info(
        "index sync (%s): +%d ~%d -%d → %d chunks in snapshot %s (embeddings v%s)",
        mode, added, updated, deleted, len(rows), snapshot_id, version,
    )
    return SyncSummary(snapshot_id, prev_id, mode, version, added, updated, deleted, len(rows))
