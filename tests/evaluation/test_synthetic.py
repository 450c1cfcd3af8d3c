"""Synthetic questions: tolerant parsing, exact drop accounting, deterministic sampling, a real local LLM."""

from __future__ import annotations

import re
from typing import Any

import pandas as pd
import pytest
from langchain_core.language_models import BaseChatModel
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult

from ragops.evaluation.eval_sets import EVAL_COLUMNS, read_eval_set, register_eval_set
from ragops.evaluation.synthetic import DROP_REASONS, generate_questions, parse_reply
from ragops.lakehouse import open_lakehouse

CHUNKS = pd.DataFrame([
    ("c1", "guides/retention.md", "Raw samples are kept for 30 days by default.", "Retention"),
    ("c2", "guides/collector-setup.md", "The collector listens on port 4817 for gRPC.", "Collector setup"),
    ("c3", "guides/index.md", "The index is maintained by the platform team.", None),
    ("c4", "kb/kb-1.json", "Disk full errors stop ingestion.", "KB 1"),
    ("c5", "guides/retention-faq.md", "Retention is 30 days unless changed.", "Retention FAQ"),
    ("c6", "pricing/sla.pdf", "Support answers within 4 hours.", "SLA"),
    ("c7", "release-notes/4.0.0.txt", "Version 4.0 adds downsampling.", "4.0.0"),
], columns=["chunk_id", "doc_id", "text", "title"])

REPLIES = [
    '{"question": "What is the default retention period for raw samples?", "answer": "30 days"}',
    'Sure! Here it is:\n```json\n{"question": "Which port does the collector listen on?", "answer": "4817"}\n```',
    "Question: Who maintains the index?\nAnswer: the platform team.",
    "I am sorry, I cannot write a question about this.",
    '{"question": "What is the default retention period for raw samples ?", "answer": "30 days"}',  # duplicate
    '{"question": "How fast is support?", "answer": "within 2 hours"}',  # not what the chunk says
    '{"question": "", "answer": "downsampling"}',
]


def test_parse_reply_accepts_loose_formats():
    assert parse_reply('{"question": "Q?", "answer": "A"}') == ("Q?", "A")
    assert parse_reply('Here:\n```json\n{"Question": " Q?\\n", "Answer": 42}\n```\nHope it helps') == ("Q?", "42")
    assert parse_reply('The JSON is {"question": "Q?", "answer": ["A", "B"]} as asked.') == ("Q?", "A")
    assert parse_reply("**Question:** What is it?\n**Answer:** a thing") == ("What is it?", "a thing")
    assert parse_reply("question: What is it? answer: a thing") == ("What is it?", "a thing")
    assert parse_reply('Question: "What is it?"\n\nAnswer: "a thing that is') == ("What is it?", "a thing that is")
    assert parse_reply('{"question": "Q?"}') == ("Q?", "")
    assert parse_reply("no structure here {not json}") is None


def test_generation_keeps_good_questions_and_counts_every_drop(make_settings):
    frame = generate_questions(CHUNKS, FakeListChatModel(responses=REPLIES), llm_identity="fake:test")
    stats = frame.attrs["generation"]
    assert stats["chunks"] == stats["requested"] == 7 and stats["kept"] == 3 == len(frame)
    assert stats["dropped"] == {"llm_error": 0, "unparseable": 1, "empty": 1, "duplicate": 1,
                                "answer_not_in_chunk": 1}
    assert list(frame.columns) == EVAL_COLUMNS
    assert frame["question"].tolist() == ["What is the default retention period for raw samples?",
                                          "Which port does the collector listen on?", "Who maintains the index?"]
    assert frame["expected_answers"].tolist() == [["30 days"], ["4817"], ["the platform team."]]
    assert frame["expected_doc_ids"].tolist() == [["guides/retention.md"], ["guides/collector-setup.md"],
                                                  ["guides/index.md"]]
    assert set(frame["origin"]) == {"synthetic"}
    assert all(tags == ["synthetic", "llm:fake:test"] for tags in frame["tags"])
    assert all(re.fullmatch(r"syn-[0-9a-f]{16}", q) for q in frame["question_id"])

    # Input row order does not matter, and ids are stable, so re-registering a re-run is a no-op.
    again = generate_questions(CHUNKS.iloc[::-1], FakeListChatModel(responses=REPLIES), llm_identity="fake:test")
    assert again["question_id"].tolist() == frame["question_id"].tolist()
    with open_lakehouse(make_settings()) as lh:
        assert register_eval_set(lh, "synthetic", frame).created
        assert not register_eval_set(lh, "synthetic", again).created
        assert read_eval_set(lh, "synthetic").frame["origin"].eq("synthetic").all()


class EchoChatModel(BaseChatModel):
    """Asks about the n-th word of the chunk, n = how many earlier questions the prompt lists."""

    prompts: list[str] = []
    fail: bool = False

    @property
    def _llm_type(self) -> str:
        return "echo"

    def _generate(self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None,
                  **kwargs: Any) -> ChatResult:
        if self.fail:
            raise ConnectionError("endpoint unreachable")
        prompt = str(messages[-1].content)
        self.prompts.append(prompt)
        words = prompt.split('"""')[1].split()
        n = sum(1 for line in prompt.splitlines() if line.startswith("- "))
        reply = f'{{"question": "What about {words[n]}?", "answer": "{words[n]}"}}'
        return ChatResult(generations=[ChatGeneration(message=AIMessage(reply))])


def test_sampling_is_seeded_and_follow_up_questions_differ():
    chunks = pd.DataFrame({"chunk_id": [f"c{i:02d}" for i in range(20)], "doc_id": [f"d{i}" for i in range(20)],
                           "text": [f"word{i} alpha beta" for i in range(20)], "title": ""})
    pick = generate_questions(chunks, EchoChatModel(), max_chunks=4, seed=7)["expected_doc_ids"].tolist()
    shuffled = chunks.sample(frac=1, random_state=3)
    assert generate_questions(shuffled, EchoChatModel(), max_chunks=4, seed=7)["expected_doc_ids"].tolist() == pick
    assert generate_questions(chunks, EchoChatModel(), max_chunks=4, seed=8)["expected_doc_ids"].tolist() != pick

    llm = EchoChatModel(prompts=[])
    frame = generate_questions(chunks.head(1), llm, per_chunk=3)
    assert frame["expected_answers"].tolist() == [["word0"], ["alpha"], ["beta"]]
    assert "- What about word0?" in llm.prompts[2] and "- What about alpha?" in llm.prompts[2]


def test_a_dead_llm_is_an_error_not_an_empty_set():
    with pytest.raises(RuntimeError, match="every one of 2 LLM calls failed.*endpoint unreachable"):
        generate_questions(CHUNKS.head(2), EchoChatModel(fail=True))


@pytest.mark.slow
def test_real_local_llm_output_has_the_eval_set_shape():
    from ragops.config import LLMConfig
    from ragops.llm import get_chat_model, llm_identity

    config = LLMConfig(max_new_tokens=64)
    frame = generate_questions(CHUNKS.head(2), get_chat_model(config), llm_identity=llm_identity(config))
    stats = frame.attrs["generation"]
    assert list(frame.columns) == EVAL_COLUMNS
    assert stats["requested"] == 2 and stats["kept"] == len(frame)
    assert stats["kept"] + sum(stats["dropped"][r] for r in DROP_REASONS) == 2
    assert frame["origin"].eq("synthetic").all()
    assert all(tags == ["synthetic", "llm:local[llama.cpp/gguf-f16]:SmolLM2-135M-Instruct"] for tags in frame["tags"])
