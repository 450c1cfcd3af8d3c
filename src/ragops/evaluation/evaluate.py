"""Evaluate a RAG chain on a versioned eval set.

1. **Predict**: retrieve for every question in one batch (ranked doc ids for the retrieval
   metrics, and the passages the chain would use), and — unless retrieval-only — answer every
   question with the chain itself (each answer is an MLflow trace).
2. **Score** through ``mlflow.genai.evaluate`` with the ``@scorer`` scorers of
   :mod:`ragops.evaluation.scorers` (``harness="mlflow"``), or by calling the very same scorers
   in-process (``harness="direct"``, for fast retrieval sweeps: MLflow's harness writes one
   trace per row, about 70 ms each on a sqlite store).
3. **Aggregate** every metric with a bootstrap 95% interval, counting questions where a metric
   did not apply and where it failed — a failure is reported, never averaged in as 0 or NaN.
4. **Record**: aggregates on the MLflow run, the per-question table as a run artifact and in the
   ``eval_results`` Delta table, both carrying the eval set version (and the Delta version it was
   read at), model version, index snapshot and its source Delta version, prompt version and
   chain config hash. :func:`rerun` repeats a past evaluation against exactly those versions.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd

from ragops.config import LLMConfig, Settings, config_hash
from ragops.errors import RagopsError
from ragops.evaluation import metrics as M
from ragops.evaluation.eval_sets import EvalSet, read_eval_set
from ragops.evaluation.scorers import ScorerSpec, build_scorers, canonical_names
from ragops.evaluation.stats import MetricSummary, summarize
from ragops.lakehouse import Lakehouse
from ragops.lakehouse.schemas import utcnow
from ragops.progress import progress

log = logging.getLogger(__name__)

HARNESSES = ("mlflow", "direct")
TAG = "ragops.eval."


class EvaluationError(RagopsError, RuntimeError):
    pass


@dataclass(frozen=True)
class EvalOptions:
    """What an evaluation computes. Its hash is part of the run's tags, so a stored result is
    reused only for the same options."""

    ks: tuple[int, ...] = (5, 10)
    ndcg_k: int = 10
    answers: bool = True
    judge: LLMConfig | None = None
    harness: str = "mlflow"
    n_boot: int = 1000
    limit: int | None = None

    def __post_init__(self) -> None:
        if self.harness not in HARNESSES:
            raise ValueError(f"harness={self.harness!r} is not one of {', '.join(HARNESSES)}")
        if not self.ks or min(self.ks) < 1 or self.ndcg_k < 1:
            raise ValueError("every k must be at least 1")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ks"] = list(self.ks)
        return d

    @property
    def hash(self) -> str:
        """Hash of what changes the numbers (not the harness, which only changes speed)."""
        d = self.to_dict()
        d.pop("harness")
        return config_hash(d)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> EvalOptions:
        d = dict(d)
        if d.get("judge"):
            d["judge"] = LLMConfig(**d["judge"])
        d["ks"] = tuple(d.get("ks") or (5, 10))
        return cls(**d)


@dataclass
class EvalTarget:
    """A chain to evaluate, with where it came from."""

    chain: Any  # ragops.chain.RagChain
    model_uri: str | None = None
    model_version: str | None = None

    @property
    def lineage(self) -> dict[str, Any]:
        return dict(self.chain.lineage)


@dataclass
class EvaluationResult:
    run_id: str
    eval_set: str
    eval_set_version: int
    eval_sets_table_version: int | None
    model_uri: str | None
    model_version: str | None
    lineage: dict[str, Any]
    options: EvalOptions
    summaries: dict[str, MetricSummary]
    per_question: pd.DataFrame  # question_id, question, answer, retrieved_doc_ids, <metric>..., failures
    seconds: dict[str, float] = field(default_factory=dict)
    reused: bool = False

    def metrics(self) -> dict[str, float | None]:
        return {name: s.mean for name, s in self.summaries.items()}

    def scores(self, metric: str) -> dict[str, float | None]:
        """Per-question values of one metric (question_id → value; None = n/a or failed)."""
        if metric not in self.per_question.columns:
            return {}
        col = self.per_question[metric]
        return {q: (None if pd.isna(v) else float(v)) for q, v in zip(self.per_question["question_id"], col,
                                                                          strict=True)}

    def to_dict(self) -> dict[str, Any]:
        """Flat JSON: metric names as keys, then the run id, lineage and interval details."""
        out: dict[str, Any] = {name: (None if v is None else round(v, 4)) for name, v in self.metrics().items()}
        out.update({
            "run_id": self.run_id,
            "model_uri": self.model_uri,
            "model_version": self.model_version,
            "eval_set": self.eval_set,
            "eval_set_version": self.eval_set_version,
            "eval_sets_table_version": self.eval_sets_table_version,
            "questions": int(len(self.per_question)),
            "confidence_intervals": {n: [s.ci_low, s.ci_high] for n, s in self.summaries.items()},
            "failures": {n: s.n_failed for n, s in self.summaries.items() if s.n_failed},
            "lineage": self.lineage,
            "seconds": self.seconds,
            "reused": self.reused,
        })
        return out

    def summary_frame(self) -> pd.DataFrame:
        rows = [{"metric": n, **{k: v for k, v in s.to_dict().items() if k != "name"}}
                for n, s in self.summaries.items()]
        return pd.DataFrame(rows)


# --- targets ---------------------------------------------------------------------------------

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


# --- prediction ------------------------------------------------------------------------------

def _as_list(value: Any) -> list:
    """A list column's cell as a list (Delta gives arrays, None for a missing list)."""
    return [] if value is None else list(value)


def _answerable(row: Mapping[str, Any]) -> bool:
    has = _as_list(row.get("expected_answers")) or _as_list(row.get("expected_doc_ids"))
    return "unanswerable" not in _as_list(row.get("tags")) and bool(has)


def predict(target: EvalTarget, questions: pd.DataFrame, options: EvalOptions) -> pd.DataFrame:
    """One row per question: ranked retrieved doc ids, the passages the chain uses, and the answer."""
    chain = target.chain
    cfg = chain.config
    # Metrics are over distinct documents, and several chunks of one document often rank together:
    # retrieve deep enough that the top k distinct documents are all there (as BEIR evaluations do).
    depth = max(100, max(options.ks), options.ndcg_k)
    texts = questions["question"].tolist()
    started = time.perf_counter()
    batches = chain.searcher.search_batch(texts, k=depth, mode=cfg.search_mode)
    retrieval_s = time.perf_counter() - started
    rows = []
    for (_, q), results in zip(questions.iterrows(), batches, strict=True):
        used = [r for r in results[: cfg.k] if (r.vector_score or 0.0) >= cfg.min_similarity]
        rows.append({"question_id": q["question_id"], "question": q["question"], "answer": None,
                     "retrieved_doc_ids": [r.doc_id for r in results], "contexts": [r.text for r in used],
                     "trace_id": None})
    if options.answers:
        with progress(total=len(rows), desc="answering", unit="q") as bar:
            for row in rows:
                out = chain.invoke(row["question"], include_context=True)
                row.update(answer=out["answer"], contexts=out.get("contexts", row["contexts"]),
                           trace_id=out["trace_id"])
                bar.update(1)
    frame = pd.DataFrame(rows)
    frame.attrs["retrieval_s"] = retrieval_s
    frame.attrs["answer_s"] = time.perf_counter() - started - retrieval_s
    return frame


def _records(questions: pd.DataFrame, predictions: pd.DataFrame) -> list[dict[str, Any]]:
    records = []
    for (_, q), (_, p) in zip(questions.iterrows(), predictions.iterrows(), strict=True):
        records.append({
            "inputs": {"question_id": q["question_id"], "question": q["question"]},
            "outputs": {"answer": p["answer"], "retrieved_doc_ids": list(p["retrieved_doc_ids"]),
                        "contexts": list(p["contexts"])},
            "expectations": {"expected_answers": _as_list(q["expected_answers"]),
                             "expected_doc_ids": _as_list(q["expected_doc_ids"]),
                             "answerable": _answerable(q)},
        })
    return records


# --- scoring ---------------------------------------------------------------------------------

Scores = dict[str, dict[str, tuple[float | None, str | None]]]  # question_id → metric → (value, error)


def _score_direct(records: list[dict[str, Any]], specs: Sequence[ScorerSpec]) -> Scores:
    scores: Scores = {}
    with progress(total=len(records), desc="scoring", unit="q") as bar:
        for r in records:
            merged: dict[str, tuple[float | None, str | None]] = {}
            for spec in specs:
                merged.update(spec.score(r["inputs"], r["outputs"], r["expectations"]))
            scores[r["inputs"]["question_id"]] = merged
            bar.update(1)
    return scores


def _score_mlflow(records: list[dict[str, Any]], specs: Sequence[ScorerSpec], run_id: str) -> Scores:
    import mlflow

    # MLflow's default of 10 scoring threads deadlocks on a sqlite store's connection pool for
    # minutes at a few hundred rows (seen with MLflow 3.17); 2 is as fast here and never stalls.
    os.environ.setdefault("MLFLOW_GENAI_EVAL_MAX_WORKERS", "2")
    names = canonical_names(specs)
    import contextlib
    import sys

    # MLflow prints a banner to stdout; keep stdout for results (``ragops eval --json`` is one JSON line).
    with contextlib.redirect_stdout(sys.stderr):
        mlflow.genai.evaluate(data=pd.DataFrame(records), scorers=[s.as_mlflow_scorer() for s in specs])
    scores: Scores = {}
    for trace in mlflow.search_traces(run_id=run_id, return_type="list"):
        request = trace.data.request
        qid = (json.loads(request) if isinstance(request, str) else request or {}).get("question_id")
        if qid is None:
            continue
        row = scores.setdefault(str(qid), {})
        for a in trace.info.assessments or []:
            canonical = names.get(a.name)
            if canonical is None:  # expectations are logged as assessments too
                continue
            if a.error is not None:
                row[canonical] = (None, a.error.error_message or a.error.error_code)
            else:
                row[canonical] = (None if a.value is None else float(a.value), None)
    missing = [r["inputs"]["question_id"] for r in records if r["inputs"]["question_id"] not in scores]
    if missing:
        raise EvaluationError(f"mlflow.genai.evaluate returned no trace for {len(missing)} questions "
                              f"(first: {missing[:3]}); re-run with harness=direct to score them in-process")
    return scores


def aggregate(per_question: pd.DataFrame, metric_names: Sequence[str], failures: Mapping[str, int],
              n_boot: int) -> dict[str, MetricSummary]:
    out = {}
    errors = per_question["failures"] if "failures" in per_question else [{}] * len(per_question)
    for name in metric_names:
        values = []
        if name in per_question:  # a failed question is neither a score nor "not applicable"
            values = [None if pd.isna(v) else float(v)
                      for v, err in zip(per_question[name], errors, strict=True) if name not in (err or {})]
        out[name] = summarize(name, values, n_failed=int(failures.get(name, 0)), n_boot=n_boot)
    return out


def _per_question(predictions: pd.DataFrame, scores: Scores, metric_names: Sequence[str]) -> tuple[
        pd.DataFrame, dict[str, int]]:
    frame = predictions.copy()
    failures: dict[str, int] = {}
    errors_col = []
    for name in metric_names:
        frame[name] = [scores[q].get(name, (None, None))[0] for q in frame["question_id"]]
    for q in frame["question_id"]:
        errs = {n: e for n, (_, e) in scores[q].items() if e is not None}
        for n in errs:
            failures[n] = failures.get(n, 0) + 1
        errors_col.append(errs)
    frame["failures"] = errors_col
    return frame, failures


# --- the whole evaluation --------------------------------------------------------------------

def evaluate(settings: Settings, lh: Lakehouse, target: EvalTarget, eval_set: str | EvalSet = "sample", *,
             options: EvalOptions | None = None, run_name: str | None = None,
             extra_tags: Mapping[str, str] | None = None, extra_params: Mapping[str, Any] | None = None,
             nested: bool = False) -> EvaluationResult:
    """Evaluate ``target`` on an eval set (a name → its latest version, or an :class:`EvalSet`)."""
    import mlflow

    from ragops.tracking import configure_mlflow

    options = options or EvalOptions()
    es = eval_set if isinstance(eval_set, EvalSet) else read_eval_set(lh, eval_set)
    questions = es.frame.sort_values("question_id").reset_index(drop=True)
    if options.limit:
        questions = questions.head(options.limit)
    if questions.empty:
        raise EvaluationError(f"eval set {es.name!r} version {es.version} has no questions")
    configure_mlflow(settings)
    embed = target.chain.searcher.embedder.encode
    judge = _judge(settings, options.judge) if options.judge else None
    specs = build_scorers(ks=options.ks, ndcg_k=options.ndcg_k, answers=options.answers, embed=embed, judge=judge)
    metric_names = list(canonical_names(specs).values())
    lineage = target.lineage
    tags = {
        f"{TAG}eval_set": es.name, f"{TAG}eval_set_version": str(es.version),
        f"{TAG}eval_sets_table_version": str(es.table_version), f"{TAG}options_hash": options.hash,
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
            "eval_options": json.dumps(options.to_dict(), default=str), "eval_options_hash": options.hash,
            **dict(extra_params or {}),
        })
        mlflow.log_dict(target.chain.searcher.manifest.to_dict(), "index_manifest.json")
        predictions = predict(target, questions, options)
        t_pred = time.perf_counter()
        records = _records(questions, predictions)
        if options.harness == "mlflow":
            scores = _score_mlflow(records, specs, run.info.run_id)
        else:
            scores = _score_direct(records, specs)
        t_score = time.perf_counter()
        per_question, failures = _per_question(predictions, scores, metric_names)
        summaries = aggregate(per_question, metric_names, failures, options.n_boot)
        seconds = {"retrieval": round(predictions.attrs.get("retrieval_s", 0.0), 3),
                   "answers": round(predictions.attrs.get("answer_s", 0.0), 3),
                   "scoring": round(t_score - t_pred, 3)}
        result = EvaluationResult(
            run_id=run.info.run_id, eval_set=es.name, eval_set_version=es.version,
            eval_sets_table_version=es.table_version, model_uri=target.model_uri,
            model_version=target.model_version, lineage=lineage, options=options, summaries=summaries,
            per_question=per_question, seconds=seconds)
        _log_to_mlflow(result, judge)
        _write_results(lh, result)
        result.seconds["total"] = round(time.perf_counter() - t0, 3)
        mlflow.log_metric("eval_seconds", result.seconds["total"])
    _log_summary(result)
    return result


def _judge(settings: Settings, config: LLMConfig):
    from ragops.evaluation.judges import Judge
    from ragops.llm import get_chat_model, llm_identity

    return Judge(get_chat_model(config), identity=llm_identity(config), cache_dir=settings.root / "judge_cache")


def _log_to_mlflow(result: EvaluationResult, judge) -> None:
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


def _write_results(lh: Lakehouse, result: EvaluationResult) -> None:
    lh.ensure_table("eval_results")
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
    lh.upsert("eval_results", frame)


def _log_summary(result: EvaluationResult) -> None:
    shown = ", ".join(f"{n}={s.mean:.3f}" for n, s in result.summaries.items() if s.mean is not None)
    failed = sum(s.n_failed for s in result.summaries.values())
    log.info("evaluated %s on %s@v%s (%d questions) in %.1fs: %s%s", result.model_uri or "chain", result.eval_set,
             result.eval_set_version, len(result.per_question), result.seconds.get("total", 0.0), shown,
             f"; {failed} metric failures (not averaged in)" if failed else "")


# --- stored results --------------------------------------------------------------------------

def _get_run(settings: Settings, run_id: str):
    from ragops.tracking import configure_mlflow

    client = configure_mlflow(settings)
    try:
        return client.get_run(run_id)
    except Exception as exc:
        raise EvaluationError(f"no MLflow run {run_id!r} in {settings.tracking_uri}; "
                              "`ragops eval --json` prints the run id of each evaluation") from exc


def _table_version(tags: Mapping[str, str]) -> int | None:
    """The eval_sets Delta version an evaluation run recorded (its time-travel point)."""
    tv = tags.get(f"{TAG}eval_sets_table_version")
    return int(tv) if tv not in (None, "", "None") else None


def load_result(settings: Settings, lh: Lakehouse, run_id: str) -> EvaluationResult:
    """Rebuild a stored evaluation from its MLflow run and its ``eval_results`` rows."""
    run = _get_run(settings, run_id)
    tags, params = run.data.tags, run.data.params
    options = EvalOptions.from_dict(json.loads(params["eval_options"]))
    rows = lh.read("eval_results", where={"run_id": [run_id]}).sort_values("question_id").reset_index(drop=True)
    if rows.empty:
        raise EvaluationError(f"no eval_results rows for run {run_id}")
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
        eval_sets_table_version=_table_version(tags),
        model_uri=tags.get(f"{TAG}model_uri") or None, model_version=tags.get(f"{TAG}model_version") or None,
        lineage=lineage, options=options, summaries=aggregate(frame, names, failures, options.n_boot),
        per_question=frame, reused=True)


def find_result(settings: Settings, lh: Lakehouse, *, model_version: str, eval_set: EvalSet,
                options: EvalOptions) -> EvaluationResult | None:
    """A finished evaluation of this model version on this eval set version with these options."""
    from ragops.tracking import configure_mlflow, experiment_name

    client = configure_mlflow(settings)
    exp = client.get_experiment_by_name(experiment_name(settings))
    if exp is None:
        return None
    query = (f"tags.`{TAG}model_version` = '{model_version}' and tags.`{TAG}eval_set` = '{eval_set.name}' "
             f"and tags.`{TAG}eval_set_version` = '{eval_set.version}' "
             f"and tags.`{TAG}options_hash` = '{options.hash}' and attributes.status = 'FINISHED'")
    runs = client.search_runs([exp.experiment_id], query, order_by=["attributes.start_time DESC"], max_results=1)
    if not runs:
        return None
    try:
        result = load_result(settings, lh, runs[0].info.run_id)
    except Exception as exc:  # a run whose rows were lost: evaluate again
        log.warning("cannot reuse evaluation run %s (%s); evaluating again", runs[0].info.run_id, exc)
        return None
    log.info("reusing evaluation run %s of version %s on %s@v%s", result.run_id, model_version, eval_set.name,
             eval_set.version)
    return result


def evaluate_model(settings: Settings, lh: Lakehouse, model_uri: str, eval_set: str | EvalSet = "sample", *,
                   options: EvalOptions | None = None, reuse: bool = False,
                   extra_tags: Mapping[str, str] | None = None) -> EvaluationResult:
    """Evaluate a registered model (``models:/name@alias`` or ``models:/name/N``)."""
    options = options or EvalOptions()
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
    from dataclasses import replace

    run = _get_run(settings, run_id)
    tags = run.data.tags
    if tags.get("ragops.kind") != "evaluation":
        raise EvaluationError(f"run {run_id} is not an evaluation run")
    options = EvalOptions.from_dict(json.loads(run.data.params["eval_options"]))
    if harness:
        options = replace(options, harness=harness)
    es = read_eval_set(lh, tags[f"{TAG}eval_set"], int(tags[f"{TAG}eval_set_version"]),
                       table_version=_table_version(tags))
    model_uri = tags.get(f"{TAG}model_uri")
    if not model_uri:
        raise EvaluationError(f"run {run_id} evaluated an unregistered chain; only model evaluations re-run")
    return evaluate(settings, lh, load_target(settings, model_uri), es, options=options,
                    extra_tags={f"{TAG}rerun_of": run_id})


def options_from(cfg: Any, **overrides: Any) -> EvalOptions:
    """:class:`EvalOptions` from the target's :class:`ragops.config.EvaluationConfig`."""
    from dataclasses import replace

    options = EvalOptions(ks=tuple(cfg.ks), ndcg_k=cfg.ndcg_k, answers=cfg.answers, judge=cfg.judge(),
                          harness=cfg.harness, limit=cfg.limit or None)
    return replace(options, **overrides) if overrides else options
