"""Task ``log_chain``: log the RAG chain on the current index snapshot, register it, alias @challenger."""

from __future__ import annotations

from collections.abc import Sequence

from ragops.jobs.common import run_task
from ragops.models.log import log_chain


def main(argv: Sequence[str] | None = None) -> int:
    return run_task("log_chain", lambda lh, settings: log_chain(settings), argv, needs_lakehouse=False)
