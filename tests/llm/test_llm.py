"""Chat-model backends: the real local SmolLM2, an OpenAI-compatible server on loopback, and the
Databricks backend (a stand-in SDK client: no workspace is reachable here)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import pytest
from langchain_core.messages import HumanMessage, SystemMessage

from ragops.config import LLMConfig
from ragops.llm import get_chat_model, llm_identity
from ragops.llm.messages import from_dicts, to_dicts
from ragops.llm.remote import DatabricksChatModel, LLMError, OpenAICompatibleChatModel
from ragops.weights.llm import LLMNotFoundError, resolve_llm_path


@pytest.fixture(scope="module")
def local():
    """The transformers backend (the llama.cpp one is tested in test_llamacpp.py)."""
    return get_chat_model(LLMConfig(backend="transformers", max_new_tokens=12))


def test_packaged_gguf_is_converted_once_to_a_loadable_folder():
    path = resolve_llm_path("SmolLM2-135M-Instruct")
    assert (path / "config.json").exists() and (path / "model.safetensors").exists()
    assert resolve_llm_path("SmolLM2-135M-Instruct") == path  # cached
    with pytest.raises(LLMNotFoundError, match="never downloaded"):
        resolve_llm_path("meta-llama/Llama-3-8B")


def test_local_model_generates_with_token_counts(local):
    reply = local.invoke([SystemMessage("You are terse."), HumanMessage("Name a colour.")])
    assert isinstance(reply.content, str) and reply.content
    usage = reply.usage_metadata
    assert usage["input_tokens"] > 5 and 1 <= usage["output_tokens"] <= 12
    assert reply.response_metadata["tokens_per_second"] > 0
    timings = reply.response_metadata["timings"]
    assert 0 < timings["ttft_s"] <= timings["total_s"]


def test_local_model_is_deterministic_at_temperature_zero(local):
    a = local.invoke("Count to three.").content
    b = local.invoke("Count to three.").content
    assert a == b


def test_local_model_streams_tokens(local):
    chunks = list(local.stream("Say hello."))
    text = "".join(str(c.content) for c in chunks)
    assert len([c for c in chunks if c.content]) >= 2
    assert text.strip() == local.invoke("Say hello.").content.strip()


def test_message_conversion_and_errors():
    msgs = from_dicts([{"role": "system", "content": "s"}, {"role": "user", "content": "u"}])
    assert to_dicts(msgs) == [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]
    with pytest.raises(ValueError, match=r"messages\[0\]\.role='robot'"):
        from_dicts([{"role": "robot", "content": "x"}])
    with pytest.raises(ValueError, match=r"messages\[1\] must be an object"):
        from_dicts([{"role": "user", "content": "x"}, "hello"])


@pytest.fixture(scope="module")
def openai_server():
    requests = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            requests.append(body)
            if body["model"] == "broken":
                self.send_response(400)
                self.end_headers()
                self.wfile.write(b'{"error": "bad model"}')
                return
            words = ["The", " answer", " is", " 42."]
            if body.get("stream"):
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                for w in words:
                    self.wfile.write(f"data: {json.dumps({'choices': [{'delta': {'content': w}}]})}\n\n".encode())
                usage = {"choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13}}
                self.wfile.write(f"data: {json.dumps(usage)}\n\ndata: [DONE]\n\n".encode())
                return
            payload = json.dumps({"model": body["model"], "choices": [{"message": {"role": "assistant",
                                  "content": "".join(words)}}], "usage": {"prompt_tokens": 9, "completion_tokens": 4}})
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(payload.encode())

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/v1", requests
    server.shutdown()


def test_openai_compatible_backend(openai_server):
    url, requests = openai_server
    model = get_chat_model(LLMConfig(backend="openai", model="gpt-x", endpoint=url, max_new_tokens=7))
    reply = model.invoke([SystemMessage("sys"), HumanMessage("q?")])
    assert reply.content == "The answer is 42."
    assert reply.usage_metadata["total_tokens"] == 13
    assert requests[-1]["messages"] == [{"role": "system", "content": "sys"}, {"role": "user", "content": "q?"}]
    assert requests[-1]["max_tokens"] == 7
    chunks = list(model.stream("q?"))
    assert "".join(str(c.content) for c in chunks) == "The answer is 42."
    assert requests[-1]["stream"] is True
    with pytest.raises(LLMError, match="HTTP 400"):
        OpenAICompatibleChatModel(base_url=url, model_name="broken", max_retries=0).invoke("x")
    assert llm_identity(LLMConfig(backend="openai", model="gpt-x", endpoint=url)) == f"openai:gpt-x@{url}"


def test_databricks_backend_through_the_sdk():
    calls = []

    def query(**kwargs):
        calls.append(kwargs)
        msg = SimpleNamespace(content="Served answer.")
        usage = SimpleNamespace(prompt_tokens=5, completion_tokens=2, total_tokens=7)
        return SimpleNamespace(choices=[SimpleNamespace(message=msg, text=None)], usage=usage, model="dbrx")

    client = SimpleNamespace(serving_endpoints=SimpleNamespace(query=query))
    reply = DatabricksChatModel(endpoint="chat-ep", client=client, max_new_tokens=5).invoke("hi")
    assert reply.content == "Served answer." and reply.usage_metadata["total_tokens"] == 7
    assert calls[0]["name"] == "chat-ep" and calls[0]["max_tokens"] == 5
    assert calls[0]["messages"][0].content == "hi"
