"""FAISS vector + BM25 keyword index snapshots, synced from the embeddings change feed, and the
indexing pipeline that builds them (:func:`build_index`)."""

from ragops.index.build import build_index
from ragops.index.search import Searcher, SearchResult
from ragops.index.snapshot import Manifest, Snapshot, SnapshotNotFoundError, SnapshotStore
from ragops.index.sync import SyncSummary, run_index_sync

__all__ = [
    "Manifest",
    "SearchResult",
    "Searcher",
    "Snapshot",
    "SnapshotNotFoundError",
    "SnapshotStore",
    "SyncSummary",
    "build_index",
    "run_index_sync",
]
