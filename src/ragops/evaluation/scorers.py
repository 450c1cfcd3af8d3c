"""The metrics as MLflow ``@scorer`` scorers, grouped by what they need.

A scorer receives one evaluation row — ``inputs`` (question_id, question), ``outputs`` (answer,
retrieved_doc_ids, contexts) and ``expectations`` (expected_answers, expected_doc_ids,
answerable) — and returns one :class:`mlflow.entities.Feedback` per metric. Each metric is
computed in its own ``try`` so one failing metric (a judge that times out) records an error for
that metric only; the evaluator counts errors as failures and never averages them in. A value of
``None`` means "not applicable to this question" (no expected documents, say).

Feedback names are MLflow-safe (``recall_at_5``); :func:`canonical_names` maps them back to the
canonical names (``recall@5``) used everywhere else.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ragops.evaluation import metrics as M

log = logging.getLogger(__name__)

MetricFns = dict[str, Callable[[Mapping[str, Any], Mapping[str, Any], Mapping[str, Any]], float | None]]


@dataclass(frozen=True)
class ScorerSpec:
    """One scorer: a name and the metrics it computes (canonical name → function of a row)."""

    name: str
    metrics: MetricFns

    def score(self, inputs: Mapping[str, Any], outputs: Mapping[str, Any],
              expectations: Mapping[str, Any]) -> dict[str, tuple[float | None, str | None]]:
        """Canonical metric name → (value, error message or None)."""
        out: dict[str, tuple[float | None, str | None]] = {}
        for name, fn in self.metrics.items():
            try:
                value = fn(inputs, outputs, expectations)
                if value is not None:
                    value = float(value)
                    if value != value:  # NaN: a metric bug, not a score
                        raise ValueError(f"metric {name} returned NaN")
                out[name] = (value, None)
            except Exception as exc:  # recorded per metric; counted as a failure, never as 0
                out[name] = (None, f"{type(exc).__name__}: {exc}"[:500])
        return out

    def as_mlflow_scorer(self):
        from mlflow.entities import AssessmentError, Feedback
        from mlflow.genai.scorers import scorer

        def fn(inputs, outputs, expectations):
            feedbacks = []
            for name, (value, error) in self.score(inputs, outputs, expectations or {}).items():
                if error is not None:
                    feedbacks.append(Feedback(name=M.mlflow_name(name),
                                              error=AssessmentError(error_code="METRIC_ERROR", error_message=error)))
                else:
                    feedbacks.append(Feedback(name=M.mlflow_name(name), value=value))
            return feedbacks

        return scorer(name=self.name)(fn)


def metric_scorer(kind: str, *, ks: Sequence[int], ndcg_k: int, answers: bool = True,
                  embed: Callable[[list[str]], Any] | None = None) -> ScorerSpec:
    """The declared metrics of one kind (:data:`ragops.evaluation.metrics.METRICS`), wired from
    their declarations: a metric that needs the answer is left out without answers, one that needs
    ``embed`` without an embedder; ``cutoff="ks"`` metrics come once per k (in k order), then the rest."""
    chosen = [m for m in M.METRICS.values() if m.kind == kind
              and (answers or "answer" not in m.needs) and (embed is not None or "embed" not in m.needs)]
    fns: MetricFns = {}
    for k in ks:
        for m in chosen:
            if m.cutoff == "ks":
                fns[M.metric_name(m.name, k)] = m.bind(k, embed=embed)
    for m in chosen:
        if m.cutoff == "ndcg_k":
            fns[M.metric_name(m.name, ndcg_k)] = m.bind(ndcg_k, embed=embed)
        elif not m.cutoff:
            fns[m.name] = m.bind(embed=embed)
    return ScorerSpec(kind, fns)


def _answer(outputs: Mapping[str, Any]) -> str:
    return outputs.get("answer") or ""


def judge_scorer(judge, answers: bool = True) -> ScorerSpec:
    """LLM-as-judge versions (``judge_*``), used when a judge model is configured."""
    fns: MetricFns = {
        "judge_context_relevance": lambda i, o, e: judge.judge_context_relevance(
            i["question"], list(o.get("contexts") or [])).score,
    }
    if answers:
        fns["judge_groundedness"] = lambda i, o, e: judge.judge_groundedness(
            _answer(o), list(o.get("contexts") or [])).score
        fns["judge_answer_relevance"] = lambda i, o, e: judge.judge_answer_relevance(i["question"], _answer(o)).score
    return ScorerSpec("judge", fns)


def build_scorers(*, ks: Sequence[int], ndcg_k: int, answers: bool, embed=None, judge=None) -> list[ScorerSpec]:
    """One scorer per metric kind that has metrics to compute, then the judge's."""
    specs = [metric_scorer(kind, ks=ks, ndcg_k=ndcg_k, answers=answers, embed=embed) for kind in M.KINDS]
    specs = [s for s in specs if s.metrics]
    if judge is not None:
        specs.append(judge_scorer(judge, answers))
    return specs


def canonical_names(specs: Sequence[ScorerSpec]) -> dict[str, str]:
    """MLflow feedback name → canonical metric name, in reporting order."""
    return {M.mlflow_name(name): name for spec in specs for name in spec.metrics}


def answer_only_metrics(ks: Sequence[int], ndcg_k: int) -> set[str]:
    """The metrics an evaluation computes only when it generates answers (with an embedder and a
    judge configured), i.e. what a retrieval-only evaluation leaves out by design."""
    stand_in = object()  # the scorers only capture embed/judge; nothing is called here

    def names(answers: bool) -> set[str]:
        specs = build_scorers(ks=ks, ndcg_k=ndcg_k, answers=answers, embed=stand_in, judge=stand_in)
        return set(canonical_names(specs).values())

    return names(True) - names(False)
