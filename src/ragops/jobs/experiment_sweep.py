"""Task ``experiment_sweep``: evaluate a grid of chunking × search × prompt configurations, one
MLflow run each, and print the comparison table (best first)."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence

from ragops.config import Settings
from ragops.jobs.common import parse_named_parameters
from ragops.lakehouse import open_lakehouse
from ragops.logs import setup_logging


def main(argv: Sequence[str] | None = None) -> int:
    from ragops.evaluation.evaluate import options_from
    from ragops.evaluation.sweep import SweepGrid, run_sweep, sweep_summary

    setup_logging()
    params = parse_named_parameters(sys.argv[1:] if argv is None else argv)
    settings = Settings.from_variables(params)
    try:
        grid = SweepGrid.from_params(params)
    except ValueError as exc:
        raise SystemExit(f"experiment_sweep: {exc}") from exc
    with open_lakehouse(settings) as lh:
        result = run_sweep(settings, lh, grid, eval_set=settings.evaluation.eval_set,
                           options=options_from(settings.evaluation))
    print(sweep_summary(result, (grid.metric, "recall@5", "answer_contains", "groundedness")))
    print(json.dumps({"task": "experiment_sweep", "summary": result.to_dict()}, default=str))
    return 0
