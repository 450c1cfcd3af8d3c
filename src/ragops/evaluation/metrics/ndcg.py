"""nDCG@k: ranking quality that rewards relevant documents near the top."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

from ragops.evaluation.metrics._metric import MetricInfo
from ragops.evaluation.metrics._text import as_set, check_k, unique_top_k


def ndcg_at_k(retrieved: Sequence[str], expected: Iterable[str], k: int,
              relevance: Mapping[str, float] | None = None) -> float | None:
    """Normalised discounted cumulative gain at ``k``, in [0, 1].

    DCG = Σ_{i=1..k} gain(doc_i) / log2(i + 1); nDCG = DCG / IDCG, where IDCG is the DCG of the
    ideal ordering of the relevant set (highest gains first, cut at k). This is the trec_eval
    ``ndcg_cut`` / pytrec_eval definition used by BEIR (linear gain).

    Gains are binary by default (1 for a doc in ``expected``, 0 otherwise). With ``relevance``
    the docs of ``expected`` are graded (e.g. BEIR qrels ``{"doc": 2}``); an expected doc without a
    grade counts 1, docs outside ``expected`` count 0, grades <= 0 count as not relevant.
    Retrieved doc ids are de-duplicated (first rank kept) before the cut. ``None`` when no
    expected doc has a positive gain (not applicable).
    """
    check_k(k, "ndcg@k")
    gains: dict[str, float] = {}
    for doc in as_set(expected):
        gain = 1.0 if relevance is None else float(relevance.get(doc, 1.0))
        if math.isnan(gain) or math.isinf(gain):
            raise ValueError(f"ndcg@k: relevance grade of {doc!r} is {gain}; grades must be finite numbers")
        if gain > 0:
            gains[doc] = gain
    if not gains:
        return None
    dcg = sum(gains.get(doc, 0.0) / math.log2(rank + 1)
              for rank, doc in enumerate(unique_top_k(retrieved, k), start=1))
    ideal = sorted(gains.values(), reverse=True)[:k]
    idcg = sum(g / math.log2(rank + 1) for rank, g in enumerate(ideal, start=1))
    return min(1.0, dcg / idcg)


METRIC = MetricInfo("ndcg@k", "retrieval", "rank-discounted gain of the top k vs the ideal ranking (BEIR nDCG)", ndcg_at_k,
                    needs=("retrieved", "expected_doc_ids"), cutoff="ndcg_k", order=30)
