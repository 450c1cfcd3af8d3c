"""Helpers shared by the metrics, so every metric reads text and rankings the same way.

* SQuAD v1.1 answer normalisation (:func:`normalize_answer`) and tokenisation (:func:`tokens`):
  the official evaluation script's rules, so ``exact_match``/``answer_f1`` match published numbers.
* Content tokens (:func:`content_tokens`): normalised tokens without English stop-words, for the
  lexical groundedness and context-relevance checks.
* Claim splitting (:func:`split_claims`) and abstention detection (:func:`is_abstention`).
* Input coercion for rankings and reference answers (:func:`unique_top_k`, :func:`as_set`,
  :func:`as_references`, :func:`check_k`) and :func:`clip01`, which keeps every score a finite
  number in [0, 1].
"""

from __future__ import annotations

import functools
import math
import re
import string
import unicodedata
from collections.abc import Callable, Iterable, Sequence

_PUNCT = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)

#: A small English stop-word list: function words that say nothing about whether a claim is
#: supported (articles are already removed by the SQuAD normalisation).
_STOP_WORDS_TEXT = """
    a about above after again against all also am an and any are as at be because been before being
    below between both but by can could did do does doing down during each either else few for from
    further had has have having he her here hers herself him himself his how i if in into is it its
    itself just may me might more most must my myself neither no nor not now of off on once only or
    other our ours ourselves out over own same shall she should so some such than that the their
    theirs them themselves then there these they this those through to too under until up upon us
    very was we were what when where which while who whom whose why will with within without would
    yes yet you your yours yourself yourselves
"""
STOP_WORDS: frozenset[str] = frozenset(_STOP_WORDS_TEXT.split())

#: Claims with fewer normalised tokens than this ("Yes.", "1.", "e.g.") are not checked.
MIN_CLAIM_TOKENS = 2

_CITATION = re.compile(r"\s*\[\s*\d+(?:\s*[,;–-]\s*\d+)*\s*\]")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")
_BULLET = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s+")
_ABSTAIN_PREFIXES = ("i don't know", "i do not know", "i dont know")


# --- SQuAD v1.1 ----------------------------------------------------------------------------

def normalize_answer(text: str) -> str:
    """Lower-case, drop ASCII punctuation, drop the articles a/an/the, collapse whitespace.

    Exactly the official SQuAD v1.1 ``normalize_answer`` (same order of steps), so "The 30-day
    window." and "30day window" normalise to the same string.
    """
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCT)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def tokens(text: str | None) -> list[str]:
    """SQuAD tokens: the normalised text split on whitespace (``[]`` for ``None``/blank)."""
    return normalize_answer(text).split() if text else []


def content_tokens(text: str | None) -> list[str]:
    """Normalised tokens minus stop-words and stray Unicode punctuation (“ ” – …)."""
    out = []
    for tok in tokens(text):
        tok = "".join(ch for ch in tok if not unicodedata.category(ch).startswith("P"))
        if tok and tok not in STOP_WORDS:
            out.append(tok)
    return out


# --- claims and abstentions ----------------------------------------------------------------

def split_claims(text: str | None) -> list[str]:
    """The answer's claims: its sentences and list items, without citation markers ("[1]",
    "[1, 2]"), leaving out fragments shorter than :data:`MIN_CLAIM_TOKENS` tokens or made only of
    stop-words."""
    if not text:
        return []
    text = _CITATION.sub("", text)
    claims = []
    for piece in _SENTENCE_END.split(text):
        piece = " ".join(_BULLET.sub("", piece).split())
        if len(tokens(piece)) >= MIN_CLAIM_TOKENS and content_tokens(piece):
            claims.append(piece)
    return claims


@functools.lru_cache(maxsize=1)
def _dont_know() -> str:
    # Imported lazily: the chain package pulls in LangChain and the index, which the metrics
    # (pure functions) should not pay for at import time.
    from ragops.chain.prompts import DONT_KNOW

    return " ".join(DONT_KNOW.lower().split())


def is_abstention(text: str | None) -> bool:
    """True when the answer declines to answer: the chain's ``DONT_KNOW`` reply, or any text that
    starts with "I don't know" / "I do not know" (case-insensitive, curly apostrophes accepted)."""
    if not text:
        return False
    t = " ".join(text.replace("\u2019", "'").split()).lower().lstrip("\"'*_`> ")
    return t.startswith(_ABSTAIN_PREFIXES) or t.startswith(_dont_know())


# --- inputs --------------------------------------------------------------------------------

def check_k(k: int, metric: str) -> int:
    """``k`` as an int ≥ 1, or a ValueError that says which metric got what."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"{metric}: k must be an integer >= 1 (the ranking cut-off), got {k!r}")
    return k


def unique_top_k(retrieved: Sequence[str] | None, k: int | None) -> list[str]:
    """The first ``k`` distinct doc ids, each at its first (best) rank.

    Several chunks of one document are often retrieved; de-duplicating *before* the cut keeps a
    document from taking several of the k slots.
    """
    if retrieved is None:
        return []
    if isinstance(retrieved, str):
        retrieved = [retrieved]
    seen: dict[str, None] = {}
    for doc in retrieved:
        if k is not None and len(seen) >= k:
            break
        seen.setdefault(doc, None)
    return list(seen)


def as_set(expected: Iterable[str] | None) -> set[str]:
    """The relevant doc ids as a set (a lone string is one id, not its characters)."""
    if expected is None:
        return set()
    if isinstance(expected, str):
        return {expected}
    return {d for d in expected if d is not None and str(d) != ""}


def as_references(references: Sequence[str] | str | None) -> list[str]:
    """Non-blank reference answers (a lone string is one reference, not its characters)."""
    if references is None:
        return []
    if isinstance(references, str):
        references = [references]
    return [r for r in references if isinstance(r, str) and r.strip()]


def best_over_references(prediction: str | None, references: Sequence[str] | str | None,
                         score: Callable[[list[str], list[str]], float]) -> float | None:
    """The rule every token-level answer metric shares: ``None`` without a reference (not
    applicable), 0.0 for an empty prediction, else the best ``score(prediction_tokens,
    reference_tokens)`` over the references (SQuAD-normalised tokens)."""
    refs = as_references(references)
    if not refs:
        return None
    pred = tokens(prediction)
    if not pred:
        return 0.0
    return max(score(pred, tokens(r)) for r in refs)


def clip01(value: float) -> float:
    """``value`` clipped to [0, 1]; a NaN/inf means a broken input and raises instead of leaking."""
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"metric value is {value}: check the inputs (an embedding with NaN values?)")
    return min(1.0, max(0.0, value))
