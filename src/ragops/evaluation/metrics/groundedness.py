"""Groundedness (code-based): share of the answer's claims that the retrieved contexts support."""

from __future__ import annotations

from collections.abc import Sequence

from ragops.evaluation.metrics._metric import MetricInfo
from ragops.evaluation.metrics._text import content_tokens, is_abstention, split_claims


def claim_support(claim: str, context_tokens: set[str]) -> float:
    """Share of the claim's content tokens that occur in the contexts (0.0 for no content)."""
    words = content_tokens(claim)
    if not words:
        return 0.0
    return sum(w in context_tokens for w in words) / len(words)


def groundedness(answer: str | None, contexts: Sequence[str] | None, *, threshold: float = 0.6) -> float | None:
    """Supported claims / claims, in [0, 1]. A lexical stand-in for an LLM faithfulness judge.

    Claims are the answer's sentences (citation markers such as "[1]" and fragments under two
    tokens dropped). A claim is supported when at least ``threshold`` of its content tokens
    (SQuAD-normalised, stop-words removed) appear anywhere in the retrieved contexts. It catches
    answers that bring in facts absent from the context; it cannot see a claim that reuses the
    context's words to say something false — that needs the judge (``ragops.evaluation.judges``).

    ``None`` for an empty answer or an abstention ("I don't know …": nothing was claimed).
    A non-abstaining answer with no contexts scores 0.0 (nothing can support it).
    """
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"groundedness: threshold must be in (0, 1], got {threshold!r}")
    if not answer or is_abstention(answer):
        return None
    claims = split_claims(answer)
    if not claims:
        return None
    known: set[str] = set()
    for context in contexts or []:
        known.update(content_tokens(context))
    if not known:
        return 0.0
    supported = sum(claim_support(c, known) >= threshold for c in claims)
    return supported / len(claims)


METRIC = MetricInfo("groundedness", "rag", "share of the answer's claims supported by the retrieved contexts",
                    groundedness,
                    needs=("answer", "contexts"), order=20)
