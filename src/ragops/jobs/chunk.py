"""Task ``chunk``: raw_documents → chunks (new and changed documents only)."""

from __future__ import annotations

from collections.abc import Sequence

from ragops.chunking import run_chunking
from ragops.jobs.common import run_task


def main(argv: Sequence[str] | None = None) -> int:
    return run_task("chunk", run_chunking, argv)
