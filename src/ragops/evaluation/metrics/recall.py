"""Recall@k: how much of the relevant set the top k retrieved."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from ragops.evaluation.metrics._metric import MetricInfo
from ragops.evaluation.metrics._text import as_set, check_k, unique_top_k


def recall_at_k(retrieved: Sequence[str], expected: Iterable[str], k: int) -> float | None:
    """|relevant ∩ top-k| / |relevant|, in [0, 1].

    Differs from hit rate only for questions with several relevant documents (multi-doc), where it
    rewards retrieving all of them. Retrieved doc ids are de-duplicated (first rank kept) before
    the cut at ``k``. ``None`` when ``expected`` is empty (no relevant document: not applicable).
    """
    check_k(k, "recall@k")
    relevant = as_set(expected)
    if not relevant:
        return None
    found = relevant.intersection(unique_top_k(retrieved, k))
    return len(found) / len(relevant)


METRIC = MetricInfo("recall@k", "retrieval", "share of the expected documents found in the top k", recall_at_k,
                    needs=("retrieved", "expected_doc_ids"), cutoff="ks", order=11)
