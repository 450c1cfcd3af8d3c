"""The unmodified ``openai`` SDK and LangChain's ``ChatOpenAI`` against the gateway, streaming
included: what a user's existing client code gets back, errors raised as the SDK's own types."""

from __future__ import annotations

import openai
import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langchain_openai import ChatOpenAI

from ragops.config import Settings
from ragops.serving.gateway.app import create_app
from ragops.serving.gateway.routing import Router
from tests.serving.gateway.test_app import (
    KEYS,
    FakeFeedback,
    FakeLog,
    FakeUpstream,
    Served,
    fake_factory,
    free_dead_url,
    gateway_config,
)

ANSWER = "The collector listens on port 4317."
QUESTION = "Which port does the collector listen on?"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    settings = Settings.from_variables({"root": str(tmp_path_factory.mktemp("clients") / "state")})
    log = FakeLog()
    with FakeUpstream() as upstream:
        config = gateway_config(upstream.url, free_dead_url())
        app = create_app(config, settings, inference_log=log, feedback=FakeFeedback(log),
                         backend_factory=fake_factory({}), router=Router(config, seed=11))
        with Served(app) as served:
            yield served.url, log


@pytest.fixture
def client(gateway):
    url, _ = gateway
    with openai.OpenAI(base_url=f"{url}/v1", api_key=KEYS["alice"], max_retries=0, timeout=10) as c:
        yield c


def test_openai_sdk_chat_completion(client, gateway):
    _, log = gateway
    reply = client.chat.completions.create(model="rag_chain", messages=[{"role": "user", "content": QUESTION}])
    assert reply.choices[0].message.content == ANSWER and reply.choices[0].finish_reason == "stop"
    assert reply.usage.prompt_tokens == 11 and reply.usage.total_tokens == 17
    extra = reply.model_extra  # the gateway's fields beyond OpenAI's schema survive the SDK's parsing
    assert extra["sources"][0]["chunk_id"] == "d1:0" and extra["model_version"] == "7"
    assert [r.status for r in log.records if r.request_id == reply.id] == ["ok"]


def test_openai_sdk_streaming_with_usage(client):
    chunks = list(client.chat.completions.create(model="rag_chain", stream=True,
                                                 stream_options={"include_usage": True},
                                                 messages=[{"role": "user", "content": QUESTION}]))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == ANSWER
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 6
    assert len({c.id for c in chunks}) == 1


def test_openai_sdk_raises_when_a_stream_fails_mid_answer(client):
    stream = client.chat.completions.create(model="stalls", stream=True,  # stalls past its timeout
                                            messages=[{"role": "user", "content": QUESTION}])
    received = []
    with pytest.raises(openai.APIError, match="did not finish"):
        for chunk in stream:
            received.extend(c.delta.content or "" for c in chunk.choices)
    assert "".join(received) == "The "  # what came before the failure was delivered


def test_openai_sdk_lists_the_routes_as_models(client):
    assert "rag_chain" in [m.id for m in client.models.list()]


def test_openai_sdk_raises_its_own_errors(gateway, client):
    url, _ = gateway
    with openai.OpenAI(base_url=f"{url}/v1", api_key="sk-not-a-key", max_retries=0) as wrong, \
            pytest.raises(openai.AuthenticationError) as denied:
        wrong.chat.completions.create(model="rag_chain", messages=[{"role": "user", "content": "hi"}])
    assert "sk-not-a-key" not in str(denied.value)
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="no-such-route", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model="rag_chain", messages=[{"role": "assistant", "content": "hi"}])
    assert bad.value.param == "messages[0].role"
    with pytest.raises(openai.APIStatusError) as timeout:
        client.chat.completions.create(model="slow", messages=[{"role": "user", "content": "hi"}])
    assert timeout.value.status_code == 504
    with openai.OpenAI(base_url=f"{url}/v1", api_key=KEYS["bob"], max_retries=0) as limited:
        for _ in range(2):
            limited.chat.completions.create(model="rag_chain", messages=[{"role": "user", "content": "hi"}])
        with pytest.raises(openai.RateLimitError) as limit:
            limited.chat.completions.create(model="rag_chain", messages=[{"role": "user", "content": "hi"}])
    assert int(limit.value.response.headers["retry-after"]) >= 1


def chat_model(url: str, model: str = "rag_chain", **kwargs) -> ChatOpenAI:
    return ChatOpenAI(base_url=f"{url}/v1", api_key=KEYS["alice"], model=model, max_retries=0, timeout=10, **kwargs)


def test_langchain_chat_openai_invoke_with_history(gateway):
    url, log = gateway
    question = "Which port, asked through LangChain?"
    reply = chat_model(url).invoke([SystemMessage("be brief"), HumanMessage("What is retention?"),
                                    AIMessage("30 days."), HumanMessage(question)])
    assert reply.content == ANSWER
    assert reply.usage_metadata["input_tokens"] == 11 and reply.usage_metadata["output_tokens"] == 6
    (row,) = [r for r in log.records if r.question == question]
    assert row.status == "ok" and row.key_name == "alice"


def test_langchain_chat_openai_streaming(gateway):
    url, _ = gateway
    chunks = list(chat_model(url, stream_usage=True).stream(QUESTION))
    assert "".join(c.content for c in chunks) == ANSWER
    total = chunks[0]
    for c in chunks[1:]:
        total += c
    assert total.usage_metadata["total_tokens"] == 17


def test_langchain_chat_openai_through_an_upstream_route(gateway):
    url, _ = gateway
    assert chat_model(url, model="remote").invoke("ping?").content == "upstream says: ping?"
