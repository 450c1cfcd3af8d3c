"""Continuous batching on ``llm_backend=openvino`` (``ragops serve``): concurrent requests from several
threads get the answers they get one at a time (float32), stream and stop like them, and free their
place when cut short. ``ragops serve`` turning it on: ``tests/serving/test_local.py``."""

from __future__ import annotations

import concurrent.futures as cf
import time

import pytest
from langchain_core.messages import HumanMessage, SystemMessage

from ragops.llm.openvino_llm import OpenVinoChatModel
from tests.finetune.test_register import save_tiny_merged


def chat(question: str) -> list:
    return [SystemMessage("You are a documentation assistant. Answer from the context only."),
            HumanMessage(f"Context:\n[1] Retention: raw samples are kept for 30 days, rollups 2 years.\n\n"
                         f"Question: {question}")]


QUESTIONS = ["How long are raw samples kept?", "How long are rollups kept?", "What is kept for 30 days? ✓",
             "Summarise the retention policy in one line."]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("ovb")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RAGOPS_MODEL_CACHE", str(root / "cache"))
        yield save_tiny_merged(root / "merged")


def test_concurrent_batched_answers_are_the_one_at_a_time_answers_in_float32(tiny):
    alone = OpenVinoChatModel(model_name=str(tiny), dtype="float32", max_new_tokens=16, batching=False)
    batched = OpenVinoChatModel(model_name=str(tiny), dtype="float32", max_new_tokens=16, batching=True)
    expected = [alone.invoke(chat(q)) for q in QUESTIONS]
    with cf.ThreadPoolExecutor(len(QUESTIONS)) as pool:  # all four in flight at once
        got = list(pool.map(lambda q: batched.invoke(chat(q)), QUESTIONS))
    assert [g.content for g in got] == [e.content for e in expected]
    assert [g.usage_metadata for g in got] == [e.usage_metadata for e in expected]
    assert all(g.response_metadata["batched"] and not e.response_metadata["batched"]
               for g, e in zip(got, expected, strict=True))
    assert all(g.response_metadata["timings"]["ttft_s"] > 0 for g in got)


def test_a_stop_sequence_cuts_the_stream_and_frees_the_request(tiny):
    model = OpenVinoChatModel(model_name=str(tiny), dtype="float32", max_new_tokens=24, batching=True)
    full = model.invoke(chat(QUESTIONS[0])).content
    assert len(full) > 4
    stop = full[2:4]
    pieces = [c.content for c in model.stream(chat(QUESTIONS[0]), stop=[stop])]
    cut = "".join(pieces).strip()
    assert stop not in cut and full.startswith(cut)
    engine = model.engine()
    deadline = time.monotonic() + 10
    while engine._active and time.monotonic() < deadline:  # the scheduler drops it at its next step
        time.sleep(0.05)
    assert not engine._active
