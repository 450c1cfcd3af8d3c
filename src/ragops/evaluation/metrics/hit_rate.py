"""Hit rate@k: did any relevant document make it into the top k?"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from ragops.evaluation.metrics._metric import MetricInfo
from ragops.evaluation.metrics._text import as_set, check_k, unique_top_k


def hit_rate_at_k(retrieved: Sequence[str], expected: Iterable[str], k: int) -> float | None:
    """1.0 when at least one relevant doc id is among the first ``k`` distinct retrieved doc ids,
    else 0.0. Range {0, 1}; averaged over questions it is the share of questions with a hit.

    ``retrieved`` is the ranked list of doc ids (chunk results mapped to their documents; repeats
    are collapsed to their first rank before the cut). ``None`` when ``expected`` is empty: the
    question has no relevant document (e.g. unanswerable), so the metric does not apply.
    """
    check_k(k, "hit_rate@k")
    relevant = as_set(expected)
    if not relevant:
        return None
    return 1.0 if any(d in relevant for d in unique_top_k(retrieved, k)) else 0.0


METRIC = MetricInfo("hit_rate@k", "retrieval", "1 if any expected document is in the top k distinct documents", hit_rate_at_k,
                    needs=("retrieved", "expected_doc_ids"), cutoff="ks", order=10)
