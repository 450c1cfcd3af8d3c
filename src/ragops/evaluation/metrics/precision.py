"""Precision@k: how much of the top k is relevant."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from ragops.evaluation.metrics._metric import MetricInfo
from ragops.evaluation.metrics._text import as_set, check_k, unique_top_k


def precision_at_k(retrieved: Sequence[str], expected: Iterable[str], k: int) -> float | None:
    """|relevant ∩ top-k| / k, in [0, 1].

    Divides by ``k`` even when fewer than ``k`` distinct documents were retrieved — the standard IR
    definition (trec_eval ``P_k``): empty slots count as misses. So with a single relevant document
    the best possible precision@5 is 0.2; compare systems at the same k, not against 1.0.
    Retrieved doc ids are de-duplicated (first rank kept) before the cut. ``None`` when
    ``expected`` is empty (not applicable).
    """
    check_k(k, "precision@k")
    relevant = as_set(expected)
    if not relevant:
        return None
    found = relevant.intersection(unique_top_k(retrieved, k))
    return len(found) / k


METRIC = MetricInfo("precision@k", "retrieval",
                    "share of the top k slots holding an expected document (divides by k)", precision_at_k,
                    needs=("retrieved", "expected_doc_ids"), cutoff="ks", order=12)
