"""Task ``index_sync``: embeddings change feed → a new FAISS + BM25 index snapshot."""

from __future__ import annotations

from collections.abc import Sequence

from ragops.index import run_index_sync
from ragops.jobs.common import run_task


def main(argv: Sequence[str] | None = None) -> int:
    return run_task("index_sync", run_index_sync, argv)
