"""Feedback: validated, tied to a logged request, one row per request and key (the latest wins),
and read back by evaluation's ``from_feedback``. Real Delta tables on a tmp root."""

from __future__ import annotations

import pytest

from ragops.errors import RagopsError
from ragops.evaluation.eval_sets import from_feedback
from ragops.lakehouse import open_lakehouse
from ragops.serving.gateway.feedback import FeedbackError, FeedbackStore, UnknownRequest
from ragops.serving.gateway.journal import InferenceLog

from .test_journal import make_record


@pytest.fixture
def served(make_settings):
    """A started inference log that has served request r1 (not flushed yet: feedback may come first)."""
    settings = make_settings()
    log = InferenceLog(settings, flush_every_s=60)
    log.start()
    log.record(make_record("r1"))
    yield settings, log
    log.close()


def feedback_rows(settings):
    return open_lakehouse(settings).read("feedback").sort_values("key_name").reset_index(drop=True)


def test_a_second_submit_by_the_same_key_replaces_the_first(served):
    settings, log = served
    store = FeedbackStore(settings, log)
    first = store.submit("r1", "alice", "up", comment="helpful")
    second = store.submit("r1", "alice", "down", comment="actually wrong", corrected_answer="14 days")
    assert first == second
    rows = feedback_rows(settings)
    assert len(rows) == 1
    assert rows.loc[0, ["feedback_id", "request_id", "key_name", "rating", "comment", "corrected_answer"]].tolist() \
        == [first, "r1", "alice", -1, "actually wrong", "14 days"]


def test_each_key_has_its_own_feedback_on_a_request(served):
    settings, log = served
    store = FeedbackStore(settings, log)
    a, b = store.submit("r1", "alice", "up"), store.submit("r1", "bob", "down")
    assert a != b
    rows = feedback_rows(settings)
    assert rows["key_name"].tolist() == ["alice", "bob"] and rows["rating"].tolist() == [1, -1]


def test_feedback_on_an_unknown_request_is_refused(served):
    settings, log = served
    with pytest.raises(UnknownRequest, match="no request with id 'r-unknown'") as info:
        FeedbackStore(settings, log).submit("r-unknown", "alice", "up")
    assert isinstance(info.value, RagopsError)
    assert not open_lakehouse(settings).exists("feedback")


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"rating": "meh"}, "rating"),
    ({"rating": 1}, "rating"),
    ({"request_id": ""}, "request_id"),
    ({"comment": {"text": "nested"}}, "comment"),
    ({"corrected_answer": "x" * 40_000}, "corrected_answer"),
])
def test_bad_feedback_names_the_field(served, kwargs, field):
    settings, log = served
    args = {"request_id": "r1", "key_name": "alice", "rating": "up", **kwargs}
    with pytest.raises(FeedbackError, match=f"'{field}'") as info:
        FeedbackStore(settings, log).submit(**args)
    assert info.value.field == field and isinstance(info.value, RagopsError)


def test_feedback_becomes_an_eval_set_question(served):
    settings, log = served
    log.record(make_record("r2", question="What port does the collector use?", answer="Port 9000"))
    log.record(make_record("r2", question="What port does the collector use?", answer="Port 9001",
                           shadow=True, target="challenger"))
    log.flush()
    store = FeedbackStore(settings, log)
    store.submit("r1", "alice", "down", corrected_answer="Raw samples are kept for 14 days.")
    store.submit("r2", "bob", "up")
    frame = from_feedback(open_lakehouse(settings)).set_index("question_id")
    assert sorted(frame.index) == ["fb-r1", "fb-r2"]
    assert frame.loc["fb-r1", "question"] == "How long are raw samples kept?"
    assert frame.loc["fb-r1", "expected_answers"] == ["Raw samples are kept for 14 days."]
    # The answer bob was served and rated, not the shadow model's answer logged under the same id.
    assert frame.loc["fb-r2", "expected_answers"] == ["Port 9000"]
    assert frame.loc["fb-r2", "expected_doc_ids"] == ["guides/retention.md"]
