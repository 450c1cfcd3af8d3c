"""Evaluate a RAG chain on a versioned eval set: the public entry points.

:func:`evaluate` checks that the eval set asks about the documents in the index
(:mod:`.coverage`), then predicts and scores through a harness (:mod:`.harness`), aggregates
with bootstrap intervals and records the result (:mod:`.results`). :func:`evaluate_model` does it
for a registered model version (reusing a finished evaluation when asked), :func:`rerun` repeats a
past evaluation against exactly the versions it recorded. What an evaluation computes is the
target's :class:`ragops.config.EvaluationConfig` (``dataclasses.replace`` it to override).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from ragops.config import EvaluationConfig, LLMConfig, Settings
from ragops.evaluation.coverage import check_coverage
from ragops.evaluation.entities import (
    N_BOOT,
    TAG,
    EvalTarget,
    EvaluationError,
    EvaluationResult,
    options_hash,
    options_record,
)
from ragops.evaluation.eval_sets import EvalSet, read_eval_set
from ragops.evaluation.harness import aggregate, per_question_frame, predict, records, score
from ragops.evaluation.results import (
    find_result,
    get_run,
    log_summary,
    log_to_mlflow,
    run_options,
    table_version,
    write_results,
)
from ragops.evaluation.scorers import build_scorers, canonical_names
from ragops.lakehouse import Lakehouse

log = logging.getLogger(__name__)


def resolve_model_version(settings: Settings, model_uri: str) -> tuple[str, str]:
    """``models:/name@alias`` or ``models:/name/3`` → (pinned ``models:/name/3``, "3")."""
    from ragops.models.registry import resolve_model_uri

    pinned, version = resolve_model_uri(settings, model_uri)
    if version is None and "@" in model_uri:
        name, alias = model_uri[len("models:/"):].split("@", 1)
        raise EvaluationError(f"{model_uri}: no version of {name!r} has the alias {alias!r}")
    return pinned, version or ""


def load_target(settings: Settings, model_uri: str) -> EvalTarget:
    """Load a registered chain (pinned to a version, so an alias moving mid-run changes nothing)."""
    import mlflow

    pinned, version = resolve_model_version(settings, model_uri)
    log.info("loading %s (%s)", pinned, model_uri)
    model = mlflow.pyfunc.load_model(pinned)
    chain = model.unwrap_python_model().chain
    return EvalTarget(chain=chain, model_uri=pinned, model_version=version or None)


def _judge(settings: Settings, config: LLMConfig):
    from ragops.evaluation.judges import Judge
    from ragops.llm import get_chat_model, llm_identity

    return Judge(get_chat_model(config), identity=llm_identity(config), cache_dir=settings.root / "judge_cache")


def evaluate(settings: Settings, lh: Lakehouse, target: EvalTarget, eval_set: str | EvalSet = "sample", *,
             options: EvaluationConfig | None = None, run_name: str | None = None,
             extra_tags: Mapping[str, str] | None = None, extra_params: Mapping[str, Any] | None = None,
             nested: bool = False) -> EvaluationResult:
    """Evaluate ``target`` on an eval set (a name → its latest version, or an :class:`EvalSet`).

    Raises :class:`~ragops.evaluation.coverage.EvalSetMismatch` before any LLM call or MLflow run
    when the eval set asks about documents the target's index does not hold.
    """
    import mlflow

    from ragops.tracking import configure_mlflow

    options = options or EvaluationConfig()
    es = eval_set if isinstance(eval_set, EvalSet) else read_eval_set(lh, eval_set)
    questions = es.frame.sort_values("question_id").reset_index(drop=True)
    if options.limit:
        questions = questions.head(options.limit)
    if questions.empty:
        raise EvaluationError(f"eval set {es.name!r} version {es.version} has no questions")
    check_coverage(es, questions, target)
    configure_mlflow(settings)
    embed = target.chain.searcher.embedder.encode
    judge_config = options.judge()
    judge = _judge(settings, judge_config) if judge_config else None
    specs = build_scorers(ks=options.ks, ndcg_k=options.ndcg_k, answers=options.answers, embed=embed, judge=judge)
    metric_names = list(canonical_names(specs).values())
    lineage = target.lineage
    digest = options_hash(options)
    tags = {
        f"{TAG}eval_set": es.name, f"{TAG}eval_set_version": str(es.version),
        f"{TAG}eval_sets_table_version": str(es.table_version), f"{TAG}options_hash": digest,
        f"{TAG}model_uri": target.model_uri or "", f"{TAG}model_version": target.model_version or "",
        f"{TAG}harness": options.harness, "ragops.kind": "evaluation",
        **{f"ragops.{k}": str(v) for k, v in lineage.items()},
        **dict(extra_tags or {}),
    }
    t0 = time.perf_counter()
    name = run_name or f"eval {target.model_uri or 'chain'} on {es.name}@v{es.version}"
    with mlflow.start_run(run_name=name, nested=nested) as run:
        mlflow.set_tags(tags)
        mlflow.log_params({
            "eval_set": es.name, "eval_set_version": es.version, "eval_sets_table_version": es.table_version,
            "questions": len(questions), "model_uri": target.model_uri, "model_version": target.model_version,
            "search_mode": target.chain.config.search_mode, "k": target.chain.config.k,
            "prompt_version": lineage.get("prompt_version"), "index_snapshot": lineage.get("index_snapshot"),
            "index_source_version": lineage.get("index_source_version"),
            "chain_config_hash": lineage.get("chain_config_hash"),
            "eval_options": json.dumps(options_record(options), default=str), "eval_options_hash": digest,
            **dict(extra_params or {}),
        })
        mlflow.log_dict(target.chain.searcher.manifest.to_dict(), "index_manifest.json")
        predictions = predict(target, questions, options)
        t_pred = time.perf_counter()
        scores = score(options.harness, records(questions, predictions), specs, run.info.run_id)
        t_score = time.perf_counter()
        per_question, failures = per_question_frame(predictions, scores, metric_names)
        summaries = aggregate(per_question, metric_names, failures, N_BOOT)
        seconds = {"retrieval": round(predictions.attrs.get("retrieval_s", 0.0), 3),
                   "answers": round(predictions.attrs.get("answer_s", 0.0), 3),
                   "scoring": round(t_score - t_pred, 3)}
        result = EvaluationResult(
            run_id=run.info.run_id, eval_set=es.name, eval_set_version=es.version,
            eval_sets_table_version=es.table_version, model_uri=target.model_uri,
            model_version=target.model_version, lineage=lineage, options=options, summaries=summaries,
            per_question=per_question, seconds=seconds)
        log_to_mlflow(result, judge)
        write_results(lh, result)
        result.seconds["total"] = round(time.perf_counter() - t0, 3)
        mlflow.log_metric("eval_seconds", result.seconds["total"])
    log_summary(result)
    return result


def evaluate_model(settings: Settings, lh: Lakehouse, model_uri: str, eval_set: str | EvalSet = "sample", *,
                   options: EvaluationConfig | None = None, reuse: bool = False,
                   extra_tags: Mapping[str, str] | None = None) -> EvaluationResult:
    """Evaluate a registered model (``models:/name@alias`` or ``models:/name/N``)."""
    options = options or EvaluationConfig()
    es = eval_set if isinstance(eval_set, EvalSet) else read_eval_set(lh, eval_set)
    if reuse:
        _, version = resolve_model_version(settings, model_uri)
        found = find_result(settings, lh, model_version=version, eval_set=es, options=options)
        if found is not None:
            return found
    return evaluate(settings, lh, load_target(settings, model_uri), es, options=options, extra_tags=extra_tags)


def rerun(settings: Settings, lh: Lakehouse, run_id: str, *, harness: str | None = None) -> EvaluationResult:
    """Evaluate again exactly as ``run_id`` did: the same model version, the same eval set version read
    at the same Delta table version (time travel), the same options."""
    run = get_run(settings, run_id)
    tags = run.data.tags
    if tags.get("ragops.kind") != "evaluation":
        raise EvaluationError(f"run {run_id} is not an evaluation run")
    options = run_options(run)
    if harness:
        options = replace(options, harness=harness)
    es = read_eval_set(lh, tags[f"{TAG}eval_set"], int(tags[f"{TAG}eval_set_version"]),
                       table_version=table_version(tags))
    model_uri = tags.get(f"{TAG}model_uri")
    if not model_uri:
        raise EvaluationError(f"run {run_id} evaluated an unregistered chain; only model evaluations re-run")
    return evaluate(settings, lh, load_target(settings, model_uri), es, options=options,
                    extra_tags={f"{TAG}rerun_of": run_id})
