"""Evaluation metrics: one small pure function per file, each returning a score in [0, 1] or
``None`` when the metric does not apply to a question (no expected documents, no reference
answer, an answerable question for ``abstention`` …). ``None`` is neither a failure nor a zero:
aggregate over the questions where a metric applies. No metric returns NaN.

Each metric file declares itself once, at its end: ``METRIC = MetricInfo(name, kind, description,
function, needs=..., cutoff=...)`` (:mod:`._metric`). This package collects them on import
(:func:`discover`: every module of the package that has a ``METRIC``) into :data:`METRICS`, and the
scorers wire each from its declaration — a new metric is one new file here, nothing else.

Canonical names (:data:`METRICS`) are what the evaluator logs: retrieval metrics carry their
cut-off (``recall@5``, built with :func:`metric_name`), and :func:`mlflow_name` turns them into
names MLflow accepts (``recall_at_5``). The declared metrics today:

=======================  ===========================  ===============================
name                     function                     needs
=======================  ===========================  ===============================
``hit_rate@k``           :func:`hit_rate_at_k`        retrieved, expected_doc_ids
``recall@k``             :func:`recall_at_k`          retrieved, expected_doc_ids
``precision@k``          :func:`precision_at_k`       retrieved, expected_doc_ids
``mrr``                  :func:`mrr`                  retrieved, expected_doc_ids
``ndcg@k``               :func:`ndcg_at_k`            retrieved, expected_doc_ids
``exact_match``          :func:`exact_match`          answer, expected_answers
``answer_f1``            :func:`token_f1`             answer, expected_answers
``answer_contains``      :func:`answer_contains`      answer, expected_answers
``rouge_l``              :func:`rouge_l`              answer, expected_answers
``bleu``                 :func:`bleu`                 answer, expected_answers
``semantic_similarity``  :func:`semantic_similarity`  answer, expected_answers, embed
``groundedness``         :func:`groundedness`         answer, contexts
``answer_relevance``     :func:`answer_relevance`     question, answer, embed
``context_relevance``    :func:`context_relevance`    question, contexts
``abstention``           :func:`abstention`           answer, answerable
=======================  ===========================  ===============================
"""

from __future__ import annotations

import importlib
import pkgutil
import re

from ragops.evaluation.metrics._metric import INPUTS, KINDS, MetricInfo
from ragops.evaluation.metrics._text import is_abstention, normalize_answer, split_claims
from ragops.evaluation.metrics.abstention import abstention
from ragops.evaluation.metrics.answer_contains import answer_contains
from ragops.evaluation.metrics.answer_relevance import answer_relevance
from ragops.evaluation.metrics.bleu import bleu
from ragops.evaluation.metrics.context_relevance import context_relevance
from ragops.evaluation.metrics.exact_match import exact_match
from ragops.evaluation.metrics.groundedness import groundedness
from ragops.evaluation.metrics.hit_rate import hit_rate_at_k
from ragops.evaluation.metrics.mrr import mrr
from ragops.evaluation.metrics.ndcg import ndcg_at_k
from ragops.evaluation.metrics.precision import precision_at_k
from ragops.evaluation.metrics.recall import recall_at_k
from ragops.evaluation.metrics.rouge_l import rouge_l
from ragops.evaluation.metrics.semantic_similarity import EmbedFn, semantic_similarity
from ragops.evaluation.metrics.token_f1 import token_f1

#: Every declared metric by canonical name, in reporting order (kind, then each file's ``order``).
METRICS: dict[str, MetricInfo] = {}


def register(metric: MetricInfo) -> MetricInfo:
    """Add a metric (what :func:`discover` does for each ``METRIC``); one name, one declaration."""
    existing = METRICS.get(metric.name)
    if existing is not None and existing is not metric:
        raise ValueError(f"metric {metric.name!r} is declared twice")
    METRICS[metric.name] = metric
    ordered = sorted(METRICS.values(), key=lambda m: (KINDS.index(m.kind), m.order))
    METRICS.clear()
    METRICS.update((m.name, m) for m in ordered)
    return metric


def discover() -> dict[str, MetricInfo]:
    """Import every module of this package (``__path__``) and register its ``METRIC``."""
    for module in pkgutil.iter_modules(__path__):
        if module.name.startswith("_"):
            continue
        metric = getattr(importlib.import_module(f"{__name__}.{module.name}"), "METRIC", None)
        if isinstance(metric, MetricInfo):
            register(metric)
    return METRICS


discover()

_NAME_WITH_K = re.compile(r"^(?P<stem>[a-z_]+)@(?P<k>\d+)$")
_MLFLOW_WITH_K = re.compile(r"^(?P<stem>[a-z_]+)_at_(?P<k>\d+)$")


def _optional_k(stem: str) -> bool:
    return stem in METRICS and METRICS[stem].optional_k

def _known() -> str:
    return ", ".join(METRICS)


def metric_name(base: str, k: int | None = None) -> str:
    """Canonical name of a metric: ``metric_name("recall", 5) -> "recall@5"`` (``"recall@k"`` works
    as ``base`` too), ``metric_name("answer_f1") -> "answer_f1"``, ``metric_name("mrr", 10) ->
    "mrr@10"``. Retrieval metrics other than ``mrr`` need ``k``; the others take none."""
    stem = base[:-2] if base.endswith("@k") else base
    if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 1):
        raise ValueError(f"metric {base!r}: k must be an integer >= 1, got {k!r}")
    if f"{stem}@k" in METRICS:
        if k is None:
            raise ValueError(f"metric {stem}@k needs a cut-off: metric_name({stem!r}, 5) -> '{stem}@5'")
        return f"{stem}@{k}"
    if _optional_k(stem):
        return stem if k is None else f"{stem}@{k}"
    if stem in METRICS:
        if k is not None:
            raise ValueError(f"metric {stem!r} takes no cut-off k (got {k}); call metric_name({stem!r})")
        return stem
    raise ValueError(f"unknown metric {base!r}; known metrics: {_known()}")


def mlflow_name(name: str) -> str:
    """The name to log in MLflow, which does not allow '@': ``recall@5 -> recall_at_5``."""
    return name.replace("@", "_at_")


def info(name: str) -> MetricInfo:
    """The :class:`MetricInfo` of a canonical (``recall@5``), template (``recall@k``) or MLflow
    (``recall_at_5``) metric name; ValueError listing the known metrics for anything else."""
    if name in METRICS:
        return METRICS[name]
    match = _NAME_WITH_K.match(name) or _MLFLOW_WITH_K.match(name)
    if match and int(match["k"]) >= 1:
        stem = match["stem"]
        if f"{stem}@k" in METRICS:
            return METRICS[f"{stem}@k"]
        if _optional_k(stem):
            return METRICS[stem]
    raise ValueError(f"unknown metric {name!r}; known metrics: {_known()} "
                     "(retrieval ones with a cut-off, e.g. recall@5)")


__all__ = [
    "INPUTS",
    "KINDS",
    "METRICS",
    "EmbedFn",
    "MetricInfo",
    "abstention",
    "answer_contains",
    "answer_relevance",
    "bleu",
    "context_relevance",
    "discover",
    "exact_match",
    "groundedness",
    "hit_rate_at_k",
    "info",
    "is_abstention",
    "metric_name",
    "mlflow_name",
    "mrr",
    "ndcg_at_k",
    "normalize_answer",
    "precision_at_k",
    "recall_at_k",
    "register",
    "rouge_l",
    "semantic_similarity",
    "split_claims",
    "token_f1",
]
