"""Task ``experiment_sweep``: evaluate a grid of chunking × search × prompt configurations, one
MLflow run each, and print the comparison table (best first)."""

from __future__ import annotations

from collections.abc import Sequence

from ragops.jobs.common import run_task


def sweep(lh, settings, params):
    from ragops.evaluation.sweep import SweepGrid, run_sweep, sweep_summary

    try:
        grid = SweepGrid.from_params(params)
    except ValueError as exc:
        raise SystemExit(f"experiment_sweep: {exc}") from exc
    result = run_sweep(settings, lh, grid, eval_set=settings.evaluation.eval_set,
                       options=settings.evaluation)
    print(sweep_summary(result, (grid.metric, "recall@5", "answer_contains", "groundedness")))
    return result


def main(argv: Sequence[str] | None = None) -> int:
    return run_task("experiment_sweep", sweep, argv, with_params=True)
