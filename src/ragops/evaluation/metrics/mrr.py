"""Mean reciprocal rank (per question: the reciprocal rank of the first relevant document)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from ragops.evaluation.metrics._metric import MetricInfo
from ragops.evaluation.metrics._text import as_set, check_k, unique_top_k


def mrr(retrieved: Sequence[str], expected: Iterable[str], k: int | None = None) -> float | None:
    """1 / rank of the first relevant document (rank 1 = best), 0.0 when none is found within the
    first ``k`` distinct documents (or anywhere, when ``k`` is ``None``). Range [0, 1]; the mean
    over questions is MRR (MRR@k when ``k`` is given).

    Ranks count distinct documents: repeated chunks of one document do not push the next
    document down. ``None`` when ``expected`` is empty (not applicable).
    """
    if k is not None:
        check_k(k, "mrr")
    relevant = as_set(expected)
    if not relevant:
        return None
    for rank, doc in enumerate(unique_top_k(retrieved, k), start=1):
        if doc in relevant:
            return 1.0 / rank
    return 0.0


METRIC = MetricInfo("mrr", "retrieval", "1 / rank of the first expected document (0 if not retrieved)", mrr,
                    needs=("retrieved", "expected_doc_ids"), optional_k=True, order=20)
