"""Running an evaluation's questions: predict, then score with one of two harnesses.

1. **Predict** (:func:`predict`): retrieve for every question in one batch (ranked doc ids for the
   retrieval metrics, and the passages the chain would use), and — unless retrieval-only — answer
   every question with the chain itself (each answer is an MLflow trace).
2. **Score** through ``mlflow.genai.evaluate`` with the ``@scorer`` scorers of
   :mod:`ragops.evaluation.scorers` (``harness="mlflow"``), or by calling the very same scorers
   in-process (``harness="direct"``, for fast retrieval sweeps: MLflow's harness writes one trace
   per row, about 70 ms each on a sqlite store).
3. **Aggregate** every metric with a bootstrap 95% interval, counting questions where a metric did
   not apply and where it failed — a failure is reported, never averaged in as 0 or NaN.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any

import pandas as pd

from ragops.config import EvaluationConfig
from ragops.evaluation.entities import EvalTarget, EvaluationError
from ragops.evaluation.scorers import ScorerSpec, canonical_names
from ragops.evaluation.stats import MetricSummary, summarize
from ragops.progress import progress

#: question_id → metric → (value, error message or None)
Scores = dict[str, dict[str, tuple[float | None, str | None]]]


def as_list(value: Any) -> list:
    """A list column's cell as a list (Delta gives arrays, None for a missing list)."""
    return [] if value is None else list(value)


def answerable(row: Mapping[str, Any]) -> bool:
    has = as_list(row.get("expected_answers")) or as_list(row.get("expected_doc_ids"))
    return "unanswerable" not in as_list(row.get("tags")) and bool(has)


def predict(target: EvalTarget, questions: pd.DataFrame, options: EvaluationConfig) -> pd.DataFrame:
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
        parallel = answer_parallelism(chain, options.parallel, len(rows))

        def answer(row: dict[str, Any]) -> None:
            out = chain.invoke(row["question"], include_context=True)
            row.update(answer=out["answer"], contexts=out.get("contexts", row["contexts"]), trace_id=out["trace_id"])

        with progress(total=len(rows), desc="answering", unit="q") as bar:
            if parallel == 1:
                for row in rows:
                    answer(row)
                    bar.update(1)
            else:
                with ThreadPoolExecutor(parallel, thread_name_prefix="answer") as pool:
                    for done in as_completed([pool.submit(answer, row) for row in rows]):
                        done.result()  # re-raise a failed answer here, as the sequential loop would
                        bar.update(1)
        frame_attrs = {"answer_parallel": parallel}
    else:
        frame_attrs = {}
    frame = pd.DataFrame(rows)
    frame.attrs.update(frame_attrs)
    frame.attrs["retrieval_s"] = retrieval_s
    frame.attrs["answer_s"] = time.perf_counter() - started - retrieval_s
    return frame


def answer_parallelism(chain, requested: int, n_questions: int) -> int:
    """How many questions to answer at once, and set the chain's LLM up for it.

    Only the llama.cpp backend answers several at once: it gets a pool of that many contexts, each
    on ``cores // n`` threads (:class:`ragops.llm.llamacpp.ContextPool`); greedy answers do not
    depend on it. On 2 cores two single-threaded contexts finish the sample eval set's answers
    about 1.4x sooner than one context on both cores (BENCHMARKS.md section 9). Other backends
    (transformers holds one model and a lock; remote endpoints have their own limits) stay at 1.
    """
    from ragops.cpu import available_cores
    from ragops.llm.llamacpp import LlamaCppChatModel

    if not isinstance(chain.llm, LlamaCppChatModel):
        return 1
    n = requested or min(available_cores(), 8)
    n = max(1, min(n, n_questions))
    if n > 1:
        chain.llm.n_parallel = n
    return n


def records(questions: pd.DataFrame, predictions: pd.DataFrame) -> list[dict[str, Any]]:
    """The rows a scorer sees: ``inputs``, ``outputs`` and ``expectations``, as MLflow names them."""
    out = []
    for (_, q), (_, p) in zip(questions.iterrows(), predictions.iterrows(), strict=True):
        out.append({
            "inputs": {"question_id": q["question_id"], "question": q["question"]},
            "outputs": {"answer": p["answer"], "retrieved_doc_ids": list(p["retrieved_doc_ids"]),
                        "contexts": list(p["contexts"])},
            "expectations": {"expected_answers": as_list(q["expected_answers"]),
                             "expected_doc_ids": as_list(q["expected_doc_ids"]),
                             "answerable": answerable(q)},
        })
    return out


def score_direct(rows: list[dict[str, Any]], specs: Sequence[ScorerSpec], run_id: str | None = None) -> Scores:
    """The scorers called in-process, one row after the other (no traces)."""
    scores: Scores = {}
    with progress(total=len(rows), desc="scoring", unit="q") as bar:
        for r in rows:
            merged: dict[str, tuple[float | None, str | None]] = {}
            for spec in specs:
                merged.update(spec.score(r["inputs"], r["outputs"], r["expectations"]))
            scores[r["inputs"]["question_id"]] = merged
            bar.update(1)
    return scores


def score_mlflow(rows: list[dict[str, Any]], specs: Sequence[ScorerSpec], run_id: str | None = None) -> Scores:
    """``mlflow.genai.evaluate`` in the active run; the scores read back from its traces."""
    import mlflow

    # MLflow's default of 10 scoring threads deadlocks on a sqlite store's connection pool for
    # minutes at a few hundred rows (seen with MLflow 3.17); 2 is as fast here and never stalls.
    os.environ.setdefault("MLFLOW_GENAI_EVAL_MAX_WORKERS", "2")
    names = canonical_names(specs)
    # MLflow prints a banner to stdout; keep stdout for results (``ragops eval --json`` is one JSON line).
    with contextlib.redirect_stdout(sys.stderr):
        mlflow.genai.evaluate(data=pd.DataFrame(rows), scorers=[s.as_mlflow_scorer() for s in specs])
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
    missing = [r["inputs"]["question_id"] for r in rows if r["inputs"]["question_id"] not in scores]
    if missing:
        raise EvaluationError(f"mlflow.genai.evaluate returned no trace for {len(missing)} questions "
                              f"(first: {missing[:3]}); re-run with harness=direct to score them in-process")
    return scores


#: The harnesses by name (the ``eval_harness`` setting, which EvaluationConfig checks against these names).
HARNESSES = {"mlflow": score_mlflow, "direct": score_direct}
assert tuple(HARNESSES) == EvaluationConfig.HARNESSES, "a harness is missing from EvaluationConfig.HARNESSES"


def score(harness: str, rows: list[dict[str, Any]], specs: Sequence[ScorerSpec], run_id: str) -> Scores:
    """Score with the named harness (a name EvaluationConfig has already validated)."""
    return HARNESSES[harness](rows, specs, run_id)


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


def per_question_frame(predictions: pd.DataFrame, scores: Scores,
                       metric_names: Sequence[str]) -> tuple[pd.DataFrame, dict[str, int]]:
    """The predictions with one column per metric and a ``failures`` column; failures per metric."""
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
