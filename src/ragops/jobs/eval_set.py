"""Task ``eval_set``: register the eval set from its source as a new version in ``eval_sets``
(only when its content changed, so scheduled re-runs create no Delta commits)."""

from __future__ import annotations

from collections.abc import Sequence

from ragops.jobs.common import run_task


def register(lh, settings):
    from ragops.evaluation.eval_sets import ensure_eval_set

    es = ensure_eval_set(lh, settings.evaluation)
    return {"eval_set": es.name, "version": es.version, "rows": len(es), "created": es.created,
            "table_version": es.table_version}


def main(argv: Sequence[str] | None = None) -> int:
    return run_task("eval_set", register, argv)
