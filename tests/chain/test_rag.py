"""The RAG chain on the sample corpus: sources, citations, "don't know", prompts and tracing."""

from __future__ import annotations

import mlflow
import pytest

from ragops.chain import DONT_KNOW, RagChain, ensure_prompts, resolve_prompt
from ragops.chain.rag import tidy_answer
from ragops.config import ChainConfig, LLMConfig
from ragops.index import Searcher
from ragops.llm import get_chat_model
from ragops.tracking import configure_mlflow


@pytest.fixture(scope="module")
def chain(built):
    settings, _ = built
    configure_mlflow(settings)
    ensure_prompts()
    cfg = ChainConfig(llm=LLMConfig(max_new_tokens=24))
    return RagChain(Searcher.open(settings), get_chat_model(cfg.llm), resolve_prompt("rag_answer", "production"), cfg)


@pytest.mark.parametrize(
    "question, doc",
    [
        ("What is the default retention period for raw samples in a Lumen tenant?", "guides/retention.md"),
        ("On which port does the Lumen Collector listen for pushed data in the native gRPC protocol?",
         "guides/collector-setup.md"),
    ],
)
def test_answers_come_with_the_right_sources(chain, question, doc):
    out = chain.invoke(question)
    assert out["answer"] and out["answer"] != DONT_KNOW
    assert doc in [s["doc_id"] for s in out["sources"]]
    assert all(s["vector_score"] >= chain.config.min_similarity for s in out["sources"])
    assert 0 < out["usage"]["completion_tokens"] <= 24 and out["usage"]["prompt_tokens"] > 0
    assert 0 < out["timings"]["ttft_s"] <= out["timings"]["total_s"]
    assert out["lineage"]["prompt_version"] >= 1 and out["lineage"]["index_snapshot"]


def test_off_topic_question_gets_dont_know_without_calling_the_llm(chain, monkeypatch):
    def boom(*a, **k):
        raise AssertionError("the LLM must not be called")

    monkeypatch.setattr(type(chain.llm), "invoke", boom)
    monkeypatch.setattr(type(chain.llm), "stream", boom)
    out = chain.invoke("What is the capital of Mongolia?")
    assert out["answer"] == DONT_KNOW and out["sources"] == []
    assert out["usage"] == {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}


def test_history_is_part_of_the_prompt(chain):
    results = chain.retrieve("retention period")
    msgs = chain.messages("And for rollups?", __import__("ragops.llm", fromlist=["from_dicts"]).from_dicts(
        [{"role": "user", "content": "What is the retention period?"}, {"role": "assistant", "content": "30 days."}]),
        results)
    kinds = [m.type for m in msgs]
    assert kinds == ["system", "human", "ai", "human"]
    assert "[1]" in msgs[-1].content and "And for rollups?" in msgs[-1].content


def test_traces_have_retrieve_prompt_and_generate_spans(chain):
    out = chain.invoke("How long is raw data kept by default?")
    mlflow.flush_trace_async_logging()
    trace = mlflow.get_trace(out["trace_id"])
    names = {s.name for s in trace.data.spans}
    assert {"rag_chain", "retrieve", "prompt", "generate"} <= names
    retrieve = next(s for s in trace.data.spans if s.name == "retrieve")
    assert retrieve.outputs[0]["metadata"]["doc_id"] == out["sources"][0]["doc_id"]


def test_without_trace_no_trace_is_recorded_and_the_answer_is_the_same(chain):
    question = "How long is raw data kept by default?"
    traced, plain = chain.invoke(question), chain.invoke(question, trace=False)
    assert plain["trace_id"] is None and traced["trace_id"]
    assert plain["answer"] == traced["answer"] and plain["sources"] == traced["sources"]


def test_keyword_chain_without_a_floor_never_loads_the_embedder(built, chain):
    from ragops.index.snapshot import SnapshotStore

    settings, _ = built

    def no_embedder():
        raise AssertionError("keyword search without a similarity floor must not load the embedding model")

    searcher = Searcher.for_config(SnapshotStore(settings.index_root).load(None, settings.index), no_embedder,
                                   settings.index)
    cfg = ChainConfig(search_mode="keyword", min_similarity=0.0, llm=LLMConfig(max_new_tokens=8))
    keyword = RagChain(searcher, chain.llm, chain.prompt, cfg).load()
    out = keyword.invoke("default retention period raw samples", trace=False)
    assert "guides/retention.md" in [s["doc_id"] for s in out["sources"]]
    assert all(s["vector_score"] is None for s in out["sources"])


def test_empty_question_is_refused(chain):
    with pytest.raises(ValueError, match="empty"):
        chain.invoke("   ")


def test_streaming_yields_deltas_then_the_full_answer(chain):
    events = list(chain.stream("What is the default retention period?"))
    assert any("delta" in e for e in events[:-1])
    final = events[-1]
    assert final["done"] and final["sources"] and "time_to_first_token_ms" in final["timings_ms"]
    assert final["usage"]["completion_tokens"] > 0 and final["timings"]["ttft_s"] > 0


def test_prompt_registry_versions_and_aliases(built):
    settings, _ = built
    configure_mlflow(settings)
    first = ensure_prompts()
    assert ensure_prompts() == first  # unchanged text → no new version
    prompt = resolve_prompt("rag_answer", "production")
    assert prompt.version == first["rag_answer"] and "{{question}}" in prompt.messages[-1]["content"]
    new = mlflow.genai.register_prompt("rag_answer", [{"role": "user", "content": "Q: {{question}} C: {{context}}"}])
    mlflow.genai.set_prompt_alias("rag_answer", "staging", int(new.version))
    assert resolve_prompt("rag_answer", "staging").version == int(new.version)
    assert resolve_prompt("rag_answer", "production").version == first["rag_answer"]
    with pytest.raises(LookupError, match="not in the prompt registry"):
        resolve_prompt("no_such_prompt", "production")


def test_tidy_answer_drops_repeats_and_fragments():
    assert tidy_answer("It is 30 days. It is 30 days. It is") == "It is 30 days."
    assert tidy_answer("Port 4817 [1].") == "Port 4817 [1]."
