"""Token F1 (SQuAD v1.1 "F1"): word overlap between the answer and a reference."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from ragops.evaluation.metrics._metric import MetricInfo
from ragops.evaluation.metrics._text import best_over_references


def _f1(pred_tokens: list[str], ref_tokens: list[str]) -> float:
    common = Counter(pred_tokens) & Counter(ref_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0.0
    precision = num_same / len(pred_tokens)
    recall = num_same / len(ref_tokens)
    return 2 * precision * recall / (precision + recall)


def token_f1(prediction: str | None, references: Sequence[str] | None) -> float | None:
    """F1 of the bags of SQuAD-normalised tokens (multiset intersection), max over references.
    Range [0, 1]; logged as ``answer_f1``.

    Exactly the official SQuAD v1.1 ``f1_score``: precision = shared / prediction tokens, recall =
    shared / reference tokens. Long answers are penalised through precision even when they contain
    the reference. An empty prediction scores 0.0; ``None`` when there is no reference answer.
    """
    return best_over_references(prediction, references, _f1)


METRIC = MetricInfo("answer_f1", "answer", "token-overlap F1 with the best expected answer (SQuAD F1)", token_f1,
                    needs=("answer", "expected_answers"), order=20)
