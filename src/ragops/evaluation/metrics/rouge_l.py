"""ROUGE-L: longest-common-subsequence overlap between the answer and a reference."""

from __future__ import annotations

from collections.abc import Sequence

from ragops.evaluation.metrics._metric import MetricInfo
from ragops.evaluation.metrics._text import best_over_references


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common (not necessarily contiguous) subsequence, O(len(a)·len(b))."""
    if len(a) < len(b):
        a, b = b, a
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b, start=1):
            cur.append(prev[j - 1] + 1 if x == y else max(prev[j], cur[j - 1]))
        prev = cur
    return prev[-1]


def _f(pred: list[str], ref: list[str]) -> float:
    lcs = lcs_length(pred, ref)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(pred), lcs / len(ref)
    return 2 * precision * recall / (precision + recall)


def rouge_l(prediction: str | None, references: Sequence[str] | None) -> float | None:
    """ROUGE-L F-measure (beta = 1): F1 of LCS/len(prediction) and LCS/len(reference) over
    SQuAD-normalised tokens, max over references. Range [0, 1].

    Unlike token F1 it rewards keeping the reference's word order. An empty prediction scores 0.0;
    ``None`` when there is no reference answer (not applicable).
    """
    return best_over_references(prediction, references, lambda pred, ref: _f(pred, ref) if ref else 0.0)


METRIC = MetricInfo("rouge_l", "answer", "longest-common-subsequence F1 with the best expected answer", rouge_l,
                    needs=("answer", "expected_answers"), order=40)
