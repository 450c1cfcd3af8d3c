"""Sentence BLEU (sacrebleu): n-gram precision of the answer against the references."""

from __future__ import annotations

from collections.abc import Sequence

from ragops.evaluation.metrics._metric import MetricInfo
from ragops.evaluation.metrics._text import as_references, clip01


def bleu(prediction: str | None, references: Sequence[str] | None) -> float | None:
    """``sacrebleu.sentence_bleu(prediction, references).score / 100``, range [0, 1].

    All references are scored at once (BLEU's multi-reference n-gram clipping), not max over
    them. sacrebleu's defaults apply: 13a tokenisation, case-sensitive, exponential smoothing.
    BLEU is a corpus metric and noisy per sentence; with short reference spans it is mostly
    informative in aggregate. An empty prediction scores 0.0; ``None`` when there is no reference.
    """
    refs = as_references(references)
    if not refs:
        return None
    if not prediction or not prediction.strip():
        return 0.0
    import sacrebleu

    return clip01(sacrebleu.sentence_bleu(prediction, refs).score / 100.0)


METRIC = MetricInfo("bleu", "answer", "sacrebleu sentence BLEU against all expected answers, / 100", bleu,
                    needs=("answer", "expected_answers"), order=50)
