"""LLM-as-judge versions of groundedness, answer relevance and context relevance.

The code-based metrics (:mod:`ragops.evaluation.metrics`) are cheap and deterministic but only see
words; a judge model reads meaning. Any LangChain chat model can judge
(``ragops.llm.get_chat_model(LLMConfig(...))``: local, OpenAI-compatible or Databricks).

The judge asks for ``{"score": <1-5>, "rationale": "..."}`` and maps the score linearly to [0, 1]
(1 → 0.0, 3 → 0.5, 5 → 1.0), so judge scores sit on the same scale as the code metrics. Replies
are parsed leniently (JSON in prose or code fences, a bare ``Score: 4`` line); a reply that still
cannot be read is retried, and after the retries a :class:`JudgeError` says what came back —
never a silent default score.

Verdicts are cached on disk, one JSON file per (judge identity, metric, prompt) key, so
re-running an evaluation on unchanged answers makes no LLM calls. Calls can be rate-limited for
hosted endpoints with per-minute quotas.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage

from ragops.errors import RagopsError

log = logging.getLogger(__name__)

#: the rating scale the prompts ask for; mapped linearly onto [0, 1]
SCALE_MIN, SCALE_MAX = 1, 5

_REPLY_FORMAT = (
    'Reply with only a JSON object, no other text: {"score": <integer from 1 to 5>, '
    '"rationale": "<one short sentence>"}'
)

PROMPTS: dict[str, str] = {
    "groundedness": (
        "You grade the answer of a retrieval-augmented assistant for groundedness: is every claim "
        "in the answer supported by the context passages? Judge only support by the passages, not "
        "general truth.\n"
        "5 = every claim is supported by the passages; 4 = nearly all, one minor detail unsupported; "
        "3 = about half of the claims are supported; 2 = most claims are unsupported; "
        "1 = nothing is supported, or the answer contradicts the passages.\n" + _REPLY_FORMAT
    ),
    "answer_relevance": (
        "You grade whether an answer addresses the question that was asked (not whether it is "
        "correct).\n"
        "5 = answers the question directly and completely; 4 = answers it with some irrelevant "
        "detail; 3 = partly answers it; 2 = mostly off-topic; 1 = off-topic, or does not answer "
        '(a refusal such as "I don\'t know" scores 1).\n' + _REPLY_FORMAT
    ),
    "context_relevance": (
        "You grade the passages a search system retrieved for a question: do they contain the "
        "information needed to answer it?\n"
        "5 = they contain everything needed; 4 = most of it; 3 = some useful information; "
        "2 = barely related; 1 = unrelated to the question.\n" + _REPLY_FORMAT
    ),
}


class JudgeError(RagopsError, RuntimeError):
    """The judge could not produce a score: the LLM kept failing or its reply could not be read."""

    def __init__(self, message: str, *, judge: str = "", metric: str = "", reply: str = "") -> None:
        super().__init__(message)
        self.judge = judge
        self.metric = metric
        self.reply = reply


@dataclass
class JudgeVerdict:
    """A judge's score in [0, 1] (from the 1-5 rating), its reasoning, and whether it came from the
    on-disk cache rather than an LLM call."""

    score: float
    rationale: str
    cached: bool = False


class RateLimiter:
    """Spaces calls at least ``60 / max_calls_per_minute`` seconds apart, across threads.

    Each caller reserves the next free slot under a lock and sleeps outside it, so concurrent
    callers queue up instead of bursting.
    """

    def __init__(self, max_calls_per_minute: float) -> None:
        if not max_calls_per_minute > 0 or not math.isfinite(max_calls_per_minute):
            raise ValueError(f"max_calls_per_minute must be a positive number, got {max_calls_per_minute!r}")
        self.interval = 60.0 / max_calls_per_minute
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        with self._lock:
            now = time.monotonic()
            slot = max(now, self._next)
            self._next = slot + self.interval
        if slot > now:
            time.sleep(slot - now)


# --- parsing -------------------------------------------------------------------------------

_FENCE = re.compile(r"```[a-zA-Z]*\s*(.*?)```", re.S)
_SCORE_LINE = re.compile(
    r"\bscore\b[\s\"'*_]*[:=][\s\"'*_]*(\d+(?:\.\d+)?)(?:\s*(?:/|out of)\s*(\d+))?", re.I
)
_RATIONALE_LINE = re.compile(r"\b(?:rationale|reason|explanation)\b[\s\"'*_]*[:=][\s\"'*_]*(.+)", re.I)


def _json_objects(text: str):
    decoder = json.JSONDecoder()
    for i, ch in enumerate(text):
        if ch == "{":
            try:
                obj, _ = decoder.raw_decode(text, i)
            except ValueError:
                continue
            if isinstance(obj, dict):
                yield obj


def _check_score(value: Any, out_of: int | None = None) -> float:
    if isinstance(value, bool):
        raise ValueError(f"score {value!r} is not a number")
    try:
        score = float(str(value).strip()) if isinstance(value, str) else float(value)
    except (TypeError, ValueError):
        raise ValueError(f"score {value!r} is not a number") from None
    if out_of is not None and out_of != SCALE_MAX:
        raise ValueError(f"score {value}/{out_of} is not on the {SCALE_MIN}-{SCALE_MAX} scale")
    if not math.isfinite(score) or not SCALE_MIN <= score <= SCALE_MAX:
        raise ValueError(f"score {value!r} is outside {SCALE_MIN}-{SCALE_MAX}")
    return score


def parse_verdict(text: str) -> tuple[float, str]:
    """(rating on the 1-5 scale, rationale) from a judge's reply; ValueError saying why not.

    Accepts a JSON object (alone, inside prose, or in a ``` fence) with a ``score`` key, or a
    ``Score: 4`` line (``4/5`` too) with an optional ``Rationale: …`` line.
    """
    if not text or not text.strip():
        raise ValueError("the reply is empty")
    for chunk in [*(m.group(1) for m in _FENCE.finditer(text)), text]:
        for obj in _json_objects(chunk):
            keys = {str(k).lower(): k for k in obj}
            if "score" in keys:
                score = _check_score(obj[keys["score"]])
                why = next((obj[keys[k]] for k in ("rationale", "reason", "explanation") if k in keys), "")
                return score, str(why).strip()
    match = _SCORE_LINE.search(text)
    if match:
        score = _check_score(match.group(1), int(match.group(2)) if match.group(2) else None)
        why = _RATIONALE_LINE.search(text)
        rationale = why.group(1).strip().strip("\"'") if why else text.strip()[:300]
        return score, rationale
    raise ValueError('no score found (expected a JSON object like {"score": 4, "rationale": "..."})')


def _reply_text(reply: Any) -> str:
    content = getattr(reply, "content", reply)
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content blocks
        return "".join(b if isinstance(b, str) else str(b.get("text", "")) for b in content
                       if isinstance(b, str | dict))
    return str(content)


def _passages(contexts: Sequence[str]) -> str:
    blocks = [f"[{i}] {c.strip()}" for i, c in enumerate(contexts or [], start=1) if c and c.strip()]
    return "\n\n".join(blocks) if blocks else "(no passages)"


# --- the judge -----------------------------------------------------------------------------

class Judge:
    """Scores answers and contexts with a chat model, with an on-disk cache, rate limit and retries.

    ``identity`` names the judge model (``ragops.llm.llm_identity(config)``); it is part of every
    cache key, so switching judges never reuses another model's verdicts. Counters ``calls`` (LLM
    invocations, retries included), ``cache_hits`` and ``failures`` (judgements that raised
    :class:`JudgeError`) are for the evaluation report. Safe to share between threads.
    """

    def __init__(self, llm: BaseChatModel, *, identity: str, cache_dir: Path | None = None,
                 max_calls_per_minute: float | None = None, max_retries: int = 3,
                 backoff_s: float = 1.0) -> None:
        if not identity or not str(identity).strip():
            raise ValueError("Judge needs identity= naming the judge model (e.g. ragops.llm.llm_identity(config)); "
                             "it keys the verdict cache")
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise ValueError(f"max_retries must be an integer >= 0, got {max_retries!r}")
        if not backoff_s >= 0:
            raise ValueError(f"backoff_s must be >= 0 seconds, got {backoff_s!r}")
        self.llm = llm
        self.identity = str(identity)
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.max_retries = max_retries
        self.backoff_s = float(backoff_s)
        self.limiter = RateLimiter(max_calls_per_minute) if max_calls_per_minute is not None else None
        self.calls = 0
        self.cache_hits = 0
        self.failures = 0
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, config: Any, **kwargs: Any) -> Judge:
        """A judge on ``get_chat_model(config)`` with ``identity=llm_identity(config)``."""
        from ragops.llm import get_chat_model, llm_identity

        return cls(get_chat_model(config), identity=llm_identity(config), **kwargs)

    def stats(self) -> dict[str, int]:
        """The counters, for logging next to the metrics."""
        with self._lock:
            return {"judge_calls": self.calls, "judge_cache_hits": self.cache_hits, "judge_failures": self.failures}

    # --- metrics -------------------------------------------------------------------------
    def judge_groundedness(self, answer: str, contexts: Sequence[str]) -> JudgeVerdict:
        """Is every claim of ``answer`` supported by ``contexts``? 1.0 = fully supported."""
        user = f"Context passages:\n{_passages(contexts)}\n\nAnswer:\n{(answer or '').strip()}"
        return self._judge("groundedness", user)

    def judge_answer_relevance(self, question: str, answer: str) -> JudgeVerdict:
        """Does ``answer`` address ``question``? 1.0 = directly and completely."""
        user = f"Question:\n{(question or '').strip()}\n\nAnswer:\n{(answer or '').strip()}"
        return self._judge("answer_relevance", user)

    def judge_context_relevance(self, question: str, contexts: Sequence[str]) -> JudgeVerdict:
        """Do ``contexts`` hold what is needed to answer ``question``? 1.0 = everything needed."""
        user = f"Question:\n{(question or '').strip()}\n\nRetrieved passages:\n{_passages(contexts)}"
        return self._judge("context_relevance", user)

    # --- machinery -----------------------------------------------------------------------
    def cache_key(self, metric: str, prompt_text: str) -> str:
        payload = json.dumps([self.identity, metric, prompt_text], ensure_ascii=False)
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()

    def _judge(self, metric: str, user: str) -> JudgeVerdict:
        system = PROMPTS[metric]
        # The format is repeated last: small models follow the final instruction far more often.
        user = f"{user}\n\n{_REPLY_FORMAT}"
        messages: list[BaseMessage] = [SystemMessage(system), HumanMessage(user)]
        key = self.cache_key(metric, f"system:\n{system}\n\nuser:\n{user}")
        hit = self._cache_get(key)
        if hit is not None:
            with self._lock:
                self.cache_hits += 1
            return hit
        reason, reply_text = "", ""
        attempts = self.max_retries + 1
        for attempt in range(attempts):
            if attempt and self.backoff_s:
                time.sleep(self.backoff_s * 2 ** (attempt - 1))
            if self.limiter is not None:
                self.limiter.wait()
            with self._lock:
                self.calls += 1
            try:
                reply_text = _reply_text(self.llm.invoke(messages))
            except Exception as exc:  # any backend error (HTTP, timeout, model) is retried
                reason, reply_text = f"the LLM call failed ({type(exc).__name__}: {exc})", ""
                log.warning("judge %s, %s: attempt %d/%d: %s", self.identity, metric, attempt + 1, attempts, reason)
                continue
            try:
                rating, rationale = parse_verdict(reply_text)
            except ValueError as exc:
                reason = f"unreadable reply: {exc}"
                log.warning("judge %s, %s: attempt %d/%d: %s: %r", self.identity, metric, attempt + 1, attempts,
                            reason, reply_text[:200])
                continue
            verdict = JudgeVerdict(score=(rating - SCALE_MIN) / (SCALE_MAX - SCALE_MIN), rationale=rationale)
            self._cache_put(key, metric, rating, verdict, reply_text)
            return verdict
        with self._lock:
            self.failures += 1
        raise JudgeError(
            f"judge {self.identity!r} could not score {metric} after {attempts} attempt(s): {reason}. "
            f"Last reply (first 200 chars): {reply_text[:200]!r}. A larger judge model, or more "
            "max_retries for a flaky endpoint, usually helps.",
            judge=self.identity, metric=metric, reply=reply_text[:200],
        )

    def _cache_path(self, key: str) -> Path | None:
        return self.cache_dir / f"{key}.json" if self.cache_dir is not None else None

    def _cache_get(self, key: str) -> JudgeVerdict | None:
        path = self._cache_path(key)
        if path is None or not path.exists():
            return None
        try:
            entry = json.loads(path.read_text(encoding="utf-8"))
            score = float(entry["score"])
            if not 0.0 <= score <= 1.0:
                raise ValueError(f"score {score} outside [0, 1]")
            return JudgeVerdict(score=score, rationale=str(entry.get("rationale", "")), cached=True)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring unreadable judge cache entry %s (%s); it will be re-judged", path, exc)
            return None

    def _cache_put(self, key: str, metric: str, rating: float, verdict: JudgeVerdict, reply: str) -> None:
        path = self._cache_path(key)
        if path is None:
            return
        entry = {"judge": self.identity, "metric": metric, "rating": rating, **asdict(verdict),
                 "reply": reply[:2000], "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        entry.pop("cached", None)
        tmp = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{key}.", suffix=".tmp")
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(entry, f, ensure_ascii=False, indent=1)
            os.replace(tmp, path)
        except OSError as exc:
            log.warning("could not write the judge cache entry %s (%s): re-runs will call the judge again",
                        path, exc)
            if tmp is not None and os.path.exists(tmp):
                os.unlink(tmp)
