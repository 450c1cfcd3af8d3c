"""Champion/challenger: score both on the same eval set version, compare them question by
question, apply the gates, and move ``@champion`` only when no block gate fails.

The champion's evaluation is reused when one exists for the same eval set version and options
(it was scored when it was the challenger), so a gate run costs one evaluation, not two.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ragops.config import EvaluationConfig, Settings
from ragops.errors import RagopsError
from ragops.evaluation.base import evaluate_model
from ragops.evaluation.entities import N_BOOT, EvaluationError, EvaluationResult
from ragops.evaluation.eval_sets import read_eval_set
from ragops.evaluation.gates import GateReport, check_gates, load_gates
from ragops.evaluation.report import comparison_frame, format_table, plot_comparison
from ragops.evaluation.scorers import answer_only_metrics
from ragops.evaluation.stats import PairedComparison, paired_bootstrap
from ragops.lakehouse import Lakehouse
from ragops.lakehouse.schemas import utcnow
from ragops.models.registry import AliasChange, alias_version, promote

log = logging.getLogger(__name__)


class GateFailed(RagopsError, RuntimeError):
    """A block gate failed: ``@champion`` was left where it was. The message is the report."""

    def __init__(self, outcome: GateOutcome) -> None:
        super().__init__(outcome.text)
        self.outcome = outcome


@dataclass
class GateOutcome:
    challenger: EvaluationResult
    champion: EvaluationResult | None
    comparisons: dict[str, PairedComparison]
    report: GateReport
    promoted: AliasChange | None
    report_dir: Path
    text: str

    @property
    def passed(self) -> bool:
        return self.report.passed

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "challenger_version": self.challenger.model_version,
            "champion_version": self.champion.model_version if self.champion else None,
            "promoted": self.promoted.to_dict() if self.promoted else None,
            "challenger_run_id": self.challenger.run_id,
            "champion_run_id": self.champion.run_id if self.champion else None,
            "eval_set": f"{self.challenger.eval_set}@v{self.challenger.eval_set_version}",
            "gates": self.report.to_dict(),
            "metrics": self.challenger.metrics(),
            "report_dir": str(self.report_dir),
        }


def compare(challenger: EvaluationResult, champion: EvaluationResult | None,
            n_boot: int = 2000) -> dict[str, PairedComparison]:
    """Paired (same questions) bootstrap comparison for every metric both evaluations have."""
    if champion is None:
        return {}
    return {name: paired_bootstrap(name, challenger.scores(name), champion.scores(name), n_boot=n_boot)
            for name in challenger.summaries if name in champion.summaries}


def run_gate(settings: Settings, lh: Lakehouse, *, eval_set: str = "sample", gates_path: str | Path,
             options: EvaluationConfig | None = None, promote_on_pass: bool = True) -> GateOutcome:
    """Evaluate ``@challenger`` (and ``@champion``), apply the gates, promote on pass.

    Raises :class:`GateFailed` (with the readable report) when a block gate fails.
    """
    import mlflow

    options = options or EvaluationConfig()
    gates = load_gates(gates_path)
    name = settings.registered_model_name
    challenger_v = alias_version(settings, "challenger")
    if challenger_v is None:
        raise EvaluationError(f"{name!r} has no @challenger version to evaluate; run rag_chain_job first")
    champion_v = alias_version(settings, "champion")
    es = read_eval_set(lh, eval_set)
    challenger = evaluate_model(settings, lh, f"models:/{name}/{challenger_v}", es, options=options, reuse=True,
                                extra_tags={"ragops.eval.role": "challenger"})
    champion = None
    if champion_v is not None and champion_v != challenger_v:
        champion = evaluate_model(settings, lh, f"models:/{name}/{champion_v}", es, options=options, reuse=True,
                                  extra_tags={"ragops.eval.role": "champion"})
    comparisons = compare(challenger, champion, n_boot=max(N_BOOT, 1000))
    answer_only = set() if options.answers else answer_only_metrics(options.ks, options.ndcg_k)
    not_computed = sorted({r.metric for r in gates.rules
                           if r.metric in answer_only and r.metric not in challenger.summaries})
    if not_computed:  # a retrieval-only evaluation: answer gates do not apply (a typo still fails)
        log.warning("retrieval-only evaluation: gates on %s are not applied", ", ".join(not_computed))
        gates = replace(gates, rules=[r for r in gates.rules if r.metric not in not_computed])
    report = check_gates(gates, challenger.summaries, champion.summaries if champion else None, comparisons)

    promoted = None
    if champion_v == challenger_v:
        verdict = f"version {challenger_v} is already @champion: nothing to promote"
    elif report.passed and promote_on_pass:
        promoted = promote(settings, challenger_v)
        verdict = (f"promoted version {challenger_v} to @champion"
                   + (f" (previous champion {promoted.previous_version} recorded for rollback)"
                      if promoted.previous_version else ""))
    elif report.passed:
        verdict = f"version {challenger_v} passed the gates (promotion disabled)"
    else:
        verdict = f"@champion left at version {champion_v}" if champion_v else "no @champion set"

    stamp = utcnow().strftime("%Y%m%dT%H%M%S")
    report_dir = settings.root / "reports" / f"evaluate-{stamp}-v{challenger_v}"
    report_dir.mkdir(parents=True, exist_ok=True)
    frame = comparison_frame(challenger.summaries, champion.summaries if champion else None, comparisons)
    title = (f"{name} v{challenger_v} (challenger)" + (f" vs v{champion_v} (champion)" if champion else "")
             + f" on {es.name}@v{es.version}")
    text = "\n".join([
        title, "",
        format_table(frame), "",
        f"Gates ({gates_path}):",
        report.format(), "",
        *([f"Not applied (retrieval-only evaluation): {', '.join(not_computed)}", ""] if not_computed else []),
        verdict,
    ])
    (report_dir / "report.txt").write_text(text + "\n")
    outcome = GateOutcome(challenger, champion, comparisons, report, promoted, report_dir, text)
    (report_dir / "report.json").write_text(json.dumps(outcome.to_dict(), indent=2, default=str))
    frame.to_csv(report_dir / "comparison.csv", index=False)
    plot_comparison(frame, challenger.summaries, champion.summaries if champion else None,
                    report_dir / "comparison.png", title=title)
    with mlflow.start_run(run_id=challenger.run_id):
        mlflow.log_artifacts(str(report_dir), artifact_path="gate_report")
        mlflow.set_tags({"ragops.gate.status": "passed" if report.passed else "blocked",
                         "ragops.gate.champion_version": champion_v or ""})
    client = mlflow.MlflowClient()
    client.set_model_version_tag(name, challenger_v, "gate_status", "passed" if report.passed else "blocked")
    client.set_model_version_tag(name, challenger_v, "eval_run_id", challenger.run_id)
    log.info("gate report written to %s", report_dir)
    if not report.passed:
        raise GateFailed(outcome)
    return outcome
