"""Task ``embed``: chunks → embeddings (changed chunks only)."""

from __future__ import annotations

from collections.abc import Sequence

from ragops.embedding.embed import run_embedding
from ragops.jobs.common import run_task


def main(argv: Sequence[str] | None = None) -> int:
    return run_task("embed", run_embedding, argv)
