"""Exact match (SQuAD v1.1): is the answer, normalised, identical to a reference?"""

from __future__ import annotations

from collections.abc import Sequence

from ragops.evaluation.metrics._metric import MetricInfo
from ragops.evaluation.metrics._text import as_references, normalize_answer


def exact_match(prediction: str | None, references: Sequence[str] | None) -> float | None:
    """1.0 when the normalised prediction equals any normalised reference, else 0.0 (range {0, 1}).

    Normalisation is the official SQuAD v1.1 one (lower-case, no punctuation, no a/an/the,
    whitespace collapsed), so "The 30 days." matches "30 days". Strict: a correct answer written as
    a full sentence scores 0 — use ``answer_contains`` or ``answer_f1`` for chatty answers.
    An empty prediction scores 0.0; ``None`` when there is no reference answer (not applicable).
    """
    refs = as_references(references)
    if not refs:
        return None
    if not prediction:
        return 0.0
    pred = normalize_answer(prediction)
    return 1.0 if any(pred == normalize_answer(r) for r in refs) else 0.0


METRIC = MetricInfo("exact_match", "answer", "normalised answer equals an expected answer (SQuAD EM)", exact_match,
                    needs=("answer", "expected_answers"), order=10)
