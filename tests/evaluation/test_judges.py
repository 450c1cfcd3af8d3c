"""LLM-as-judge machinery: reply parsing, the on-disk verdict cache, retries with back-off, the rate
limiter, and errors that say what the judge replied. Scripted chat models stand in for the judge
(what a real judge concludes is not under test here), plus one run on the real local model."""

from __future__ import annotations

import json
import math
import threading
import time
from typing import Any

import pytest
from langchain_core.language_models import BaseChatModel
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import Field

from ragops.evaluation.judges import Judge, JudgeError, JudgeVerdict, RateLimiter, parse_verdict

ANSWER = "Raw samples are kept for 30 days [1]."
CONTEXTS = ["Raw samples are retained for 30 days by default.", "The collector listens on port 4817."]


class ScriptedLLM(BaseChatModel):
    """Replies from a script (an Exception item is raised); the last item repeats. Records calls."""

    replies: list[Any]
    invocations: int = 0
    times: list[float] = Field(default_factory=list)
    prompts: list[str] = Field(default_factory=list)

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None, run_manager: Any = None,
                  **kwargs: Any) -> ChatResult:
        self.times.append(time.monotonic())
        self.prompts.append("\n".join(str(m.content) for m in messages))
        reply = self.replies[min(self.invocations, len(self.replies) - 1)]
        self.invocations += 1
        if isinstance(reply, Exception):
            raise reply
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=reply))])


def verdict_json(score: int, rationale: str = "fine") -> str:
    return json.dumps({"score": score, "rationale": rationale})


# --- parsing -------------------------------------------------------------------------------

@pytest.mark.parametrize(("reply", "score", "rationale"), [
    ('{"score": 4, "rationale": "mostly supported"}', 4, "mostly supported"),
    ('Here is my grade: {"score": 5, "rationale": "all claims supported"} Hope this helps!', 5,
     "all claims supported"),
    ('```json\n{"score": 2, "rationale": "one claim is missing"}\n```', 2, "one claim is missing"),
    ('{"Score": "3", "reason": "half"}', 3, "half"),
    ("Score: 4\nRationale: the port is in passage 2", 4, "the port is in passage 2"),
    ("**Score:** 1/5 — nothing in the passages mentions Mars.", 1, None),
])
def test_parse_verdict_reads_json_fences_and_score_lines(reply, score, rationale):
    got_score, got_rationale = parse_verdict(reply)
    assert got_score == score
    if rationale is not None:
        assert got_rationale == rationale
    else:
        assert "Mars" in got_rationale  # no rationale line: the reply itself explains the score


@pytest.mark.parametrize(("reply", "why"), [
    ("", "empty"),
    ("The answer looks good to me.", "no score found"),
    ('{"score": 7, "rationale": "great"}', "outside 1-5"),
    ('{"score": "high"}', "not a number"),
    ("Score: 8/10", "not on the 1-5 scale"),
])
def test_parse_verdict_rejects_what_it_cannot_read(reply, why):
    with pytest.raises(ValueError, match=why):
        parse_verdict(reply)


@pytest.mark.parametrize(("rating", "score"), [(1, 0.0), (2, 0.25), (3, 0.5), (4, 0.75), (5, 1.0)])
def test_ratings_map_linearly_onto_0_1(rating, score):
    # (rating - 1) / 4
    judge = Judge(FakeListChatModel(responses=[verdict_json(rating, "because")]), identity="fake:judge")
    verdict = judge.judge_groundedness(ANSWER, CONTEXTS)
    assert verdict == JudgeVerdict(score=score, rationale="because", cached=False)
    assert judge.calls == 1 and judge.cache_hits == 0 and judge.failures == 0


def test_each_judge_sends_its_inputs_to_the_llm():
    llm = ScriptedLLM(replies=[verdict_json(4)])
    judge = Judge(llm, identity="fake:judge")
    judge.judge_groundedness(ANSWER, CONTEXTS)
    judge.judge_answer_relevance("How long are raw samples kept?", ANSWER)
    judge.judge_context_relevance("How long are raw samples kept?", CONTEXTS)
    grounded, relevant, context = llm.prompts
    assert "groundedness" in grounded and "[1] Raw samples are retained" in grounded and ANSWER in grounded
    assert "[2] The collector listens on port 4817." in grounded
    assert "addresses the question" in relevant and "How long are raw samples kept?" in relevant
    assert "[2] The collector" in context and "How long are raw samples kept?" in context
    assert all('{"score": <integer from 1 to 5>' in p for p in llm.prompts)


# --- caching -------------------------------------------------------------------------------

def test_cache_makes_reruns_free_across_judge_instances(tmp_path):
    llm = ScriptedLLM(replies=[verdict_json(4, "supported")])
    judge = Judge(llm, identity="fake:judge", cache_dir=tmp_path)
    first = judge.judge_groundedness(ANSWER, CONTEXTS)
    second = judge.judge_groundedness(ANSWER, CONTEXTS)
    assert first == JudgeVerdict(0.75, "supported", cached=False)
    assert second == JudgeVerdict(0.75, "supported", cached=True)
    assert llm.invocations == 1 and judge.calls == 1 and judge.cache_hits == 1
    files = list(tmp_path.iterdir())
    assert len(files) == 1 and files[0].suffix == ".json"  # one file per key, no temp files left
    entry = json.loads(files[0].read_text())
    assert entry["judge"] == "fake:judge" and entry["metric"] == "groundedness" and entry["rating"] == 4

    # a new process/judge on the same cache: no LLM call at all (this LLM would fail if called)
    offline = ScriptedLLM(replies=[RuntimeError("must not be called")])
    again = Judge(offline, identity="fake:judge", cache_dir=tmp_path)
    assert again.judge_groundedness(ANSWER, CONTEXTS) == JudgeVerdict(0.75, "supported", cached=True)
    assert offline.invocations == 0 and again.calls == 0 and again.cache_hits == 1


def test_cache_key_separates_judges_metrics_and_inputs(tmp_path):
    llm = ScriptedLLM(replies=[verdict_json(2)])
    Judge(llm, identity="fake:judge-a", cache_dir=tmp_path).judge_groundedness(ANSWER, CONTEXTS)
    other_model = Judge(llm, identity="fake:judge-b", cache_dir=tmp_path)
    assert other_model.judge_groundedness(ANSWER, CONTEXTS).cached is False  # another judge's verdicts
    assert other_model.judge_groundedness(ANSWER, CONTEXTS[:1]).cached is False  # other contexts
    assert other_model.judge_context_relevance(ANSWER, CONTEXTS).cached is False  # other metric
    assert llm.invocations == 4 and len(list(tmp_path.glob("*.json"))) == 4


def test_unreadable_cache_entry_is_judged_again(tmp_path):
    llm = ScriptedLLM(replies=[verdict_json(5)])
    judge = Judge(llm, identity="fake:judge", cache_dir=tmp_path)
    judge.judge_answer_relevance("q?", "a.")
    (entry,) = tmp_path.glob("*.json")
    entry.write_text("{not json")
    assert judge.judge_answer_relevance("q?", "a.") == JudgeVerdict(1.0, "fine", cached=False)
    assert llm.invocations == 2
    assert json.loads(entry.read_text())["score"] == 1.0  # repaired


# --- retries and failures ------------------------------------------------------------------

def test_retries_llm_errors_and_unreadable_replies_with_exponential_backoff():
    llm = ScriptedLLM(replies=[ConnectionError("503 from endpoint"), "I think it is fine.", verdict_json(5)])
    judge = Judge(llm, identity="fake:judge", max_retries=3, backoff_s=0.02)
    verdict = judge.judge_groundedness(ANSWER, CONTEXTS)
    assert verdict.score == 1.0 and not verdict.cached
    assert judge.calls == 3 and judge.failures == 0
    # back-off before retry n (n = 1, 2) is backoff_s · 2**(n-1): 0.02 s, then 0.04 s
    first_gap, second_gap = llm.times[1] - llm.times[0], llm.times[2] - llm.times[1]
    assert first_gap >= 0.018 and second_gap >= 0.038


def test_exhausted_retries_raise_judge_error_naming_judge_metric_and_reply(tmp_path):
    reply = "The answer seems grounded. " + "x" * 400
    llm = ScriptedLLM(replies=[reply])
    judge = Judge(llm, identity="local:SmolLM2-135M-Instruct", cache_dir=tmp_path, max_retries=2, backoff_s=0)
    with pytest.raises(JudgeError) as caught:
        judge.judge_answer_relevance("How long are raw samples kept?", ANSWER)
    message = str(caught.value)
    assert "local:SmolLM2-135M-Instruct" in message and "answer_relevance" in message
    assert "after 3 attempt(s)" in message and "no score found" in message
    assert repr(reply[:200]) in message and "x" * 201 not in message  # the reply, cut at 200 chars
    assert caught.value.metric == "answer_relevance" and caught.value.reply == reply[:200]
    assert judge.calls == 3 and judge.failures == 1
    assert list(tmp_path.iterdir()) == []  # failures are not cached: the next run tries again


def test_llm_errors_surface_in_judge_error():
    llm = ScriptedLLM(replies=[TimeoutError("read timed out after 30s")])
    judge = Judge(llm, identity="openai:gpt-judge@http://judge:8000/v1", max_retries=1, backoff_s=0)
    with pytest.raises(JudgeError, match=r"context_relevance after 2 attempt\(s\).*TimeoutError: read timed out"):
        judge.judge_context_relevance("q?", CONTEXTS)
    assert judge.stats() == {"judge_calls": 2, "judge_cache_hits": 0, "judge_failures": 1}


def test_judge_rejects_bad_settings():
    llm = FakeListChatModel(responses=["{}"])
    with pytest.raises(ValueError, match="identity"):
        Judge(llm, identity="")
    with pytest.raises(ValueError, match="max_retries"):
        Judge(llm, identity="x", max_retries=-1)
    with pytest.raises(ValueError, match="max_calls_per_minute"):
        Judge(llm, identity="x", max_calls_per_minute=0)


# --- rate limit ----------------------------------------------------------------------------

def test_rate_limit_spaces_llm_calls_but_not_cache_hits(tmp_path):
    # 600 calls/minute → at least 60/600 = 0.1 s between calls; 3 calls take ≥ 0.2 s
    llm = ScriptedLLM(replies=[verdict_json(3)])
    judge = Judge(llm, identity="fake:judge", cache_dir=tmp_path, max_calls_per_minute=600)
    started = time.monotonic()
    for i in range(3):
        judge.judge_answer_relevance(f"question {i}?", "answer.")
    assert time.monotonic() - started < 1.0
    # Slots are 0.1 s apart from the first one: call i never runs before start + 0.1 * i. (Gaps
    # between calls are not asserted: a call delayed after its slot on a busy machine may be
    # followed sooner, and the limit still holds.)
    since_start = [t - started for t in llm.times]
    assert len(since_start) == 3 and all(s >= 0.1 * i for i, s in enumerate(since_start)), since_start
    # the same three again come from the cache: no LLM call, no waiting for a slot
    started = time.monotonic()
    assert all(judge.judge_answer_relevance(f"question {i}?", "answer.").cached for i in range(3))
    assert time.monotonic() - started < 0.09 and llm.invocations == 3


def test_rate_limiter_is_thread_safe():
    # 1200/minute → 0.05 s slots; 4 threads at once must still be 0.05 s apart
    limiter = RateLimiter(1200)
    stamps: list[float] = []
    lock = threading.Lock()

    def call() -> None:
        limiter.wait()
        with lock:
            stamps.append(time.monotonic())

    threads = [threading.Thread(target=call) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stamps.sort()
    assert all(b - a >= 0.045 for a, b in zip(stamps, stamps[1:], strict=False)), stamps


# --- the real local model ------------------------------------------------------------------

@pytest.mark.slow
def test_real_local_llm_gives_a_verdict_or_a_clear_error(tmp_path):
    from ragops.config import LLMConfig
    from ragops.llm import get_chat_model, llm_identity

    config = LLMConfig(max_new_tokens=48)
    judge = Judge(get_chat_model(config), identity=llm_identity(config), cache_dir=tmp_path, max_retries=1,
                  backoff_s=0)
    try:
        verdict = judge.judge_groundedness(ANSWER, CONTEXTS)
    except JudgeError as exc:  # a 135M model may not follow the format: it must say so, not guess
        assert "groundedness" in str(exc) and judge.failures == 1 and judge.calls == 2
    else:
        assert isinstance(verdict, JudgeVerdict) and not math.isnan(verdict.score)
        assert 0.0 <= verdict.score <= 1.0 and judge.failures == 0
