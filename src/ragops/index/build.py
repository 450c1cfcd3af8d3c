"""The whole indexing pipeline for one target: ingest → chunk → embed → index sync.

``ingest_job`` runs these four steps as separate tasks; this runs them in one process, as the
sweep (one index per chunking × embedding configuration), the tests and the benchmarks need.
Every step is incremental, so building an index that is already up to date re-embeds nothing.
"""

from __future__ import annotations

from typing import Any

from ragops.config import Settings


def build_index(settings: Settings) -> dict[str, Any]:
    """Run the four steps into the target's lakehouse and index; the summary of each step by name."""
    from ragops.chunking import run_chunking
    from ragops.embedding.embed import run_embedding
    from ragops.index.sync import run_index_sync
    from ragops.ingest import run_ingest
    from ragops.lakehouse import open_lakehouse

    with open_lakehouse(settings) as lh:
        return {"ingest": run_ingest(lh, settings), "chunk": run_chunking(lh, settings),
                "embed": run_embedding(lh, settings), "index_sync": run_index_sync(lh, settings)}
