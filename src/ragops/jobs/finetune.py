"""Task ``finetune``: build the SFT / DPO datasets, train with TRL (GPU if present, else CPU), register ``rag_llm``."""

from __future__ import annotations

from collections.abc import Sequence

from ragops.jobs.common import run_task


def main(argv: Sequence[str] | None = None) -> int:
    from ragops.finetune.job import run_finetune

    return run_task("finetune", run_finetune, argv)
