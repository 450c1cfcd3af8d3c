"""Task ``evaluate``: score @challenger and @champion on the same eval set version, apply the
gates, and promote the challenger when no block gate fails. A failed gate exits non-zero with
the readable report (also written under ``<root>/reports/`` and to the MLflow run). An evaluation
that cannot run — an eval set about another corpus than the index, no @challenger — fails the
task at once with its one-line message, before any answer is generated."""

from __future__ import annotations

from collections.abc import Sequence

from ragops.jobs.common import TaskFailed, run_task


def gate(lh, settings):
    from ragops.evaluation.entities import EvaluationError
    from ragops.evaluation.promotion import GateFailed, run_gate

    cfg = settings.evaluation
    try:
        outcome = run_gate(settings, lh, eval_set=cfg.eval_set, gates_path=cfg.gates, options=cfg)
    except GateFailed as exc:
        verdict = exc.outcome.report.format().splitlines()[-1]
        raise TaskFailed(f"evaluation gate failed: {verdict}", exc.outcome.text, exc.outcome) from exc
    except EvaluationError as exc:
        raise TaskFailed(str(exc), f"evaluate: {exc}", {"error": str(exc)}) from exc
    print(outcome.text)
    return outcome


def main(argv: Sequence[str] | None = None) -> int:
    return run_task("evaluate", gate, argv)
