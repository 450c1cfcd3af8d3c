"""Index sync: keep the FAISS + BM25 snapshot in step with the ``embeddings`` table.

Incremental by default: the current snapshot's manifest records the embeddings-table version
it was built from; the sync reads the change data feed since that version and applies only
those inserts, updates and deletes. Where the engine has no change feed (a Spark Connect server
such as Sail), it falls back to a content-hash diff against the snapshot and says so. A new
embedding model or index config forces a full rebuild. Every sync publishes a new immutable
snapshot and switches the pointer atomically (see :mod:`ragops.index.snapshot`).

Each snapshot row also carries its document's allowed groups, looked up in ``raw_documents`` at
build time. When only the groups changed (ingest moved ``raw_documents`` but not ``embeddings``)
the sync publishes in mode ``access``: the previous FAISS and BM25 indexes with new rows, nothing
re-embedded (see :mod:`ragops.index.access`).
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
from ragops.index import access
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
    mode: str  # up_to_date | full | change_feed | hash_diff | access | empty
    source_version: int | None
    added: int = 0
    updated: int = 0
    deleted: int = 0
    total: int = 0
    #: chunks kept from the previous snapshot whose allowed groups changed
    access_changed: int = 0

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
    out[access.COLUMN] = None  # looked up from raw_documents once the rows are final
    return out[ROW_COLUMNS].reset_index(drop=True)


def _access_changed(before: pd.DataFrame, after: pd.DataFrame) -> int:
    """Chunks in both row sets whose groups differ (all of them when ``before`` predates groups)."""
    both = after[["chunk_id", access.COLUMN]].merge(
        before[["chunk_id"] + ([access.COLUMN] if access.COLUMN in before else [])], on="chunk_id",
        how="inner", suffixes=("", "_before"))
    if access.COLUMN not in before:
        return len(both)
    return int((~access.same_groups(both[access.COLUMN + "_before"], both[access.COLUMN])).sum())


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
    access_version = lh.version("raw_documents")  # None: no such table, nothing restricts access
    groups_by_doc: access.GroupsByDoc | None = None
    groups_read = False

    if previous and not full and previous.source_version == version and previous.config_hash == cfg_hash:
        groups_versioned = access_version is not None or not lh.exists("raw_documents")
        if groups_versioned and access.is_current(previous.access_control, access_version):
            log.info("index sync: snapshot %s is up to date with embeddings v%s", prev_id, version)
            return SyncSummary(prev_id, prev_id, "up_to_date", version, total=previous.counts.get("chunks", 0))
        # raw_documents moved but embeddings did not: maybe only allowed groups changed.
        groups_by_doc, groups_read = access.document_groups(lh, access_version), True
        before = store.read_rows(prev_id, ["chunk_id", "doc_id", access.COLUMN])
        now = access.chunk_groups(before["doc_id"].tolist(), groups_by_doc)
        if access.COLUMN in before and access.same_groups(before[access.COLUMN], now).all():
            log.info("index sync: snapshot %s is up to date with embeddings v%s and the documents' groups "
                     "(raw_documents v%s)", prev_id, version, access_version)
            return SyncSummary(prev_id, prev_id, "up_to_date", version, total=previous.counts.get("chunks", 0))

    models = lh.read("embeddings", ["model"], version=version)["model"].unique().tolist()
    if len(models) > 1:
        raise IndexSyncError(
            f"embeddings table v{version} mixes models {models}; run the embed task to finish re-embedding"
        )
    model = models[0] if models else (previous.model if previous else "")

    mode = "full"
    if groups_read:
        mode = "access"
    elif previous and not full and previous.config_hash == cfg_hash and (not models or previous.model == model):
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
        if mode == "access":  # same chunks and vectors as the previous snapshot, new groups below
            upserts, deletes = pd.DataFrame(columns=["chunk_id"]), []
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
    if not groups_read:
        groups_by_doc = access.document_groups(lh, access_version)  # the version the manifest records
    rows[access.COLUMN] = access.chunk_groups(rows["doc_id"].tolist(), groups_by_doc)
    access_changed = _access_changed(snap.rows, rows) if mode != "full" else 0
    _maybe_fail("index_sync:before_publish")
    # Groups are not indexed text: an access-only snapshot keeps the previous BM25 index as it is.
    keywords = snap.keywords if mode == "access" else _keyword_index(rows, settings)
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
        access_control=access.summary(
            rows, lh.location("raw_documents") if access_version is not None else None, access_version),
    )
    store.publish(manifest, rows, vectors, keywords, before_switch=lambda: _maybe_fail("index_sync:before_switch"))
    log.info(
        "index sync (%s): +%d ~%d -%d, %d with new groups → %d chunks in snapshot %s (embeddings v%s)",
        mode, added, updated, deleted, access_changed, len(rows), snapshot_id, version,
    )
    return SyncSummary(snapshot_id, prev_id, mode, version, added, updated, deleted, len(rows), access_changed)
