"""Abstention: on a question the corpus cannot answer, did the system say it does not know?"""

from __future__ import annotations

from ragops.evaluation.metrics._metric import MetricInfo
from ragops.evaluation.metrics._text import is_abstention


def abstention(answer: str | None, answerable: bool) -> float | None:
    """For an unanswerable question: 1.0 when the answer abstains ("I don't know …", the chain's
    ``DONT_KNOW``), else 0.0 — an answer there is a hallucination, and an empty one tells the user
    nothing. Range {0, 1}; the mean is the share of unanswerable questions handled correctly.

    ``None`` for answerable questions (not applicable: over-abstaining shows up there as low
    answer scores).
    """
    if answerable:
        return None
    return 1.0 if is_abstention(answer) else 0.0


METRIC = MetricInfo("abstention", "rag", "unanswerable questions only: 1 if the answer says it does not know",
                    abstention,
                    needs=("answer", "answerable"), order=30)
