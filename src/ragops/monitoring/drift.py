"""Query drift: are this window's questions still the kind the system was built and evaluated for?

The statistic is an *effect size*, not a p-value. A classifier two-sample test (C2ST) learns to tell
the window's query embeddings from the reference's and reports its cross-validated ROC AUC: 0.5 when
the two are indistinguishable, 1.0 when every window query can be told apart. Its value means the same
at 200 queries as at 5,000 — only its noise shrinks — whereas a p-value of any test goes to 0 for any
non-zero difference once the sample is large enough (the complaint in Evidently issue #50: a drift
alarm on every big batch). So a window is "drifted" when its AUC is both

* beyond the noise of *this* sample size: ``AUC > 0.5 + Z · SE_null(n_ref, n_cur)``, where
  ``SE_null = sqrt((n_ref + n_cur + 1) / (12 · n_ref · n_cur))`` is the Mann-Whitney (= AUC) standard
  error when both samples come from one distribution, and
* large enough to matter: ``AUC > 0.5 + MIN_EFFECT``, which is what stops a huge window from being
  flagged for a shift nobody would act on.

What a value means: if a share ``s`` of the window comes from somewhere the reference never goes and
the rest looks like the reference, the best possible AUC is ``0.5 + s / 2`` (20% → 0.60). ``Z`` and
``MIN_EFFECT`` were chosen by ``benchmarks/bench_drift.py`` (SciFact questions as the reference, windows
of 500 with 20% SQuAD questions as drift); BENCHMARKS.md has its power and false-alarm rate.

``outlier_share`` is the easy-to-read companion: the share of window queries whose nearest reference
question is farther than the nearest neighbour of 95% of the reference questions themselves (leave one
out), so about 0.05 when nothing changed. The statistics run on L2-normalised vectors from the same
embedder (model and numerics) the index's query path uses, so "far" means what retrieval sees.

The classifier is the nearest-centroid one: a query's score is its inner product with (mean of the
window's training queries − mean of the reference's), fitted on 4/5 of both and scored on the held-out
fifth, over :data:`REPEATS` different 5-fold splits whose AUCs are averaged. On the benchmark's windows
it was as powerful as an L2-regularised logistic regression (mean AUC of drift windows 0.593–0.595
against 0.590–0.597) with a narrower spread on same-distribution windows (sd 0.016–0.028 against
0.019–0.031), and five repeated splits of it (0.04 s for 500 vs 500 queries) cost less than one of the
regression's — the repeats are what narrow the spread. Being linear in the embeddings, it sees a move of *where* queries
are (a new topic, a new phrasing style: what hurts retrieval); a pure change of spread around the same
centre would go unseen — ``outlier_share`` is the signal for queries spreading out.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ragops.monitoring.catalog import MonitoringError, metric_row

log = logging.getLogger(__name__)

__all__ = ["DriftResult", "detect_drift", "drift_metrics", "embed_queries", "project_2d", "reference_questions"]

#: One-sided z for the sample-size term: 2.326 would put 1% of same-distribution windows above it were the
#: AUC's spread exactly Mann-Whitney's. Real queries repeat and paraphrase one another (SciFact holds
#: claims and their negations), which widens it — up to 1.3x on the benchmark, hence ~3% there.
Z = 2.326
#: Smallest AUC excess over 0.5 worth a drift alert (about 9% of queries from a new, separable place).
MIN_EFFECT = 0.045
#: Cross-validation folds; every query is scored once by a model that never saw it.
FOLDS = 5
#: Different fold splits averaged: the AUC of one split varies with the split as well as with the data.
REPEATS = 5
#: Percentile of reference-to-reference nearest-neighbour similarity below which a query is an outlier.
OUTLIER_PERCENTILE = 5.0
#: Fewest queries on either side for a cross-validated AUC to be computed at all.
MIN_SIDE = 10


@dataclass(frozen=True)
class DriftResult:
    """One two-sample comparison. ``statistic`` is the cross-validated AUC (0.5 = no drift)."""

    statistic: float
    threshold: float
    drifted: bool
    n_reference: int
    n_current: int
    outlier_share: float

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def null_standard_error(n_reference: int, n_current: int) -> float:
    """Standard error of an AUC when both samples come from one distribution (Mann-Whitney)."""
    return float(np.sqrt((n_reference + n_current + 1) / (12.0 * n_reference * n_current)))


def drift_threshold(n_reference: int, n_current: int) -> float:
    """The AUC above which a window is drifted at these sample sizes (see the module docstring)."""
    return max(0.5 + Z * null_standard_error(n_reference, n_current), 0.5 + MIN_EFFECT)


def _unit_rows(vectors: np.ndarray, side: str) -> np.ndarray:
    array = np.asarray(vectors, dtype=np.float64)
    if array.ndim != 2:
        raise MonitoringError(f"drift: {side} embeddings must be a 2-D array (queries × dimensions), "
                              f"got shape {array.shape}")
    if not np.isfinite(array).all():
        raise MonitoringError(f"drift: {side} embeddings contain NaN or infinite values")
    return array / np.maximum(np.linalg.norm(array, axis=1, keepdims=True), 1e-12)


def classifier_auc(reference: np.ndarray, current: np.ndarray, *, seed: int = 0) -> float:
    """Out-of-fold ROC AUC of the nearest-centroid classifier telling ``current`` rows (1) from ``reference``
    rows (0), averaged over :data:`REPEATS` stratified :data:`FOLDS`-fold splits."""
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold

    features = np.vstack([reference, current])
    labels = np.r_[np.zeros(len(reference), dtype=np.int8), np.ones(len(current), dtype=np.int8)]
    aucs = []
    for repeat in range(REPEATS):
        scores = np.empty(len(labels))
        folds = StratifiedKFold(n_splits=FOLDS, shuffle=True, random_state=seed * REPEATS + repeat)
        for train, test in folds.split(features, labels):
            train_labels = labels[train]
            direction = features[train][train_labels == 1].mean(axis=0) - features[train][train_labels == 0].mean(axis=0)
            scores[test] = features[test] @ direction
        aucs.append(roc_auc_score(labels, scores))
    return float(np.mean(aucs))


def _best_similarity(queries: np.ndarray, reference: np.ndarray, *, skip_self: bool = False,
                     block: int = 1024) -> np.ndarray:
    """Each query row's highest cosine to a reference row (unit vectors), in blocks so that a large
    reference never needs a full similarity matrix; ``skip_self`` leaves out the diagonal
    (``queries`` is ``reference``: leave-one-out)."""
    best = np.empty(len(queries))
    for start in range(0, len(queries), block):
        similarity = queries[start:start + block] @ reference.T
        if skip_self:
            rows = np.arange(len(similarity))
            similarity[rows, rows + start] = -np.inf
        best[start:start + block] = similarity.max(axis=1)
    return best


def outlier_share(reference: np.ndarray, current: np.ndarray) -> float:
    """Share of ``current`` rows (unit vectors) whose best cosine to the reference is below the
    :data:`OUTLIER_PERCENTILE` of the reference's own leave-one-out best cosine."""
    cutoff = np.percentile(_best_similarity(reference, reference, skip_self=True), OUTLIER_PERCENTILE)
    return float(np.mean(_best_similarity(current, reference) < cutoff))


def detect_drift(reference: np.ndarray, current: np.ndarray, *, seed: int = 0) -> DriftResult:
    """Compare a window's query embeddings with a reference's (both queries × dimensions)."""
    ref, cur = _unit_rows(reference, "reference"), _unit_rows(current, "current")
    if ref.shape[1] != cur.shape[1]:
        raise MonitoringError(f"drift: reference embeddings have {ref.shape[1]} dimensions but the current "
                              f"window's have {cur.shape[1]}; embed both with the same model")
    if min(len(ref), len(cur)) < MIN_SIDE:
        raise MonitoringError(f"drift: need at least {MIN_SIDE} reference and {MIN_SIDE} current queries, got "
                              f"{len(ref)} and {len(cur)}")
    statistic = classifier_auc(ref, cur, seed=seed)
    threshold = drift_threshold(len(ref), len(cur))
    return DriftResult(statistic=statistic, threshold=threshold, drifted=bool(statistic > threshold),
                       n_reference=len(ref), n_current=len(cur), outlier_share=outlier_share(ref, cur))


# --- embeddings and the reference ------------------------------------------------------------------------
@functools.lru_cache(maxsize=8)
def _embed_cached(config: Any, texts: tuple[str, ...]) -> np.ndarray:
    from ragops.embedding import get_embedder

    vectors = np.asarray(get_embedder(config).encode(list(texts)), dtype=np.float32)
    vectors.setflags(write=False)  # shared by every caller with the same texts
    return vectors


def embed_queries(settings: Any, texts: Sequence[str]) -> np.ndarray:
    """Query vectors from the embedder the index's query path uses (``get_embedder(settings.embedding)``:
    same model, runtime and dtype), so drift is measured in the space retrieval searches.

    The model loads once per process; the vectors of a text list seen recently (the reference eval
    set, embedded on every monitor run of a long-lived process) are reused, read-only.
    """
    return _embed_cached(settings.embedding, tuple(str(t) for t in texts))


def reference_name(settings: Any) -> str:
    return settings.monitoring.drift_eval_set or settings.evaluation.eval_set


def reference_questions(lh: Any, settings: Any) -> list[str]:
    """The questions of the latest version of the drift reference eval set."""
    from ragops.evaluation.eval_sets import EvalSetError, read_eval_set

    name = reference_name(settings)
    try:
        eval_set = read_eval_set(lh, name)
    except EvalSetError as exc:
        raise MonitoringError(
            f"drift reference eval set {name!r} is not available: {exc}. Register it (ragops eval, or "
            "register_eval_set) or point --var monitor_drift_eval_set at an eval set that exists"
        ) from exc
    return [str(q) for q in eval_set.frame["question"]]


def drift_metrics(lh: Any, settings: Any, *, window_start: pd.Timestamp, window_end: pd.Timestamp,
                  current: Sequence[str], previous: Sequence[str]) -> list[dict[str, Any]]:
    """``monitoring_metrics`` rows for one window's queries (``current``, oldest first) against the
    reference eval set and against the previous window's queries (``previous``, oldest first).

    At most ``monitor_drift_sample`` of the most recent queries of each window are compared; a window
    with fewer than ``monitor_drift_min_queries`` gets no drift rows (the AUC would be mostly noise),
    and the previous-window comparison is skipped when the previous window had that few.
    ``monitor_drift_sample=0`` turns drift off.
    """
    cfg = settings.monitoring
    sample, minimum = int(cfg.drift_sample), int(cfg.drift_min_queries)
    current = list(current)[-sample:] if sample else []
    previous = list(previous)[-sample:] if sample else []
    if len(current) < max(minimum, MIN_SIDE):
        log.info("drift: %d queries in window %s, fewer than %d: no drift statistic", len(current),
                 window_start, minimum)
        return []
    reference = reference_questions(lh, settings)
    current_vectors = embed_queries(settings, current)
    against_reference = detect_drift(embed_queries(settings, reference), current_vectors)
    rows = [
        metric_row(window_start, window_end, "drift_auc_reference", against_reference.statistic,
                   against_reference.n_current, state=against_reference.to_dict()),
        metric_row(window_start, window_end, "drift_outlier_share", against_reference.outlier_share,
                   against_reference.n_current, state=against_reference.to_dict()),
        # the decision, with its sample-size-aware threshold, as a metric alert rules can name
        metric_row(window_start, window_end, "drift_detected", float(against_reference.drifted),
                   against_reference.n_current, state=against_reference.to_dict()),
    ]
    if len(previous) >= max(minimum, MIN_SIDE):
        against_previous = detect_drift(embed_queries(settings, previous), current_vectors)
        rows.append(metric_row(window_start, window_end, "drift_auc_previous", against_previous.statistic,
                               against_previous.n_current, state=against_previous.to_dict()))
    return rows


# --- the dashboard's map ----------------------------------------------------------------------------------
def project_2d(corpus: np.ndarray, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Corpus and query embeddings on the corpus' first two principal axes (PCA by SVD, fitted on the
    corpus only), so queries that land where no document is stand out on the dashboard's map."""
    corpus = np.asarray(corpus, dtype=np.float64)
    queries = np.asarray(queries, dtype=np.float64)
    if corpus.ndim != 2 or len(corpus) < 2 or corpus.shape[1] < 2:
        raise MonitoringError(f"project_2d: need at least 2 corpus vectors of at least 2 dimensions, "
                              f"got shape {corpus.shape}")
    queries = queries.reshape(0, corpus.shape[1]) if queries.size == 0 else queries
    if queries.ndim != 2 or queries.shape[1] != corpus.shape[1]:
        raise MonitoringError(f"project_2d: query vectors of shape {queries.shape} do not match the corpus' "
                              f"{corpus.shape[1]} dimensions")
    mean = corpus.mean(axis=0)
    _, _, components = np.linalg.svd(corpus - mean, full_matrices=False)
    axes = components[:2]
    # SVD's signs are arbitrary: fix them so the same corpus always draws the same way up
    axes = axes * np.where(axes[np.arange(2), np.abs(axes).argmax(axis=1)] < 0, -1.0, 1.0)[:, None]
    return (corpus - mean) @ axes.T, (queries - mean) @ axes.T
