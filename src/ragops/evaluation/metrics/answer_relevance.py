"""Answer relevance (code-based): does the answer address the question?"""

from __future__ import annotations

import numpy as np

from ragops.evaluation.metrics._metric import MetricInfo
from ragops.evaluation.metrics._text import clip01, is_abstention
from ragops.evaluation.metrics.semantic_similarity import EmbedFn, cosines


def answer_relevance(question: str | None, answer: str | None, embed: EmbedFn) -> float | None:
    """Cosine similarity of the question's and the answer's embeddings, clipped to [0, 1].

    Catches answers that drift off topic; it does not check correctness (see ``groundedness`` and
    the answer metrics). An abstention ("I don't know …") or an empty answer scores 0.0 — it does
    not answer; judge abstentions on unanswerable questions with ``abstention``. ``None`` when the
    question is empty.
    """
    if not question or not question.strip():
        return None
    if not answer or not answer.strip() or is_abstention(answer):
        return 0.0
    return clip01(float(np.max(cosines(embed, question, [answer]))))


METRIC = MetricInfo("answer_relevance", "rag", "embedding cosine between question and answer (0 for abstentions)",
                    answer_relevance,
                    needs=("question", "answer", "embed"), order=40)
