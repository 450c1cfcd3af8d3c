"""Where an evaluation is recorded, and how a recorded one is read back.

Aggregates go on the MLflow run (MLflow-safe names, with interval bounds, counts and failures),
the per-question table is a run artifact and rows of the ``eval_results`` Delta table, both
carrying the eval set version (and the Delta version it was read at), model version, index
snapshot and its source Delta version, prompt version and chain config hash.
:func:`load_result` rebuilds an :class:`EvaluationResult` from those; :func:`find_result` finds
a finished evaluation of the same model version, eval set version and options to reuse.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

import pandas as pd

from ragops.config import EvaluationConfig, Settings
from ragops.evaluation import metrics as M
from ragops.evaluation.entities import (
    TAG,
    EvaluationError,
    EvaluationResult,
    options_from_record,
    options_hash,
)
from ragops.evaluation.eval_sets import EvalSet, EvalSetError
from ragops.evaluation.harness import aggregate
from ragops.lakehouse import Lakehouse
from ragops.lakehouse.schemas import utcnow

log = logging.getLogger(__name__)

TABLE = "eval_results"


def log_to_mlflow(result: EvaluationResult, judge: Any = None) -> None:
    """Aggregates, the per-question table and the summary on the active MLflow run."""
    import mlflow

    metrics: dict[str, float] = {}
    for name, s in result.summaries.items():
        key = M.mlflow_name(name)
        if s.mean is not None:
            metrics[key] = s.mean
            metrics[f"{key}_ci_low"] = s.ci_low
            metrics[f"{key}_ci_high"] = s.ci_high
        metrics[f"{key}_n"] = s.n
        if s.n_failed:
            metrics[f"{key}_failed"] = s.n_failed
    metrics["scoring_failures"] = sum(s.n_failed for s in result.summaries.values())
    if judge is not None:
        metrics.update(judge_calls=judge.calls, judge_cache_hits=judge.cache_hits, judge_failures=judge.failures)
    mlflow.log_metrics(metrics)
    table = result.per_question.copy()
    table["failures"] = table["failures"].map(lambda d: json.dumps(d) if d else "")
    mlflow.log_table(table.drop(columns=["contexts"]), "eval_results.json")
    mlflow.log_dict({n: s.to_dict() for n, s in result.summaries.items()}, "eval_summary.json")


def write_results(lh: Lakehouse, result: EvaluationResult) -> None:
    """One ``eval_results`` row per question, with the versions it was scored against."""
    lh.ensure_table(TABLE)
    now = utcnow()
    metric_names = list(result.summaries)
    src_version = result.lineage.get("index_source_version")
    rows = []
    for _, r in result.per_question.iterrows():
        rows.append({
            "run_id": result.run_id, "question_id": str(r["question_id"]), "eval_set": result.eval_set,
            "eval_set_version": int(result.eval_set_version),
            "eval_sets_table_version": None if result.eval_sets_table_version is None
            else int(result.eval_sets_table_version),
            "model_uri": result.model_uri, "model_version": result.model_version,
            "index_snapshot": result.lineage.get("index_snapshot"),
            "index_source_version": None if src_version in (None, "") else int(src_version),
            "prompt_version": None if result.lineage.get("prompt_version") is None
            else str(result.lineage.get("prompt_version")),
            "chain_config_hash": result.lineage.get("chain_config_hash"),
            "question": r["question"], "answer": r["answer"], "retrieved_doc_ids": list(r["retrieved_doc_ids"]),
            "scores": json.dumps({m: (None if pd.isna(r[m]) else float(r[m])) for m in metric_names}),
            "failures": json.dumps(r["failures"]), "trace_id": r["trace_id"], "created_at": now,
        })
    frame = pd.DataFrame(rows)
    frame["eval_sets_table_version"] = frame["eval_sets_table_version"].astype("Int64")
    frame["index_source_version"] = frame["index_source_version"].astype("Int64")
    lh.upsert(TABLE, frame)


def get_run(settings: Settings, run_id: str):
    from mlflow.exceptions import MlflowException

    from ragops.tracking import configure_mlflow

    client = configure_mlflow(settings)
    try:
        return client.get_run(run_id)
    except MlflowException as exc:
        raise EvaluationError(f"no MLflow run {run_id!r} in {settings.tracking_uri}; "
                              "`ragops eval --json` prints the run id of each evaluation") from exc


def table_version(tags: Mapping[str, str]) -> int | None:
    """The eval_sets Delta version an evaluation run recorded (its time-travel point)."""
    tv = tags.get(f"{TAG}eval_sets_table_version")
    return int(tv) if tv not in (None, "", "None") else None


def run_options(run) -> EvaluationConfig:
    """The options an evaluation run was made with (its ``eval_options`` param)."""
    return options_from_record(json.loads(run.data.params["eval_options"]))


def load_result(settings: Settings, lh: Lakehouse, run_id: str) -> EvaluationResult:
    """Rebuild a stored evaluation from its MLflow run and its ``eval_results`` rows."""
    from ragops.evaluation.entities import N_BOOT

    run = get_run(settings, run_id)
    tags = run.data.tags
    options = run_options(run)
    rows = lh.read(TABLE, where={"run_id": [run_id]}).sort_values("question_id").reset_index(drop=True)
    if rows.empty:
        raise EvaluationError(f"no {TABLE} rows for run {run_id}")
    scores = [json.loads(s) for s in rows["scores"]]
    names = list(scores[0])
    frame = rows[["question_id", "question", "answer", "retrieved_doc_ids", "trace_id"]].copy()
    for n in names:
        frame[n] = [s.get(n) for s in scores]
    frame["failures"] = [json.loads(f) if f else {} for f in rows["failures"]]
    failures: dict[str, int] = {}
    for errs in frame["failures"]:
        for n in errs:
            failures[n] = failures.get(n, 0) + 1
    lineage = {k[len("ragops."):]: v for k, v in tags.items()
               if k.startswith("ragops.") and not k.startswith(TAG) and k != "ragops.kind"}
    return EvaluationResult(
        run_id=run_id, eval_set=tags[f"{TAG}eval_set"], eval_set_version=int(tags[f"{TAG}eval_set_version"]),
        eval_sets_table_version=table_version(tags),
        model_uri=tags.get(f"{TAG}model_uri") or None, model_version=tags.get(f"{TAG}model_version") or None,
        lineage=lineage, options=options, summaries=aggregate(frame, names, failures, N_BOOT),
        per_question=frame, reused=True)


def find_result(settings: Settings, lh: Lakehouse, *, model_version: str, eval_set: EvalSet,
                options: EvaluationConfig) -> EvaluationResult | None:
    """A finished evaluation of this model version on this eval set version with these options."""
    from ragops.lakehouse.base import LakehouseError
    from ragops.tracking import configure_mlflow, experiment_name

    client = configure_mlflow(settings)
    exp = client.get_experiment_by_name(experiment_name(settings))
    if exp is None:
        return None
    query = (f"tags.`{TAG}model_version` = '{model_version}' and tags.`{TAG}eval_set` = '{eval_set.name}' "
             f"and tags.`{TAG}eval_set_version` = '{eval_set.version}' "
             f"and tags.`{TAG}options_hash` = '{options_hash(options)}' and attributes.status = 'FINISHED'")
    runs = client.search_runs([exp.experiment_id], query, order_by=["attributes.start_time DESC"], max_results=1)
    if not runs:
        return None
    try:
        result = load_result(settings, lh, runs[0].info.run_id)
    except (EvaluationError, EvalSetError, LakehouseError, KeyError) as exc:  # rows lost: evaluate again
        log.warning("cannot reuse evaluation run %s (%s); evaluating again", runs[0].info.run_id, exc)
        return None
    log.info("reusing evaluation run %s of version %s on %s@v%s", result.run_id, model_version, eval_set.name,
             eval_set.version)
    return result


def log_summary(result: EvaluationResult) -> None:
    shown = ", ".join(f"{n}={s.mean:.3f}" for n, s in result.summaries.items() if s.mean is not None)
    failed = sum(s.n_failed for s in result.summaries.values())
    log.info("evaluated %s on %s@v%s (%d questions) in %.1fs: %s%s", result.model_uri or "chain", result.eval_set,
             result.eval_set_version, len(result.per_question), result.seconds.get("total", 0.0), shown,
             f"; {failed} metric failures (not averaged in)" if failed else "")
