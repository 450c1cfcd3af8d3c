"""Task ``evaluate``: score @challenger and @champion on the same eval set version, apply the
gates, and promote the challenger when no block gate fails. A failed gate exits non-zero with
the readable report (also written under ``<root>/reports/`` and to the MLflow run)."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Sequence

from ragops.config import Settings
from ragops.jobs.common import parse_named_parameters
from ragops.lakehouse import open_lakehouse
from ragops.logs import setup_logging

log = logging.getLogger("ragops.jobs")


def main(argv: Sequence[str] | None = None) -> int:
    from ragops.evaluation.evaluate import options_from
    from ragops.evaluation.promotion import GateFailed, run_gate

    setup_logging()
    params = parse_named_parameters(sys.argv[1:] if argv is None else argv)
    settings = Settings.from_variables(params)
    cfg = settings.evaluation
    with open_lakehouse(settings) as lh:
        try:
            outcome = run_gate(settings, lh, eval_set=cfg.eval_set, gates_path=cfg.gates, options=options_from(cfg))
        except GateFailed as exc:
            print(exc.outcome.text, file=sys.stderr)
            print(json.dumps({"task": "evaluate", "summary": exc.outcome.to_dict()}, default=str))
            log.error("evaluation gate failed: %s", exc.outcome.report.format().splitlines()[-1])
            return 1
    print(outcome.text)
    print(json.dumps({"task": "evaluate", "summary": outcome.to_dict()}, default=str))
    return 0
