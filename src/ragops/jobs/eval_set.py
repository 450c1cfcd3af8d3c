"""Task ``eval_set``: register the eval set from its source as a new version in ``eval_sets``
(only when its content changed, so scheduled re-runs create no Delta commits)."""

from __future__ import annotations

from collections.abc import Sequence

from ragops.jobs.common import run_task


def register(lh, settings):
    from ragops.evaluation.eval_sets import load_source, read_eval_set, register_eval_set

    cfg = settings.evaluation
    if not cfg.source:  # the table is curated elsewhere (feedback, synthetic, a notebook)
        es = read_eval_set(lh, cfg.eval_set)
        return {"eval_set": es.name, "version": es.version, "rows": len(es.frame), "created": False}
    return register_eval_set(lh, cfg.eval_set, load_source(cfg.source))


def main(argv: Sequence[str] | None = None) -> int:
    return run_task("eval_set", register, argv)
