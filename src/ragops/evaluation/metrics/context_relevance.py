"""Context relevance (code-based): are the retrieved passages about the question?"""

from __future__ import annotations

from collections.abc import Sequence

from ragops.evaluation.metrics._metric import MetricInfo
from ragops.evaluation.metrics._text import clip01, content_tokens, tokens
from ragops.evaluation.metrics.semantic_similarity import EmbedFn, cosines


def context_relevance(question: str | None, contexts: Sequence[str] | None,
                      embed: EmbedFn | None = None) -> float | None:
    """Mean over retrieved contexts of how relevant each is to the question, in [0, 1].

    Lexical (default): for each context, the share of the question's content tokens
    (SQuAD-normalised, stop-words removed) that it contains. With ``embed``: the cosine between the
    question and each context, clipped to [0, 1]. Low values mean the LLM got padded or off-topic
    context; blank contexts count 0. ``None`` when there are no contexts or the question is empty.
    """
    if not contexts or not question or not question.strip():
        return None
    contexts = list(contexts)
    if embed is not None:
        scores = [max(0.0, float(c)) if text.strip() else 0.0
                  for c, text in zip(cosines(embed, question, contexts), contexts, strict=True)]
        return clip01(sum(scores) / len(scores))
    wanted = set(content_tokens(question)) or set(tokens(question))
    if not wanted:
        return None
    scores = []
    for context in contexts:
        have = set(tokens(context)) | set(content_tokens(context))
        scores.append(len(wanted & have) / len(wanted))
    return clip01(sum(scores) / len(scores))


METRIC = MetricInfo("context_relevance", "rag", "mean relevance of the retrieved contexts to the question",
                    context_relevance,
                    needs=("question", "contexts"), order=10)
