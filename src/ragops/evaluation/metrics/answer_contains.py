"""Answer contains: does the answer state one of the expected short factual spans?"""

from __future__ import annotations

from collections.abc import Sequence

from ragops.evaluation.metrics._metric import MetricInfo
from ragops.evaluation.metrics._text import best_over_references


def _contains(haystack: list[str], needle: list[str]) -> bool:
    n = len(needle)
    return any(haystack[i:i + n] == needle for i in range(len(haystack) - n + 1))


def answer_contains(prediction: str | None, references: Sequence[str] | None) -> float | None:
    """1.0 when any SQuAD-normalised reference occurs as a contiguous run of whole tokens in the
    normalised prediction, else 0.0 (range {0, 1}).

    Fits eval sets that store short spans ("30 days", "4817"): "Raw samples are kept for 30 days
    [1]." contains "30 days", while "130 days" or "4817x" do not (whole tokens, not substrings).
    An empty prediction scores 0.0; ``None`` when there is no reference answer (not applicable).
    """
    return best_over_references(prediction, references,
                                lambda pred, ref: 1.0 if ref and _contains(pred, ref) else 0.0)


METRIC = MetricInfo("answer_contains", "answer", "answer contains an expected answer span as whole tokens",
                    answer_contains,
                    needs=("answer", "expected_answers"), order=30)
