"""Task ``ingest``: source documents → raw_documents (+ rejected_documents)."""

from __future__ import annotations

from collections.abc import Sequence

from ragops.ingest import run_ingest
from ragops.jobs.common import run_task


def main(argv: Sequence[str] | None = None) -> int:
    return run_task("ingest", run_ingest, argv)
