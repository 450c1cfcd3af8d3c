"""Output check: refuse an answer that the retrieved context does not support.

The score is the evaluation's groundedness metric (:func:`ragops.evaluation.metrics.groundedness.
groundedness`: the share of the answer's claims whose content words occur in the contexts), so the
gateway refuses by the same number the offline evaluation reports. An abstention ("I don't know")
scores None and is never refused: it claims nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ragops.evaluation.metrics.groundedness import groundedness

DEFAULT_MIN_SCORE = 0.5
REFUSAL = "I can't give an answer that is supported by the retrieved sources; please check the sources directly."


@dataclass(frozen=True)
class GroundedVerdict:
    grounded: bool
    score: float | None          # None: nothing claimed (empty answer, abstention)
    min_score: float

    def as_dict(self) -> dict:
        return {"grounded": self.grounded, "score": None if self.score is None else round(self.score, 4),
                "min_score": self.min_score}


def check_grounded(answer: str, contexts: Sequence[str] | None, *, min_score: float = DEFAULT_MIN_SCORE,
                   claim_threshold: float = 0.6) -> GroundedVerdict:
    """``grounded`` is False when the groundedness score is below ``min_score``; ``claim_threshold``
    is the metric's own per-claim threshold."""
    score = groundedness(answer, contexts, threshold=claim_threshold)
    return GroundedVerdict(score is None or score >= min_score, score, min_score)


__all__ = ["DEFAULT_MIN_SCORE", "REFUSAL", "GroundedVerdict", "check_grounded"]
