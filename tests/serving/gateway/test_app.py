"""The gateway app over real HTTP (uvicorn on 127.0.0.1): the OpenAI response and stream shapes,
auth, body limits, validation, routing outcomes (404, 504, fallback, 502, shadow), limits,
feedback, health/ready/metrics, and the inference log row of every request.

Targets are fast fakes (an in-process backend that answers in microseconds, or a tiny
OpenAI-compatible / MLflow-style HTTP server), so these run in seconds; the real registered
chain is in the ``slow`` test at the end.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
import uvicorn

from ragops.config import Settings
from ragops.serving.gateway.app import create_app
from ragops.serving.gateway.auth import hash_key
from ragops.serving.gateway.backends import Answer, BackendError, Question, make_backend
from ragops.serving.gateway.config import GatewayConfig, KeyConfig, RouteConfig, Target
from ragops.serving.gateway.routing import Router

KEYS = {"alice": "sk-alice-0123456789", "bob": "sk-bob-0123456789", "carol": "sk-carol-0123456789"}
SOURCES = [{"doc_id": "d1", "source_uri": "guides/retention.md", "chunk_id": "d1:0", "score": 0.9,
            "title": "Retention", "vector_score": 0.8}]
LINEAGE = {"index_snapshot": "snap-1", "prompt_version": "3", "chain_config_hash": "abc"}


# --- fakes ---------------------------------------------------------------------------------------

def pieces(text: str) -> list[str]:
    return re.findall(r"\S+\s*", text)


class FakeBackend:
    """A target answering at once (or after ``delay_s``, or failing), recording what it was asked."""

    def __init__(self, target: Target, text: str = "The collector listens on port 4317.", *,
                 delay_s: float = 0.0, fail: bool = False, version: str = "7", stall_s: float = 0.0) -> None:
        self.target, self.text, self.delay_s, self.fail, self.version = target, text, delay_s, fail, version
        self.stall_s = stall_s  # a streamed answer stops for this long after its first piece
        self.questions: list[Question] = []
        self.loaded = threading.Event()
        self.loaded.set()

    @property
    def ready(self) -> bool:
        return self.loaded.is_set()

    async def load(self) -> None:
        while not self.loaded.is_set():
            await asyncio.sleep(0.01)

    def _answer(self) -> Answer:
        completion = len(pieces(self.text))
        return Answer(text=self.text, sources=[{k: s[k] for k in ("doc_id", "source_uri", "chunk_id", "score")}
                                               for s in SOURCES],
                      usage={"prompt_tokens": 11, "completion_tokens": completion, "total_tokens": 11 + completion},
                      model_uri=self.target.model, model_version=self.version, lineage=dict(LINEAGE),
                      access={"groups": []})

    async def complete(self, question: Question) -> Answer:
        self.questions.append(question)
        await asyncio.sleep(self.delay_s)
        if self.fail:
            raise BackendError(f"{self.target.name} is down")
        return self._answer()

    async def stream(self, question: Question):
        self.questions.append(question)
        await asyncio.sleep(self.delay_s)
        if self.fail:
            raise BackendError(f"{self.target.name} is down")
        for i, piece in enumerate(pieces(self.text)):
            yield piece
            if i == 0 and self.stall_s:
                await asyncio.sleep(self.stall_s)
        yield self._answer()

    async def aclose(self) -> None:
        return None


class NoSecretsCheck:
    """A per-route check in the guardrails slot: refuses questions about passwords, redacts answers."""

    def before(self, request) -> None:
        from ragops.serving.gateway.app import CheckRefused

        flagged = "password" in request.question.lower()
        request.guardrails.append({"check": "no_secrets", "stage": "input", "passed": not flagged})
        if flagged:
            raise CheckRefused("questions about passwords are refused on this route")

    def after(self, request, answer: Answer) -> Answer:
        request.guardrails.append({"check": "no_secrets", "stage": "output", "passed": True})
        answer.text = answer.text.replace("4317", "[port]")
        return answer


class FakeLog:
    """The InferenceLog interface, keeping rows in memory."""

    def __init__(self) -> None:
        self.records: list[Any] = []

    def start(self) -> None: ...

    def close(self) -> None: ...

    def depth(self) -> int:
        return 3

    def record(self, rec) -> None:
        self.records.append(rec)

    def seen(self, request_id: str) -> bool:
        return any(r.request_id == request_id for r in self.records)

    def rows(self, request_id: str, shadow: bool | None = None) -> list[Any]:
        return [r for r in self.records if r.request_id == request_id and (shadow is None or r.shadow == shadow)]


class FakeFeedback:
    def __init__(self, log: FakeLog) -> None:
        self.log, self.submitted = log, []

    def submit(self, request_id, key_name, rating, comment=None, corrected_answer=None) -> str:
        from ragops.serving.gateway.feedback import UnknownRequest

        if not self.log.seen(request_id):
            raise UnknownRequest(request_id)
        self.submitted.append((request_id, key_name, rating, comment, corrected_answer))
        return f"fb-{request_id}-{key_name}"


class Served:
    """An ASGI app on a real uvicorn server on 127.0.0.1 (a free port), in a thread; stops on exit."""

    def __init__(self, app) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> Served:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the gateway did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.sock.close()


class FakeUpstream:
    """A tiny OpenAI-compatible (and MLflow ``/invocations``) server, standard library only."""

    def __init__(self, answer_prefix: str = "upstream says:") -> None:
        outer = self
        self.bodies: list[dict] = []
        self.headers: list[dict[str, str]] = []
        self.prefix = answer_prefix

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms delayed-ACK stall

            def log_message(self, *args) -> None:
                pass

            def _send(self, status: int, payload: dict) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                outer.bodies.append(body)
                outer.headers.append(dict(self.headers))
                if self.path.endswith("/invocations"):
                    question = body["dataframe_records"][0]["messages"][-1]["content"]
                    self._send(200, {"predictions": [{"answer": f"{outer.prefix} {question}", "sources": SOURCES,
                                                      "usage": {"prompt_tokens": 5, "completion_tokens": 4},
                                                      "lineage": LINEAGE}]})
                    return
                question = body["messages"][-1]["content"]
                text = f"{outer.prefix} {question}"
                usage = {"prompt_tokens": 5, "completion_tokens": len(pieces(text)),
                         "total_tokens": 5 + len(pieces(text))}
                if not body.get("stream"):
                    self._send(200, {"id": "up-1", "object": "chat.completion", "created": 0, "model": body["model"],
                                     "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                                  "finish_reason": "stop"}], "usage": usage})
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Connection", "close")
                self.end_headers()
                for piece in pieces(text):
                    chunk = {"id": "up-1", "object": "chat.completion.chunk", "created": 0, "model": body["model"],
                             "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
                    self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                final = {"id": "up-1", "object": "chat.completion.chunk", "created": 0, "model": body["model"],
                         "choices": [], "usage": usage}
                self.wfile.write(f"data: {json.dumps(final)}\n\ndata: [DONE]\n\n".encode())
                self.wfile.flush()
                self.close_connection = True

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> FakeUpstream:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)


# --- the gateway under test ----------------------------------------------------------------------

def key_config(name: str, **limits) -> KeyConfig:
    groups = ("eng",) if name == "alice" else ()
    return KeyConfig(name=name, sha256=hash_key(KEYS[name]), groups=groups, **limits)


def fake_target(name: str) -> Target:
    return Target(name=name, model=f"models:/fake@{name}")


def gateway_config(upstream_url: str, dead_url: str) -> GatewayConfig:
    t = fake_target
    routes = [
        RouteConfig("rag_chain", (t("champion"),)),
        RouteConfig("slow", (t("sleepy"),), timeout_s=0.3),
        RouteConfig("flaky", (t("broken"), t("steady")), fallback="steady"),
        RouteConfig("down", (t("broken"),)),
        RouteConfig("shadowed", (t("champion"),), shadow=t("candidate")),
        RouteConfig("remote", (Target("upstream", upstream=f"{upstream_url}/v1"),)),
        RouteConfig("remote_mlflow", (Target("scoring", upstream=f"{upstream_url}/invocations", kind="mlflow"),)),
        # (nearly) everything goes to the dead upstream: the fallback is the only way to answer
        RouteConfig("remote_down", (Target("gone", upstream=f"{dead_url}/v1", weight=100),
                                    Target("steady", model="models:/fake@steady", weight=1e-9)), fallback="steady"),
        RouteConfig("stalls", (t("staller"),), timeout_s=0.5),
        RouteConfig("lingers", (t("staller"),), timeout_s=30),
        RouteConfig("guarded", (t("champion"),)),
    ]
    keys = (key_config("alice"), key_config("bob", requests_per_minute=2), key_config("carol", tokens_per_minute=20))
    return GatewayConfig(routes={r.name: r for r in routes}, keys=keys, default_route="rag_chain",
                         max_body_bytes=4096, source=None)


def free_dead_url() -> str:
    """A loopback port nobody listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


class Gw:
    def __init__(self, served: Served, log: FakeLog, feedback: FakeFeedback, fakes: dict[str, FakeBackend],
                 upstream: FakeUpstream, app) -> None:
        self.served, self.log, self.feedback, self.fakes, self.upstream, self.app = (served, log, feedback, fakes,
                                                                                    upstream, app)
        self.url = served.url
        self.client = httpx.Client(base_url=served.url, timeout=10)

    def chat(self, question: str = "Which port does the collector listen on?", *, key: str | None = "alice",
             model: str | None = "rag_chain", headers: dict | None = None, **fields) -> httpx.Response:
        body = {"messages": [{"role": "user", "content": question}], **fields}
        if model is not None:
            body["model"] = model
        hdrs = {"Authorization": f"Bearer {KEYS[key]}"} if key else {}
        return self.client.post("/v1/chat/completions", json=body, headers={**hdrs, **(headers or {})})

    def wait_for(self, predicate, timeout_s: float = 5.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError("condition not met in time")
            time.sleep(0.01)


def fake_factory(fakes: dict[str, FakeBackend]):
    def factory(target: Target, settings: Settings):
        if target.upstream:
            return make_backend(target, settings)
        if target.name not in fakes:
            fakes[target.name] = FakeBackend(
                target, text={"candidate": "A shadow answer nobody sees."}.get(target.name,
                                                                              "The collector listens on port 4317."),
                delay_s={"sleepy": 5.0, "candidate": 0.3}.get(target.name, 0.0), fail=target.name == "broken",
                stall_s=5.0 if target.name == "staller" else 0.0)
        return fakes[target.name]

    return factory


@pytest.fixture(scope="module")
def gw(tmp_path_factory):
    root = tmp_path_factory.mktemp("gateway")
    settings = Settings.from_variables({"root": str(root / "state")})
    log = FakeLog()
    feedback = FakeFeedback(log)
    fakes: dict[str, FakeBackend] = {}
    with FakeUpstream() as upstream:
        config = gateway_config(upstream.url, free_dead_url())
        app = create_app(config, settings, inference_log=log, feedback=feedback, backend_factory=fake_factory(fakes),
                         router=Router(config, seed=11),  # a seeded split: the same targets every run
                         checks={"guarded": NoSecretsCheck()})
        with Served(app) as served:
            g = Gw(served, log, feedback, fakes, upstream, app)
            yield g
            g.client.close()


def error_of(response: httpx.Response) -> dict:
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    return body["error"]


# --- the answer ----------------------------------------------------------------------------------

def test_a_chat_completion_in_openai_shape_with_sources_version_and_lineage(gw):
    r = gw.client.post(
        "/v1/chat/completions", headers={"Authorization": f"Bearer {KEYS['alice']}"},
        json={"model": "rag_chain", "user": "u-1", "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "What is retention?"},
            {"role": "assistant", "content": "30 days."},
            {"role": "user", "content": "Which port does the collector listen on?"}]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["id"] == r.headers["x-request-id"] and body["id"].startswith("chatcmpl-")
    assert body["object"] == "chat.completion" and body["model"] == "rag_chain"
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "The collector listens on port 4317."}
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["usage"] == {"prompt_tokens": 11, "completion_tokens": 6, "total_tokens": 17}
    assert body["sources"] == [{"doc_id": "d1", "source_uri": "guides/retention.md", "chunk_id": "d1:0", "score": 0.9}]
    assert body["model_version"] == "7" and body["lineage"] == LINEAGE

    asked = gw.fakes["champion"].questions[-1]
    assert asked.question == "Which port does the collector listen on?"
    assert asked.history == [{"role": "user", "content": "What is retention?"},
                             {"role": "assistant", "content": "30 days."}]  # the system turn is the chain's own
    assert asked.groups == ("eng",)  # the key's access groups go to retrieval

    (row,) = gw.log.rows(body["id"])
    assert (row.key_name, row.route, row.target, row.status, row.http_status) == ("alice", "rag_chain", "champion",
                                                                                  "ok", 200)
    assert row.question == asked.question and row.answer == body["choices"][0]["message"]["content"]
    assert row.chunk_ids == ["d1:0"] and row.model_version == "7" and row.lineage == LINEAGE
    assert (row.prompt_tokens, row.completion_tokens) == (11, 6) and row.latency_ms > 0 and not row.shadow
    assert row.access_groups == []


def test_request_ids_are_minted_by_the_gateway_not_taken_from_the_client(gw):
    first = gw.chat(headers={"X-Request-Id": "chatcmpl-forged"})
    second = gw.chat(headers={"X-Request-Id": "chatcmpl-forged"})
    ids = {first.json()["id"], second.json()["id"]}
    assert len(ids) == 2 and "chatcmpl-forged" not in ids  # a client cannot overwrite another's log row


def test_a_streamed_answer_is_openai_server_sent_events_ending_with_usage_and_done(gw):
    with gw.client.stream("POST", "/v1/chat/completions", headers={"Authorization": f"Bearer {KEYS['alice']}"},
                          json={"model": "rag_chain", "stream": True,
                                "messages": [{"role": "user", "content": "Which port?"}]}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = [line for line in r.iter_lines() if line]
    assert all(e.startswith("data: ") for e in events) and events[-1] == "data: [DONE]"
    chunks = [json.loads(e[6:]) for e in events[:-1]]
    assert {c["id"] for c in chunks} == {r.headers["x-request-id"]}
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "The collector listens on port 4317."
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] == 17
    assert chunks[-1]["sources"][0]["chunk_id"] == "d1:0" and chunks[-1]["model_version"] == "7"
    (row,) = gw.log.rows(r.headers["x-request-id"])
    assert row.status == "ok" and row.answer == text and row.ttft_ms is not None and row.ttft_ms <= row.latency_ms


def test_without_a_model_the_default_route_answers(gw):
    r = gw.chat(model=None)
    assert r.status_code == 200 and r.json()["model"] == "rag_chain"


# --- refusals ------------------------------------------------------------------------------------

@pytest.mark.parametrize("authorization", [None, "Bearer sk-wrong-key-that-must-not-leak", "Basic c2stYWxpY2U=",
                                           "Bearer"])
def test_a_missing_or_wrong_key_is_a_401_that_never_echoes_the_key(gw, authorization):
    headers = {"Authorization": authorization} if authorization else {}
    r = gw.client.post("/v1/chat/completions", headers=headers,
                       json={"model": "rag_chain", "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 401
    err = error_of(r)
    assert err["type"] == "invalid_request_error" and err["code"] in ("invalid_api_key", "missing_api_key")
    (row,) = gw.log.rows(r.headers["x-request-id"])
    assert row.status == "refused" and row.http_status == 401 and row.key_name == ""
    secret = (authorization or "").partition(" ")[2]
    if secret.strip():
        assert secret not in r.text and secret not in repr(row)
    assert gw.client.get("/v1/models", headers=headers).status_code == 401


def test_a_body_over_the_limit_is_a_413_whether_declared_or_streamed(gw):
    big = {"model": "rag_chain", "messages": [{"role": "user", "content": "x" * 5000}]}
    r = gw.client.post("/v1/chat/completions", json=big, headers={"Authorization": f"Bearer {KEYS['alice']}"})
    assert r.status_code == 413 and error_of(r)["code"] == "request_too_large"

    def chunked():  # no Content-Length: the limit must hold while the body is read
        for _ in range(10):
            yield b" " * 1000

    r = gw.client.post("/v1/chat/completions", content=chunked(),
                       headers={"Authorization": f"Bearer {KEYS['alice']}", "Content-Type": "application/json"})
    assert r.status_code == 413 and "4096" in error_of(r)["message"]


@pytest.mark.parametrize("body, param", [
    ({"model": "rag_chain"}, "messages"),
    ({"model": "rag_chain", "messages": []}, "messages"),
    ({"model": 3, "messages": [{"role": "user", "content": "hi"}]}, "model"),
    ({"messages": [{"role": "user", "content": "hi"}, {"role": "wizard", "content": "x"}]}, "messages[1].role"),
    ({"messages": [{"role": "user", "content": 42}]}, "messages[0].content"),
    ({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}, "messages[1].role"),
    ({"messages": [{"role": "user", "content": "   "}]}, "messages[0].content"),
    ({"messages": [{"role": "user", "content": "hi"}], "temperature": "hot"}, "temperature"),
    ({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 0}, "max_tokens"),
    ({"messages": [{"role": "user", "content": "hi"}], "stream": "yes"}, "stream"),
])
def test_a_wrong_shape_is_a_400_naming_the_field(gw, body, param):
    r = gw.client.post("/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {KEYS['alice']}"})
    assert r.status_code == 400
    err = error_of(r)
    assert err["param"] == param and param.split("[")[0] in err["message"]


def test_malformed_json_is_a_400(gw):
    r = gw.client.post("/v1/chat/completions", content=b'{"model": "rag_chain", "messages": [',
                       headers={"Authorization": f"Bearer {KEYS['alice']}", "Content-Type": "application/json"})
    assert r.status_code == 400 and error_of(r)["code"] == "invalid_json"
    assert gw.log.rows(r.headers["x-request-id"])[0].status == "refused"


def test_an_unknown_route_is_a_404_listing_the_known_ones(gw):
    r = gw.chat(model="gpt-4o")
    assert r.status_code == 404
    err = error_of(r)
    assert err["param"] == "model" and err["code"] == "model_not_found" and "rag_chain" in err["message"]


def test_over_the_request_limit_is_a_429_with_retry_after(gw):
    answered = [gw.chat(key="bob").status_code for _ in range(2)]
    refused = gw.chat(key="bob")
    assert answered == [200, 200] and refused.status_code == 429
    assert 1 <= int(refused.headers["retry-after"]) <= 70  # a minute, give or take the window's 10 s buckets
    err = error_of(refused)
    assert err["code"] == "rate_limit_exceeded" and err["type"] == "requests" and "bob" in err["message"]
    assert gw.chat(key="alice").status_code == 200  # limits are per key
    assert gw.log.rows(refused.headers["x-request-id"])[0].http_status == 429


def test_tokens_are_charged_after_the_answer_and_then_limit_the_key(gw):
    first = gw.chat(key="carol")  # 17 tokens of 20: admitted
    second = gw.chat(key="carol")  # 3 tokens left: admitted, overdraws to 34
    third = gw.chat(key="carol")
    assert (first.status_code, second.status_code, third.status_code) == (200, 200, 429)
    assert error_of(third)["type"] == "tokens" and int(third.headers["retry-after"]) >= 1


# --- routing outcomes ----------------------------------------------------------------------------

def test_a_model_call_past_the_route_timeout_is_a_504(gw):
    started = time.monotonic()
    r = gw.chat(model="slow")
    assert r.status_code == 504 and time.monotonic() - started < 3  # the target sleeps 5 s
    assert error_of(r)["code"] == "timeout"
    (row,) = gw.log.rows(r.headers["x-request-id"])
    assert row.status == "timeout" and row.http_status == 504 and row.target == "sleepy"


def test_a_streamed_call_past_the_timeout_before_its_first_token_is_a_504(gw):
    r = gw.chat(model="slow", stream=True)
    assert r.status_code == 504 and error_of(r)["code"] == "timeout"


def test_the_fallback_answers_when_the_chosen_target_fails(gw):
    for stream in (False, True):
        for _ in range(6):  # both targets weigh 100: some requests pick the broken one
            r = gw.chat(model="flaky", stream=stream)
            assert r.status_code == 200
    rows = [row for row in gw.log.records if row.route == "flaky"]
    assert {row.target for row in rows} == {"steady"}  # every answer came from the healthy target
    assert "fallback" in {row.status for row in rows}


def test_without_a_fallback_a_failed_target_is_a_502(gw):
    r = gw.chat(model="down")
    assert r.status_code == 502 and error_of(r)["code"] == "upstream_error"
    assert gw.log.rows(r.headers["x-request-id"])[0].status == "error"
    assert gw.chat(model="down", stream=True).status_code == 502


def test_the_shadow_answers_in_the_background_logged_but_never_returned(gw):
    started = time.monotonic()
    r = gw.chat(model="shadowed")
    took = time.monotonic() - started
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "The collector listens on port 4317."
    assert took < 0.25  # the shadow takes 0.3 s: the caller does not wait for it
    request_id = r.json()["id"]
    gw.wait_for(lambda: gw.log.rows(request_id, shadow=True))
    (shadow,) = gw.log.rows(request_id, shadow=True)
    (served,) = gw.log.rows(request_id, shadow=False)
    assert shadow.target == "candidate" and shadow.answer == "A shadow answer nobody sees." and shadow.status == "ok"
    assert served.target == "champion" and "nobody sees" not in r.text


def test_a_stream_that_stalls_past_the_timeout_ends_with_an_error_event(gw):
    with gw.client.stream("POST", "/v1/chat/completions", headers={"Authorization": f"Bearer {KEYS['alice']}"},
                          json={"model": "stalls", "stream": True,
                                "messages": [{"role": "user", "content": "Which port?"}]}) as r:
        assert r.status_code == 200  # the first piece came in time: the stream had started
        events = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: {")]
    assert events[1]["choices"][0]["delta"]["content"] == "The "
    assert events[-1]["error"]["code"] == "timeout"
    (row,) = gw.log.rows(r.headers["x-request-id"])
    assert row.status == "timeout" and row.http_status == 504 and row.answer == "The "


def test_a_client_that_leaves_mid_stream_is_still_logged(gw):
    with gw.client.stream("POST", "/v1/chat/completions", headers={"Authorization": f"Bearer {KEYS['alice']}"},
                          json={"model": "lingers", "stream": True,
                                "messages": [{"role": "user", "content": "Which port?"}]}) as r:
        request_id = r.headers["x-request-id"]
        next(r.iter_lines())  # the role chunk; then hang up
    gw.wait_for(lambda: gw.log.rows(request_id), timeout_s=4)  # well before the answer's 5 s stall ends
    (row,) = gw.log.rows(request_id)
    assert row.status == "error" and row.http_status == 499


def test_the_route_checks_can_refuse_a_question_and_rewrite_an_answer(gw):
    refused = gw.chat("What is the admin password?", model="guarded")
    assert refused.status_code == 400 and error_of(refused)["code"] == "content_refused"
    (row,) = gw.log.rows(refused.headers["x-request-id"])
    assert row.status == "refused" and row.guardrails == [{"check": "no_secrets", "stage": "input", "passed": False}]
    answered = gw.chat(model="guarded")
    assert answered.json()["choices"][0]["message"]["content"] == "The collector listens on port [port]."
    (row,) = gw.log.rows(answered.headers["x-request-id"])
    assert [g["stage"] for g in row.guardrails] == ["input", "output"] and "[port]" in row.answer
    assert gw.chat(model="rag_chain").json()["choices"][0]["message"]["content"].endswith("4317.")  # per route


def test_an_openai_compatible_upstream_answers_and_streams(gw):
    r = gw.chat("ping?", model="remote", max_tokens=12, temperature=0.0)
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "upstream says: ping?"
    assert r.json()["usage"]["prompt_tokens"] == 5
    sent = gw.upstream.bodies[-1]
    assert sent["model"] == "remote" and sent["max_tokens"] == 12 and sent["temperature"] == 0.0
    with gw.client.stream("POST", "/v1/chat/completions", headers={"Authorization": f"Bearer {KEYS['alice']}"},
                          json={"model": "remote", "stream": True,
                                "messages": [{"role": "user", "content": "pong?"}]}) as s:
        chunks = [json.loads(line[6:]) for line in s.iter_lines() if line.startswith("data: {")]
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]) == \
        "upstream says: pong?"
    assert chunks[-1]["usage"]["prompt_tokens"] == 5


def test_an_mlflow_scoring_server_upstream_answers(gw):
    r = gw.chat("what?", model="remote_mlflow")
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "upstream says: what?"
    assert r.json()["sources"][0]["chunk_id"] == "d1:0" and r.json()["lineage"] == LINEAGE
    assert gw.upstream.bodies[-1] == {"dataframe_records": [{"messages": [{"role": "user", "content": "what?"}],
                                                             "groups": ["eng"]}]}  # the pyfunc filters by them


def test_a_databricks_endpoint_gets_the_workspace_token(gw, monkeypatch):
    from ragops.serving.gateway.backends import UpstreamBackend

    monkeypatch.setenv("DATABRICKS_TOKEN", "dapi-test-token")
    backend = UpstreamBackend(Target("endpoint", upstream=f"{gw.upstream.url}/serving-endpoints/rag/invocations",
                                     kind="databricks"))

    async def ask() -> Answer:
        try:
            return await backend.complete(Question("why?", groups=("eng",)))
        finally:
            await backend.aclose()

    answer = asyncio.run(ask())
    assert answer.text == "upstream says: why?" and answer.sources[0]["chunk_id"] == "d1:0"
    assert gw.upstream.headers[-1]["Authorization"] == "Bearer dapi-test-token"
    assert gw.upstream.bodies[-1]["dataframe_records"][0]["groups"] == ["eng"]


def test_an_unreachable_upstream_falls_back(gw):
    r = gw.chat(model="remote_down")
    assert r.status_code == 200
    (row,) = gw.log.rows(r.headers["x-request-id"])
    assert row.status == "fallback" and row.target == "steady"


# --- the other endpoints -------------------------------------------------------------------------

def test_models_lists_one_model_per_route(gw):
    r = gw.client.get("/v1/models", headers={"Authorization": f"Bearer {KEYS['alice']}"})
    assert r.status_code == 200 and r.json()["object"] == "list"
    assert [m["id"] for m in r.json()["data"]] == ["rag_chain", "slow", "flaky", "down", "shadowed", "remote",
                                                   "remote_mlflow", "remote_down", "stalls", "lingers", "guarded"]


def test_an_unknown_path_is_an_openai_shaped_404(gw):
    r = gw.client.get("/v1/embeddings")
    assert r.status_code == 404 and error_of(r)["code"] == "not_found"


def test_health_and_metrics(gw):
    from prometheus_client.parser import text_string_to_metric_families

    assert gw.client.get("/health").json()["status"] == "ok"
    assert gw.client.get("/ready").status_code == 200
    gw.chat()
    gw.chat(key=None)
    samples = {}
    for family in text_string_to_metric_families(gw.client.get("/metrics").text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value

    def value(name: str, **labels) -> float:
        return samples.get((name, tuple(sorted(labels.items()))), 0.0)

    assert value("ragops_gateway_requests_total", route="rag_chain", target="champion", status="200") >= 1
    assert value("ragops_gateway_requests_total", route="-", target="-", status="401") >= 1
    assert value("ragops_gateway_request_duration_seconds_bucket", route="rag_chain", target="champion",
                 le="0.05") >= 1  # the fake answers in microseconds
    assert value("ragops_gateway_tokens_total", route="rag_chain", target="champion", kind="completion") >= 6
    assert value("ragops_gateway_inference_log_queue_depth") == 3.0


def test_metrics_carry_the_opentelemetry_genai_names(gw):
    """gen_ai.client.operation.duration, gen_ai.client.token.usage and gen_ai.server.time_to_first_token,
    as the OTel → Prometheus translation names them, labelled by operation, requested and answering model."""
    from prometheus_client.parser import text_string_to_metric_families

    gw.chat()
    gw.chat()
    families = {f.name: f for f in text_string_to_metric_families(gw.client.get("/metrics").text)}
    duration = families["gen_ai_client_operation_duration_seconds"]
    counts = [s for s in duration.samples if s.name.endswith("_count")
              and s.labels["gen_ai_request_model"] == "rag_chain" and s.labels["error_type"] == ""]
    assert counts and counts[0].labels["gen_ai_operation_name"] == "chat" and counts[0].value >= 2
    assert counts[0].labels["gen_ai_response_model"] not in ("", "-")
    tokens = families["gen_ai_client_token_usage"]
    output = [s for s in tokens.samples if s.name.endswith("_sum") and s.labels["gen_ai_token_type"] == "output"]
    assert output and output[0].value >= 6  # the fake answers with a few completion tokens per request


def test_feedback_on_a_served_request_and_404_for_an_unknown_one(gw):
    request_id = gw.chat().json()["id"]
    auth = {"Authorization": f"Bearer {KEYS['alice']}"}
    r = gw.client.post("/v1/feedback", headers=auth, json={"request_id": request_id, "rating": "down",
                                                           "comment": "wrong port", "corrected_answer": "4318"})
    assert r.status_code == 200 and r.json()["request_id"] == request_id
    assert gw.feedback.submitted[-1] == (request_id, "alice", "down", "wrong port", "4318")
    r = gw.client.post("/v1/feedback", headers=auth, json={"request_id": "chatcmpl-never", "rating": "up"})
    assert r.status_code == 404 and error_of(r)["param"] == "request_id"
    r = gw.client.post("/v1/feedback", headers=auth, json={"request_id": request_id, "rating": "meh"})
    assert r.status_code == 400 and error_of(r)["param"] == "rating"
    assert gw.client.post("/v1/feedback", json={"request_id": request_id, "rating": "up"}).status_code == 401


def test_a_reload_swaps_routes_and_keys_in_place(gw):
    gateway = gw.app.state.gateway
    old = gateway.config
    new_keys = (*old.keys, KeyConfig(name="dave", sha256=hash_key("sk-dave-0123456789")))
    new_routes = {**old.routes, "extra": RouteConfig("extra", (fake_target("champion"),))}
    try:
        gateway.reload(GatewayConfig(routes=new_routes, keys=new_keys, default_route="rag_chain",
                                     max_body_bytes=old.max_body_bytes))
        r = gw.client.post("/v1/chat/completions", headers={"Authorization": "Bearer sk-dave-0123456789"},
                           json={"model": "extra", "messages": [{"role": "user", "content": "hi"}]})
        assert r.status_code == 200
        models = gw.client.get("/v1/models", headers={"Authorization": "Bearer sk-dave-0123456789"}).json()
        assert "extra" in [m["id"] for m in models["data"]]
    finally:
        gateway.reload(old)
    assert gw.chat(model="extra").status_code == 404


def test_ready_is_503_until_every_model_is_loaded(tmp_path):
    settings = Settings.from_variables({"root": str(tmp_path / "state")})
    fakes: dict[str, FakeBackend] = {}
    slow = FakeBackend(fake_target("champion"))
    slow.loaded.clear()
    fakes["champion"] = slow
    config = GatewayConfig(routes={"rag_chain": RouteConfig("rag_chain", (fake_target("champion"),))},
                           keys=(key_config("alice"),), default_route="rag_chain")
    log = FakeLog()
    with Served(create_app(config, settings, inference_log=log, feedback=FakeFeedback(log),
                           backend_factory=fake_factory(fakes))) as served:
        r = httpx.get(f"{served.url}/ready")
        assert r.status_code == 503 and r.json()["targets"] == {"champion": "loading"}
        assert httpx.get(f"{served.url}/health").status_code == 200
        slow.loaded.set()
        deadline = time.monotonic() + 5
        while httpx.get(f"{served.url}/ready").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.02)


def test_every_request_lands_in_the_delta_inference_log_and_feedback_table(tmp_path):
    """The real InferenceLog and FeedbackStore behind the app: rows are in Delta after shutdown."""
    from ragops.lakehouse import open_lakehouse

    settings = Settings.from_variables({"root": str(tmp_path / "state")})
    fakes: dict[str, FakeBackend] = {}
    config = GatewayConfig(routes={"rag_chain": RouteConfig("rag_chain", (fake_target("champion"),))},
                           keys=(key_config("alice"),), default_route="rag_chain")
    with Served(create_app(config, settings, backend_factory=fake_factory(fakes))) as served, \
            httpx.Client(base_url=served.url, timeout=10) as client:
        auth = {"Authorization": f"Bearer {KEYS['alice']}"}
        ok = client.post("/v1/chat/completions", headers=auth,
                         json={"messages": [{"role": "user", "content": "Which port?"}]}).json()["id"]
        refused = client.post("/v1/chat/completions", json={}).headers["x-request-id"]
        fb = client.post("/v1/feedback", headers=auth, json={"request_id": ok, "rating": "up"})
        assert fb.status_code == 200, fb.text
    lh = open_lakehouse(settings)
    rows = lh.read("inference_log").set_index("request_id")
    assert set(rows.index) == {ok, refused}
    assert rows.loc[ok, "status"] == "ok" and rows.loc[ok, "key_name"] == "alice"
    assert rows.loc[refused, "http_status"] == 401
    assert lh.read("feedback")["request_id"].tolist() == [ok]


# --- the real chain ------------------------------------------------------------------------------

@pytest.mark.slow
def test_the_registered_chain_answers_through_the_gateway(built, tmp_path):
    from ragops.models.log import log_chain
    from tests.conftest import SAMPLE

    base, _ = built
    settings = Settings.from_variables({"root": str(base.root), "source_path": str(SAMPLE),
                                        "llm_max_new_tokens": "16"})
    logged = log_chain(settings)
    target = Target("champion", model=logged.model_uri)  # models:/<name>/<version>
    config = GatewayConfig(routes={"rag_chain": RouteConfig("rag_chain", (target,))},
                           keys=(key_config("alice"),), default_route="rag_chain")
    log = FakeLog()
    with Served(create_app(config, settings, inference_log=log, feedback=FakeFeedback(log))) as served, \
            httpx.Client(base_url=served.url, timeout=300) as client:
        auth = {"Authorization": f"Bearer {KEYS['alice']}"}
        question = {"model": "rag_chain", "messages": [{"role": "user",
                                                        "content": "Which port does the collector listen on?"}]}
        r = client.post("/v1/chat/completions", headers=auth, json=question)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["choices"][0]["message"]["content"] and body["sources"]
        assert body["model_version"] == logged.version and body["lineage"]["index_snapshot"]
        assert body["usage"]["prompt_tokens"] > 0 and 0 < body["usage"]["completion_tokens"] <= 16
        with client.stream("POST", "/v1/chat/completions", headers=auth, json={**question, "stream": True}) as s:
            chunks = [json.loads(line[6:]) for line in s.iter_lines() if line.startswith("data: {")]
        streamed = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
        assert streamed.strip() and chunks[-1]["usage"]["completion_tokens"] > 0
        assert httpx.get(f"{served.url}/ready").status_code == 200
    assert [row.status for row in log.records] == ["ok", "ok"]


def test_request_ids_are_unique_and_sort_by_time():
    import time as _time

    from ragops.serving.gateway.app import new_request_id

    ids = []
    for _ in range(3):
        ids.append(new_request_id())
        _time.sleep(0.002)
    assert ids == sorted(ids) and len(set(ids)) == 3 and all(len(i) == len("chatcmpl-") + 32 for i in ids)
