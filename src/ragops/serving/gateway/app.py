"""The gateway's HTTP app: the OpenAI chat-completions API in front of the route targets.

One request to ``POST /v1/chat/completions``, in order (each step's refusal is an OpenAI-shaped
``{"error": {"message", "type", "param", "code"}}`` and still one inference-log row)::

    key      = KeyRing.authenticate(Authorization)             401
    body     ≤ max_body_bytes (Content-Length, then as read)   413
    request  = parse_chat_request(JSON)                        400 naming the field
    decision = Router.choose(request.model, sticky key)        404 unknown route (model)
    verdict  = RateLimiter.admit(key)                          429 + Retry-After
    checks.before(request)                                     ← guardrails (ragops.guardrails.policy) 400
    answer   = backend(decision.target) within route.timeout_s 504 past it
               BackendError → decision.fallback answers, else  502
    checks.after(request, answer)                              ← guardrails (a streamed answer is buffered
                                                                 when the route has output checks)
    RateLimiter.charge_tokens(key, prompt + completion)
    shadow   = decision.shadow answers in a background task, logged shadow=True, never returned
    InferenceLog.record(row)

The response is a ``chat.completion`` whose ``id`` is the request id (also the ``X-Request-Id``
header; the id is always minted here, never taken from the client, because the log is keyed by
it), with ``usage`` from the model and three extra fields: ``sources`` (doc_id, source_uri,
chunk_id, score), ``model_version`` and ``lineage``. ``stream: true`` answers with server-sent
events in OpenAI's chunk format: a role chunk, content chunks, a ``finish_reason`` chunk, then one
chunk with empty ``choices`` carrying ``usage`` (and the extra fields), then ``data: [DONE]``.

The hot path stays lean (the issue's budget is 2 ms p50 for the whole gateway): the body is read
and validated by hand (no pydantic model), answers are serialised once, and metrics, limits and
the log each cost microseconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Protocol

from fastapi import FastAPI, Request
from fastapi.responses import Response, StreamingResponse

from ragops.errors import RagopsError
from ragops.serving.gateway.auth import AuthError, KeyRing
from ragops.serving.gateway.backends import (
    Answer,
    Backend,
    BackendError,
    BackendTimeout,
    Question,
    make_backend,
)
from ragops.serving.gateway.journal import model_name_of
from ragops.serving.gateway.limits import RateLimiter, Verdict

if TYPE_CHECKING:
    from ragops.config import Settings
    from ragops.serving.gateway.config import GatewayConfig, KeyConfig, RouteConfig, Target

try:  # a faster JSON codec when present (it is, through langsmith); the standard one otherwise
    import orjson

    def _dumps(obj: Any) -> bytes:
        return orjson.dumps(obj)

    _loads = orjson.loads
    _JSONDecodeError: tuple[type[Exception], ...] = (orjson.JSONDecodeError, UnicodeDecodeError)
except ImportError:  # pragma: no cover
    def _dumps(obj: Any) -> bytes:
        return json.dumps(obj, separators=(",", ":")).encode("utf-8")

    _loads = json.loads
    _JSONDecodeError = (json.JSONDecodeError, UnicodeDecodeError)

log = logging.getLogger("ragops.serving.gateway")

#: Message roles accepted. System/developer messages are dropped: the chain has its own system prompt.
ROLES = ("system", "developer", "user", "assistant")
#: Shadow answers running at once in this process; more are skipped (counted) rather than queued.
MAX_SHADOW_IN_FLIGHT = 32
#: The environment the factory app (``app_from_environment``, used by uvicorn's workers) reads.
ENV_CONFIG, ENV_TARGET, ENV_VARS = "RAGOPS_GATEWAY_CONFIG", "RAGOPS_GATEWAY_TARGET", "RAGOPS_GATEWAY_VARS"


# --- errors -------------------------------------------------------------------------------------

class GatewayError(RagopsError):
    """A request the gateway refuses or cannot answer, with its HTTP status and OpenAI error fields."""

    status = 500
    type = "api_error"
    code: str | None = None

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.param = param
        self.code = code or self.code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"message": str(self), "type": self.type, "param": self.param, "code": self.code}}


class Unauthorized(GatewayError):
    status, type, code = 401, "invalid_request_error", "invalid_api_key"


class BodyTooLarge(GatewayError):
    status, type, code = 413, "invalid_request_error", "request_too_large"


class InvalidBody(GatewayError, ValueError):
    status, type, code = 400, "invalid_request_error", "invalid_value"


class RouteNotFound(GatewayError, LookupError):
    status, type, code = 404, "invalid_request_error", "model_not_found"


class RequestNotFound(GatewayError, LookupError):
    status, type, code = 404, "invalid_request_error", "request_not_found"


class TooManyRequests(GatewayError):
    status, type, code = 429, "requests", "rate_limit_exceeded"


class CheckRefused(GatewayError):
    """Raised by a :class:`RequestChecks` to refuse a request or an answer (guardrails)."""

    status, type, code = 400, "invalid_request_error", "content_refused"


class UpstreamFailed(GatewayError):
    status, type, code = 502, "api_error", "upstream_error"


class UpstreamTimeout(GatewayError):
    status, type, code = 504, "timeout", "timeout"


def error_response(exc: GatewayError, request_id: str) -> Response:
    headers = {"X-Request-Id": request_id, **exc.headers} if request_id else exc.headers
    return Response(_dumps(exc.body()), status_code=exc.status, media_type="application/json", headers=headers)


# --- the request ----------------------------------------------------------------------------------

def new_request_id() -> str:
    """``chatcmpl-`` + 12 hex digits of the millisecond clock + 20 random ones (UUIDv7's layout):
    ids sort by time, so the inference log's upserts by request id touch only recent Delta files
    (per-file min/max statistics skip the rest) instead of every file of a growing table."""
    return f"chatcmpl-{time.time_ns() // 1_000_000:012x}{uuid.uuid4().hex[:20]}"


@dataclass
class ChatRequest:
    """A validated chat-completions request."""

    model: str
    question: str
    history: list[dict[str, str]]
    messages: list[dict[str, str]]
    stream: bool = False
    include_usage: bool = True
    max_tokens: int | None = None
    temperature: float | None = None
    user: str | None = None
    session_id: str | None = None
    #: What per-route checks found (guardrail outcomes); logged with the request.
    guardrails: list[dict[str, Any]] = field(default_factory=list)
    #: text → its PII-redacted form, filled by the checks (what the inference log stores), so a
    #: question is scanned once for both the check and the log row.
    redacted: dict[str, str] = field(default_factory=dict, repr=False)


def _text_of(content: Any, where: str) -> str:
    """A message's text: a string, or OpenAI's list of ``{"type": "text", "text": ...}`` parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for j, part in enumerate(content):
            if not (isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str)):
                raise InvalidBody(f"{where}[{j}] must be a text part {{'type': 'text', 'text': str}} "
                                  "(this model reads text only)", param=f"{where}[{j}]")
            texts.append(part["text"])
        return "".join(texts)
    raise InvalidBody(f"{where} must be a string", param=where)


def parse_chat_request(data: Any, default_route: str) -> ChatRequest:
    """Validate a decoded chat-completions body; :class:`InvalidBody` names the first bad field."""
    if not isinstance(data, dict):
        raise InvalidBody("the request body must be a JSON object", code="invalid_type")
    model = data.get("model", default_route)
    if not isinstance(model, str) or not model:
        raise InvalidBody("'model' must be a non-empty string (the route name)", param="model")
    messages = data.get("messages")
    if messages is None:
        raise InvalidBody("'messages' is required", param="messages", code="missing_required_parameter")
    if not isinstance(messages, list) or not messages:
        raise InvalidBody("'messages' must be a non-empty list of {role, content} objects", param="messages")
    clean: list[dict[str, str]] = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            raise InvalidBody(f"messages[{i}] must be an object with 'role' and 'content'", param=f"messages[{i}]")
        role = m.get("role")
        if role not in ROLES:
            raise InvalidBody(f"messages[{i}].role must be one of {', '.join(ROLES)}; got {role!r}",
                              param=f"messages[{i}].role")
        clean.append({"role": role, "content": _text_of(m.get("content"), f"messages[{i}].content")})
    last = len(clean) - 1
    if clean[last]["role"] != "user":
        raise InvalidBody(f"the last message (messages[{last}]) must have role 'user': it is the question",
                          param=f"messages[{last}].role")
    if not clean[last]["content"].strip():
        raise InvalidBody(f"messages[{last}].content (the question) is empty", param=f"messages[{last}].content")
    stream = data.get("stream", False)
    if stream is not None and not isinstance(stream, bool):
        raise InvalidBody("'stream' must be true or false", param="stream")
    max_tokens = data.get("max_tokens", data.get("max_completion_tokens"))
    if max_tokens is not None and (isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1):
        raise InvalidBody("'max_tokens' must be a positive integer", param="max_tokens")
    temperature = data.get("temperature")
    if temperature is not None and (isinstance(temperature, bool) or not isinstance(temperature, (int, float))
                                    or not 0 <= temperature <= 2):
        raise InvalidBody("'temperature' must be a number between 0 and 2", param="temperature")
    user = data.get("user")
    if user is not None and not isinstance(user, str):
        raise InvalidBody("'user' must be a string", param="user")
    n = data.get("n")
    if n is not None and n != 1:
        raise InvalidBody("'n' must be 1: the gateway returns one answer", param="n")
    options = data.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise InvalidBody("'stream_options' must be an object", param="stream_options")
    return ChatRequest(model=model, question=clean[last]["content"],
                       history=[m for m in clean[:last] if m["role"] in ("user", "assistant")],
                       messages=clean, stream=bool(stream), max_tokens=max_tokens,
                       temperature=None if temperature is None else float(temperature), user=user)


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The request body, refused with 413 as soon as it is known to exceed ``max_bytes``: from
    ``Content-Length`` before reading anything, else while it streams in (chunked uploads)."""
    length = request.headers.get("content-length")
    if length is not None:
        try:
            declared = int(length)
        except ValueError:
            raise InvalidBody("the Content-Length header is not a number", param="Content-Length") from None
        if declared > max_bytes:
            raise BodyTooLarge(f"the request body is {declared} bytes; this gateway accepts at most {max_bytes}")
    parts, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise BodyTooLarge(f"the request body is over {max_bytes} bytes, the most this gateway accepts")
        parts.append(chunk)
    return b"".join(parts)


def decode_json(body: bytes) -> Any:
    if not body:
        raise InvalidBody("the request body is empty; expected a JSON object", code="invalid_json")
    try:
        return _loads(body)
    except _JSONDecodeError as exc:
        raise InvalidBody(f"the request body is not valid JSON: {exc}", code="invalid_json") from None


# --- the guardrails slot --------------------------------------------------------------------------

class RequestChecks(Protocol):
    """Per-route input/output checks: the guardrails (``ragops.guardrails.policy.GuardrailChecks``,
    built from each route's ``guardrails:`` policy when ``create_app`` gets no ``checks=``).

    ``before`` runs after auth, limits and routing, before any model is called; ``after`` runs on
    the answer before it is returned (non-streamed) or once the stream is complete (streamed: the
    deltas are already sent, so an ``after`` that must be able to withhold an answer has to make
    the gateway buffer the stream for that route). Either may raise :class:`CheckRefused` (HTTP 400)
    and append its outcomes to ``request.guardrails`` (logged with the request); ``after`` returns
    the answer to send (e.g. redacted). Optional: ``buffers_output`` (True: a streamed answer is
    buffered, checked, then sent) and ``redact_for_log(request, text)`` (what the log stores)."""

    def before(self, request: ChatRequest) -> None: ...

    def after(self, request: ChatRequest, answer: Answer) -> Answer: ...


class NoChecks:
    """Today's checks: none."""

    def before(self, request: ChatRequest) -> None:
        return None

    def after(self, request: ChatRequest, answer: Answer) -> Answer:
        return answer


# --- metrics --------------------------------------------------------------------------------------

class Metrics:
    """The gateway's Prometheus metrics. With several worker processes (``PROMETHEUS_MULTIPROC_DIR``
    set, as ``ragops gateway --workers N`` does) every worker writes its samples to that folder and
    ``/metrics`` sums them, whichever worker answers the scrape."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry(auto_describe=True)
        self.multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        r = self.registry
        self.requests = Counter("ragops_gateway_requests", "Chat completion requests by route, target and HTTP status",
                                ["route", "target", "status"], registry=r)
        self.latency = Histogram("ragops_gateway_request_duration_seconds",
                                 "Time from request to the last byte of the answer",
                                 ["route", "target"], registry=r,
                                 buckets=(.001, .002, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120))
        self.ttft = Histogram("ragops_gateway_time_to_first_token_seconds", "Time to the first answer token",
                              ["route", "target"], registry=r,
                              buckets=(.005, .01, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60))
        self.tokens = Counter("ragops_gateway_tokens", "Tokens used (prompt, completion)",
                              ["route", "target", "kind"], registry=r)
        self.shadow = Counter("ragops_gateway_shadow_requests", "Shadow answers by route, target and outcome",
                              ["route", "target", "outcome"], registry=r)
        self.guardrail_blocks = Counter("ragops_gateway_guardrail_blocks",
                                        "Requests blocked or answers refused by a guardrail, by route and check",
                                        ["route", "check"], registry=r)
        # The OpenTelemetry GenAI semantic conventions' client metrics, under the names the OTel →
        # Prometheus translation gives them (dots → underscores, the unit "s" as a _seconds suffix) and
        # with the advisory bucket boundaries of the spec, so GenAI dashboards built on OTel read them as is.
        self.gen_ai_duration = Histogram(
            "gen_ai_client_operation_duration_seconds", "GenAI operation duration (gen_ai.client.operation.duration)",
            ["gen_ai_operation_name", "gen_ai_request_model", "gen_ai_response_model", "error_type"], registry=r,
            buckets=(.01, .02, .04, .08, .16, .32, .64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92))
        self.gen_ai_tokens = Histogram(
            "gen_ai_client_token_usage", "Tokens used per operation (gen_ai.client.token.usage)",
            ["gen_ai_operation_name", "gen_ai_request_model", "gen_ai_response_model", "gen_ai_token_type"],
            registry=r, buckets=(1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304))
        self.gen_ai_ttft = Histogram(
            "gen_ai_server_time_to_first_token_seconds", "Time to the first token (gen_ai.server.time_to_first_token)",
            ["gen_ai_operation_name", "gen_ai_request_model", "gen_ai_response_model"], registry=r,
            buckets=(.001, .005, .01, .02, .04, .06, .08, .1, .25, .5, .75, 1, 2.5, 5, 7.5, 10))
        self.log_depth = Gauge("ragops_gateway_inference_log_queue_depth",
                               "Inference-log rows recorded but not yet in Delta", registry=r,
                               multiprocess_mode="livesum")

    def exposition(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

        if self.multiprocess:
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


# --- the gateway ----------------------------------------------------------------------------------

def _backend_key(target: Target) -> tuple[Any, ...]:
    """Targets serving the same model (or upstream) share one backend: one chain per model per process."""
    return (target.model, target.upstream, target.kind if target.upstream else None)


class Gateway:
    """Everything one worker process holds: config, keys, router, backends, limits, log, metrics."""

    def __init__(self, config: GatewayConfig, settings: Settings, *, log_: Any, feedback: Any, router: Any,
                 limiter: RateLimiter, backend_factory: Callable[[Target, Settings], Backend],
                 checks: RequestChecks | Mapping[str, RequestChecks] | None, config_path: str | None = None) -> None:
        from ragops.serving.gateway.journal import InferenceRecord

        self.record_type = InferenceRecord
        self.config = config
        self.settings = settings
        self.keyring = KeyRing(config.keys)
        self.router = router
        self.limiter = limiter
        self.log = log_
        self.feedback = feedback
        self.backend_factory = backend_factory
        self.checks = checks
        #: rebuilds ``checks`` from a reloaded config (set when the checks come from the routes' policies)
        self.checks_factory: Callable[[GatewayConfig], Any] | None = None
        #: the file SIGHUP reloads (None: the defaults and RAGOPS_API_KEYS, re-read too)
        self.config_path = config_path
        self.backends: dict[tuple[Any, ...], Backend] = {}
        self.metrics = Metrics()
        self.shadow_tasks: set[asyncio.Task] = set()
        self.background: set[asyncio.Task] = set()
        self.model_list = _dumps(self._models_body(config))
        self.ensure_backends(config)

    # --- config ---
    @staticmethod
    def _models_body(config: GatewayConfig) -> dict[str, Any]:
        return {"object": "list", "data": [{"id": name, "object": "model", "created": 0, "owned_by": "ragops"}
                                           for name in config.routes]}

    def targets(self, config: GatewayConfig) -> list[Target]:
        out = []
        for route in config.routes.values():
            out.extend(route.targets)
            if route.shadow is not None:
                out.append(route.shadow)
        return out

    def ensure_backends(self, config: GatewayConfig) -> list[Backend]:
        """A backend for every target of ``config`` (existing ones are kept); the new ones."""
        new = []
        for target in self.targets(config):
            key = _backend_key(target)
            if key not in self.backends:
                self.backends[key] = backend = self.backend_factory(target, self.settings)
                new.append(backend)
        return new

    def backend(self, target: Target) -> Backend:
        return self.backends[_backend_key(target)]

    def checks_for(self, route: str) -> RequestChecks:
        if self.checks is None:
            return _NO_CHECKS
        if isinstance(self.checks, Mapping):
            return self.checks.get(route, _NO_CHECKS)
        return self.checks

    def current_backends(self) -> list[Backend]:
        """The backends the config in service routes to (a reload may have left others behind)."""
        seen: dict[tuple[Any, ...], Backend] = {}
        for target in self.targets(self.config):
            seen.setdefault(_backend_key(target), self.backend(target))
        return list(seen.values())

    @property
    def ready(self) -> bool:
        return all(b.ready for b in self.current_backends())

    def spawn(self, coro, tasks: set[asyncio.Task] | None = None) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro)
        bucket = self.background if tasks is None else tasks
        bucket.add(task)
        task.add_done_callback(bucket.discard)
        return task

    async def load_backends(self, backends: list[Backend]) -> None:
        """Load models one after the other (each is CPU-heavy), so /ready turns 200 once all are in."""
        for backend in backends:
            try:
                await backend.load()
            except Exception as exc:  # /ready shows it; a request to this target retries the load
                log.error("target %s failed to load: %s", backend.target.name, exc)

    def reload(self, config: GatewayConfig) -> None:
        """Swap in a new config (SIGHUP): routes, keys, /v1/models; new targets load in the background."""
        self.router.reload(config)
        self.keyring = KeyRing(config.keys)
        if self.checks_factory is not None:  # the routes' guardrail policies may have changed
            self.checks = self.checks_factory(config)
        self.config = config
        self.model_list = _dumps(self._models_body(config))
        new = self.ensure_backends(config)
        if new:
            self.spawn(self.load_backends(new))

    def reload_from_source(self) -> bool:
        """Reload the config file (SIGHUP); a config that fails to load is logged and the old one kept."""
        from ragops.serving.gateway.config import load_gateway_config

        try:
            config = load_gateway_config(self.config_path, self.settings)
        except Exception as exc:  # a bad file must not take the gateway down: keep serving the old one
            log.error("gateway config reload failed; still serving the previous config (%s): %s",
                      self.config.source or "(defaults)", exc)
            return False
        self.reload(config)
        return True

    # --- logging ---
    def record(self, request_id: str, started: float, *, key: KeyConfig | None, route: str, target: str,
               request: ChatRequest | None, status: str, http_status: int, error: str | None = None,
               answer: Answer | None = None, text: str | None = None, ttft_ms: float | None = None,
               shadow: bool = False) -> None:
        latency_ms = (time.perf_counter() - started) * 1000
        usage = answer.usage if answer else {}
        question = request.question if request else ""
        answer_text = text if text is not None else (answer.text if answer else "")
        redact = getattr(self.checks_for(route), "redact_for_log", None) if request is not None else None
        if redact is not None:  # PII never reaches the log (the journal, then Delta)
            question, answer_text = redact(request, question), redact(request, answer_text)
        rec = self.record_type(
            request_id=request_id, timestamp=datetime.now(timezone.utc), key_name=key.name if key else "",
            route=route, target=target, model_uri=answer.model_uri if answer else None,
            model_version=answer.model_version if answer else None,
            lineage=answer.lineage if answer else {}, question=question, answer=answer_text,
            sources=answer.sources if answer else [], chunk_ids=answer.chunk_ids if answer else [],
            status=status, http_status=http_status, error=error, latency_ms=latency_ms,
            ttft_ms=ttft_ms if ttft_ms is not None else (answer.ttft_ms if answer else None),
            prompt_tokens=int(usage.get("prompt_tokens", 0)), completion_tokens=int(usage.get("completion_tokens", 0)),
            shadow=shadow, access_groups=(answer.access or {}).get("groups") if answer and answer.access else None,
            guardrails=list(request.guardrails) if request else [])
        try:
            self.log.record(rec)
        except Exception as exc:  # the answer was served; a log failure is the log's to report
            log.error("inference log: request %s not recorded: %s", request_id, exc)
        if shadow:
            return
        label_route = route if route in self.config.routes else "-"
        self.metrics.requests.labels(label_route, target or "-", str(http_status)).inc()
        for outcome in rec.guardrails:
            if outcome.get("action") in ("blocked", "refused"):
                self.metrics.guardrail_blocks.labels(label_route, str(outcome.get("check"))).inc()
        if answer is not None:
            self.metrics.latency.labels(label_route, target).observe(latency_ms / 1000)
            first = rec.ttft_ms
            if first is not None:
                self.metrics.ttft.labels(label_route, target).observe(first / 1000)
            self.metrics.tokens.labels(label_route, target, "prompt").inc(rec.prompt_tokens)
            self.metrics.tokens.labels(label_route, target, "completion").inc(rec.completion_tokens)
        # gen_ai.request.model is what the client asked for (the route); gen_ai.response.model the
        # registered model version that answered.
        name = model_name_of(rec.model_uri) or target or "-"
        response_model = f"{name}/{rec.model_version}" if rec.model_version else name
        m = self.metrics
        m.gen_ai_duration.labels("chat", label_route, response_model,
                                 "" if status == "ok" else status).observe(latency_ms / 1000)
        if answer is not None:
            if rec.ttft_ms is not None:
                m.gen_ai_ttft.labels("chat", label_route, response_model).observe(rec.ttft_ms / 1000)
            m.gen_ai_tokens.labels("chat", label_route, response_model, "input").observe(rec.prompt_tokens)
            m.gen_ai_tokens.labels("chat", label_route, response_model, "output").observe(rec.completion_tokens)

    # --- shadow ---
    def start_shadow(self, request_id: str, key: KeyConfig, route: RouteConfig, target: Target,
                     request: ChatRequest, question: Question) -> None:
        """The shadow target answers after the caller's answer is ready (a local model would otherwise
        compete with the caller's for the CPU); its answer only goes to the log."""
        if len(self.shadow_tasks) >= MAX_SHADOW_IN_FLIGHT:
            self.metrics.shadow.labels(route.name, target.name, "skipped").inc()
            return
        self.spawn(self._shadow(request_id, key, route, target, request, question), self.shadow_tasks)

    async def _shadow(self, request_id: str, key: KeyConfig, route: RouteConfig, target: Target,
                      request: ChatRequest, question: Question) -> None:
        started = time.perf_counter()
        try:
            answer = await asyncio.wait_for(self.backend(target).complete(question), route.timeout_s)
        except asyncio.TimeoutError:
            self.record(request_id, started, key=key, route=route.name, target=target.name, request=request,
                        status="timeout", http_status=504, error=f"shadow past {route.timeout_s} s", shadow=True)
            self.metrics.shadow.labels(route.name, target.name, "timeout").inc()
        except Exception as exc:
            self.record(request_id, started, key=key, route=route.name, target=target.name, request=request,
                        status="error", http_status=502, error=f"{type(exc).__name__}: {exc}", shadow=True)
            self.metrics.shadow.labels(route.name, target.name, "error").inc()
        else:
            self.record(request_id, started, key=key, route=route.name, target=target.name, request=request,
                        status="ok", http_status=200, answer=answer, shadow=True)
            self.metrics.shadow.labels(route.name, target.name, "ok").inc()

    # --- lifecycle ---
    async def start(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self.log.start)
        self.spawn(self.load_backends(list(self.backends.values())))
        self.spawn(self._gauge_loop())

    async def _gauge_loop(self) -> None:
        while True:
            with contextlib.suppress(Exception):
                self.metrics.log_depth.set(self.log.depth())
            await asyncio.sleep(1.0)

    async def stop(self, shadow_grace_s: float = 5.0) -> None:
        if self.shadow_tasks:  # shadows answering now are logged if they finish soon; the rest are dropped
            await asyncio.wait(list(self.shadow_tasks), timeout=shadow_grace_s)
        for task in list(self.background) + list(self.shadow_tasks):
            task.cancel()
        for backend in self.backends.values():
            with contextlib.suppress(Exception):
                await backend.aclose()
        self.limiter.close()
        await asyncio.get_running_loop().run_in_executor(None, self.log.close)


_NO_CHECKS = NoChecks()


def _completion(request_id: str, route: str, created: int, answer: Answer, text: str) -> dict[str, Any]:
    return {"id": request_id, "object": "chat.completion", "created": created, "model": route,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                         "finish_reason": "stop", "logprobs": None}],
            "usage": answer.usage, "sources": answer.sources, "model_version": answer.model_version,
            "lineage": answer.lineage}


def _chunk(request_id: str, route: str, created: int, delta: dict[str, Any], finish: str | None = None) -> bytes:
    body = {"id": request_id, "object": "chat.completion.chunk", "created": created, "model": route,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]}
    return b"data: " + _dumps(body) + b"\n\n"


async def _next_within(stream: AsyncIterator[Any], deadline: float) -> Any:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise asyncio.TimeoutError
    return await asyncio.wait_for(stream.__anext__(), remaining)


async def _close(stream: AsyncIterator[Any]) -> None:
    with contextlib.suppress(BaseException):
        await stream.aclose()  # type: ignore[attr-defined]


def create_app(gateway_config: GatewayConfig, settings: Settings, *, inference_log: Any = None,
               feedback: Any = None, router: Any = None, limiter: RateLimiter | None = None,
               backend_factory: Callable[[Target, Settings], Backend] = make_backend,
               checks: RequestChecks | Mapping[str, RequestChecks] | None = None,
               handle_sighup: bool = False, config_path: str | None = None) -> FastAPI:
    """The gateway app for one worker process. Defaults: an :class:`InferenceLog` and
    :class:`FeedbackStore` under ``settings.root``, a :class:`Router` over ``gateway_config``,
    limits shared through ``<root>/gateway/limits/``, and the real backends (tests pass fakes).
    ``handle_sighup`` reloads ``config_path`` on SIGHUP (the CLI's workers; needs the main thread)."""
    if inference_log is None:
        from ragops.serving.gateway.journal import InferenceLog

        inference_log = InferenceLog(settings, writer="process")  # Delta commits off the request path's GIL
    if feedback is None:
        from ragops.serving.gateway.feedback import FeedbackStore

        feedback = FeedbackStore(settings, inference_log)
    if router is None:
        from ragops.serving.gateway.routing import Router

        router = Router(gateway_config)
    checks_factory = None
    if checks is None:  # the guardrails of each route's policy (config `guardrails:`, else the default)
        from ragops.guardrails.policy import RouteGuardrails

        checks_factory = RouteGuardrails
        checks = checks_factory(gateway_config)
    gw = Gateway(gateway_config, settings, log_=inference_log, feedback=feedback, router=router,
                 limiter=limiter or RateLimiter(settings.root / "gateway" / "limits"),
                 backend_factory=backend_factory, checks=checks, config_path=config_path)
    gw.checks_factory = checks_factory

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        await gw.start()
        if handle_sighup and hasattr(signal, "SIGHUP"):
            loop = asyncio.get_running_loop()
            loop.add_signal_handler(signal.SIGHUP, gw.reload_from_source)
        try:
            yield
        finally:
            if handle_sighup and hasattr(signal, "SIGHUP"):
                with contextlib.suppress(Exception):
                    asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
            await gw.stop()

    app = FastAPI(title="ragops gateway", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.gateway = gw

    # Every error a client sees is OpenAI-shaped, also an unknown path and a bug.
    from starlette.exceptions import HTTPException as StarletteHTTPException

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        error = GatewayError(str(exc.detail), code="not_found" if exc.status_code == 404 else None)
        error.status, error.type = exc.status_code, "invalid_request_error"
        return error_response(error, "")

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> Response:
        log.exception("gateway: unexpected error on %s", request.url.path)
        return error_response(GatewayError(f"internal gateway error ({type(exc).__name__})",
                                           code="internal_error"), "")

    def authenticate(request: Request) -> KeyConfig:
        try:
            return gw.keyring.authenticate(request.headers.get("authorization"))
        except AuthError as exc:
            raise Unauthorized(str(exc), code=exc.code) from None

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        started = time.perf_counter()
        request_id = new_request_id()
        key: KeyConfig | None = None
        chat: ChatRequest | None = None
        route_name = ""
        try:
            key = authenticate(request)
            chat = parse_chat_request(decode_json(await read_body(request, gw.config.max_body_bytes)),
                                      gw.config.default_route)
            route_name = chat.model
            chat.session_id = request.headers.get("x-session-id")
            route = gw.config.routes.get(chat.model)
            if route is None:
                raise RouteNotFound(f"the model (route) {chat.model!r} does not exist; known: "
                                    f"{', '.join(gw.config.routes)}", param="model")
            sticky_key = chat.user if route.sticky == "user" else chat.session_id if route.sticky == "session" else None
            decision = gw.router.choose(route.name, sticky_key)
            verdict = gw.limiter.admit(key)
            if not verdict.allowed:
                raise rate_limited(key, verdict)
            checks = gw.checks_for(route.name)
            checks.before(chat)  # ← guardrails (input)
        except GatewayError as exc:
            gw.record(request_id, started, key=key, route=route_name, target="", request=chat,
                      status="refused", http_status=exc.status, error=str(exc))
            return error_response(exc, request_id)
        except LookupError as exc:  # routing.UnknownRoute: the route vanished in a reload just now
            refusal = RouteNotFound(str(exc), param="model")
            gw.record(request_id, started, key=key, route=route_name, target="", request=chat,
                      status="refused", http_status=404, error=str(exc))
            return error_response(refusal, request_id)

        question = Question(question=chat.question, history=chat.history, groups=tuple(key.groups),
                            route=route.name, messages=chat.messages, max_tokens=chat.max_tokens,
                            temperature=chat.temperature, user=chat.user)
        deadline = time.monotonic() + route.timeout_s
        # A route whose checks may change or refuse the answer gets it whole, then streamed from the buffer.
        if chat.stream and not getattr(checks, "buffers_output", False):
            return await _stream(gw, request_id, started, key, route, decision, chat, question, checks, deadline)

        target, status = decision.target, "ok"
        try:
            try:
                answer = await asyncio.wait_for(gw.backend(target).complete(question), route.timeout_s)
            except BackendTimeout:
                raise
            except BackendError as exc:
                if decision.fallback is None:
                    raise
                log.warning("request %s: target %s failed (%s); %s answers", request_id, target.name, exc,
                            decision.fallback.name)
                target, status = decision.fallback, "fallback"
                answer = await asyncio.wait_for(gw.backend(target).complete(question),
                                                max(0.001, deadline - time.monotonic()))
            answer = checks.after(chat, answer)  # ← guardrails (output)
        except (asyncio.TimeoutError, BackendTimeout):
            exc = UpstreamTimeout(f"the model ({target.name}) did not answer within {route.timeout_s} s")
            gw.record(request_id, started, key=key, route=route.name, target=target.name, request=chat,
                      status="timeout", http_status=504, error=str(exc))
            return error_response(exc, request_id)
        except BackendError as exc:
            failed = UpstreamFailed(f"the model ({target.name}) failed to answer: {exc}")
            gw.record(request_id, started, key=key, route=route.name, target=target.name, request=chat,
                      status="error", http_status=502, error=str(exc))
            return error_response(failed, request_id)
        except GatewayError as exc:  # a check refused the answer
            gw.record(request_id, started, key=key, route=route.name, target=target.name, request=chat,
                      status="refused", http_status=exc.status, error=str(exc))
            return error_response(exc, request_id)

        gw.limiter.charge_tokens(key, answer.usage.get("total_tokens", 0))
        if chat.stream:  # buffered for the output checks
            gw.record(request_id, started, key=key, route=route.name, target=target.name, request=chat,
                      status=status, http_status=200, answer=answer)
            if decision.shadow is not None:
                gw.start_shadow(request_id, key, route, decision.shadow, chat, question)
            return StreamingResponse(_buffered_events(request_id, route.name, answer), media_type="text/event-stream",
                                     headers={"X-Request-Id": request_id, "Cache-Control": "no-cache"})
        body = _dumps(_completion(request_id, route.name, int(time.time()), answer, answer.text))
        gw.record(request_id, started, key=key, route=route.name, target=target.name, request=chat,
                  status=status, http_status=200, answer=answer)
        if decision.shadow is not None:
            gw.start_shadow(request_id, key, route, decision.shadow, chat, question)
        return Response(body, media_type="application/json", headers={"X-Request-Id": request_id})

    @app.get("/v1/models")
    async def models(request: Request) -> Response:
        try:
            authenticate(request)
        except GatewayError as exc:
            return error_response(exc, "")
        return Response(gw.model_list, media_type="application/json")

    @app.post("/v1/feedback")
    async def feedback_endpoint(request: Request) -> Response:
        from starlette.concurrency import run_in_threadpool

        try:
            key = authenticate(request)
            data = decode_json(await read_body(request, gw.config.max_body_bytes))
            if not isinstance(data, dict):
                raise InvalidBody("the request body must be a JSON object", code="invalid_type")
            request_id, rating = data.get("request_id"), data.get("rating")
            if not isinstance(request_id, str) or not request_id:
                raise InvalidBody("'request_id' must be the id of a chat completion", param="request_id")
            if rating not in ("up", "down"):
                raise InvalidBody("'rating' must be 'up' or 'down'", param="rating")
            for name in ("comment", "corrected_answer"):
                if data.get(name) is not None and not isinstance(data[name], str):
                    raise InvalidBody(f"'{name}' must be a string", param=name)
            try:
                feedback_id = await run_in_threadpool(gw.feedback.submit, request_id, key.name, rating,
                                                      data.get("comment"), data.get("corrected_answer"))
            except LookupError as exc:  # feedback.UnknownRequest
                raise RequestNotFound(str(exc), param="request_id") from None
            except ValueError as exc:  # feedback.FeedbackError: names its field
                raise InvalidBody(str(exc), param=getattr(exc, "field", None)) from None
        except GatewayError as exc:
            return error_response(exc, "")
        return Response(_dumps({"id": feedback_id, "object": "feedback", "request_id": request_id, "rating": rating}),
                        media_type="application/json")

    @app.get("/health")
    async def health() -> Response:
        return Response(_dumps({"status": "ok", "worker": os.getpid()}), media_type="application/json")

    @app.get("/ready")
    async def ready() -> Response:
        targets = {}
        for backend in gw.current_backends():
            error = getattr(backend, "load_error", None)
            targets[backend.target.name] = "ready" if backend.ready else f"failed: {error}" if error else "loading"
        ok = gw.ready
        return Response(_dumps({"ready": ok, "targets": targets, "config": gw.config.source}),
                        status_code=200 if ok else 503, media_type="application/json")

    @app.get("/metrics")
    async def metrics() -> Response:
        with contextlib.suppress(Exception):
            gw.metrics.log_depth.set(gw.log.depth())
        data, content_type = gw.metrics.exposition()
        return Response(data, media_type=content_type)

    from ragops.serving.gateway.monitor_page import add_monitor_routes
    from ragops.serving.gateway.review import add_review_routes

    add_review_routes(app, gw)
    add_monitor_routes(app, gw)
    return app


def rate_limited(key: KeyConfig, verdict: Verdict) -> TooManyRequests:
    """The 429 of a refused key, typed as OpenAI types its own: ``requests`` or ``tokens``."""
    what = "tokens" if verdict.limit_name == "tokens_per_minute" else "requests"
    exc = TooManyRequests(f"rate limit reached for key {key.name!r}: {verdict.limit} {what} per minute; "
                          f"retry after {verdict.retry_after_s} s", headers={"Retry-After": str(verdict.retry_after_s)})
    exc.type = what
    return exc


async def _stream(gw: Gateway, request_id: str, started: float, key: KeyConfig, route: RouteConfig, decision: Any,
                  chat: ChatRequest, question: Question, checks: RequestChecks, deadline: float) -> Response:
    """A streamed answer. The first piece is awaited before the response starts, so a target that
    fails or times out before answering still gets a proper status (fallback, 502, 504); after
    that, a failure can only be reported inside the stream, as an OpenAI error event."""
    target, status = decision.target, "ok"
    stream = gw.backend(target).stream(question)
    try:
        try:
            first = await _next_within(stream, deadline)
        except BackendTimeout:
            raise
        except BackendError as exc:
            await _close(stream)
            if decision.fallback is None:
                raise
            log.warning("request %s: target %s failed (%s); %s answers", request_id, target.name, exc,
                        decision.fallback.name)
            target, status = decision.fallback, "fallback"
            stream = gw.backend(target).stream(question)
            first = await _next_within(stream, deadline)
    except (asyncio.TimeoutError, BackendTimeout):
        await _close(stream)
        exc = UpstreamTimeout(f"the model ({target.name}) did not answer within {route.timeout_s} s")
        gw.record(request_id, started, key=key, route=route.name, target=target.name, request=chat,
                  status="timeout", http_status=504, error=str(exc))
        return error_response(exc, request_id)
    except (BackendError, StopAsyncIteration) as exc:
        await _close(stream)
        failed = UpstreamFailed(f"the model ({target.name}) failed to answer: {exc}")
        gw.record(request_id, started, key=key, route=route.name, target=target.name, request=chat,
                  status="error", http_status=502, error=str(exc))
        return error_response(failed, request_id)

    created = int(time.time())

    async def events() -> AsyncIterator[bytes]:
        nonlocal status
        parts: list[str] = []
        answer: Answer | None = None
        ttft_ms: float | None = None
        error: str | None = None
        http_status = 200
        try:
            yield _chunk(request_id, route.name, created, {"role": "assistant", "content": ""})
            item = first
            while not isinstance(item, Answer):
                if item:
                    ttft_ms = ttft_ms or (time.perf_counter() - started) * 1000
                    parts.append(item)
                    yield _chunk(request_id, route.name, created, {"content": item})
                item = await _next_within(stream, deadline)
            answer = checks.after(chat, item)  # ← guardrails (output; the deltas are already sent)
            yield _chunk(request_id, route.name, created, {}, finish="stop")
            final = {"id": request_id, "object": "chat.completion.chunk", "created": created, "model": route.name,
                     "choices": [], "usage": answer.usage, "sources": answer.sources,
                     "model_version": answer.model_version, "lineage": answer.lineage}
            yield b"data: " + _dumps(final) + b"\n\n"
            yield b"data: [DONE]\n\n"
        except (asyncio.TimeoutError, BackendTimeout):
            status, http_status = "timeout", 504
            error = f"the model ({target.name}) did not finish within {route.timeout_s} s"
            yield b"data: " + _dumps(UpstreamTimeout(error).body()) + b"\n\n"
        except (BackendError, GatewayError, StopAsyncIteration) as exc:
            status, http_status = "error", getattr(exc, "status", 502)
            error = f"the model ({target.name}) failed mid-answer: {exc}"
            yield b"data: " + _dumps(UpstreamFailed(error).body()) + b"\n\n"
        except BaseException as exc:  # the client went away (cancelled): still logged
            status, http_status, error = "error", 499, f"client disconnected ({type(exc).__name__})"
            raise
        finally:
            await _close(stream)
            text = "".join(parts) if parts or answer is None else answer.text
            if answer is not None and http_status == 200:
                gw.limiter.charge_tokens(key, answer.usage.get("total_tokens", 0))
            gw.record(request_id, started, key=key, route=route.name, target=target.name, request=chat,
                      status=status, http_status=http_status, error=error, answer=answer, text=text,
                      ttft_ms=ttft_ms)
            if decision.shadow is not None and http_status == 200:
                gw.start_shadow(request_id, key, route, decision.shadow, chat, question)

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"X-Request-Id": request_id, "Cache-Control": "no-cache"})


async def _buffered_events(request_id: str, route: str, answer: Answer) -> AsyncIterator[bytes]:
    """A checked answer as the same server-sent events a live stream sends (one content chunk)."""
    created = int(time.time())
    yield _chunk(request_id, route, created, {"role": "assistant", "content": ""})
    if answer.text:
        yield _chunk(request_id, route, created, {"content": answer.text})
    yield _chunk(request_id, route, created, {}, finish="stop")
    final = {"id": request_id, "object": "chat.completion.chunk", "created": created, "model": route,
             "choices": [], "usage": answer.usage, "sources": answer.sources,
             "model_version": answer.model_version, "lineage": answer.lineage}
    yield b"data: " + _dumps(final) + b"\n\n"
    yield b"data: [DONE]\n\n"


def app_from_environment() -> FastAPI:
    """The factory uvicorn's worker processes call (``ragops gateway``): settings from the bundle
    target and ``--var`` values, and the config file, passed through the environment."""
    from ragops.bundle import settings_for
    from ragops.logs import setup_logging
    from ragops.serving.gateway.config import load_gateway_config

    if hasattr(signal, "SIGHUP"):  # until the app's handler is in place, a reload signal must not kill us
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
    setup_logging(os.environ.get("RAGOPS_LOG_LEVEL") or "INFO")
    settings = settings_for(os.environ.get(ENV_TARGET) or None, json.loads(os.environ.get(ENV_VARS) or "{}"))
    path = os.environ.get(ENV_CONFIG) or None
    return create_app(load_gateway_config(path, settings), settings, handle_sighup=True, config_path=path)


def serve_gateway(settings: Settings, config_path: str | None, *, target: str | None = None,
                  variables: Mapping[str, str] | None = None, host: str = "127.0.0.1", port: int = 8000,
                  workers: int = 1, graceful_timeout_s: int = 30) -> int:
    """Run the gateway in the foreground until SIGTERM / Ctrl-C (each worker flushes its inference
    log on the way out); SIGHUP makes every worker reload the config file in place (models already
    loaded stay loaded). ``workers`` > 1: uvicorn's supervisor with that many processes sharing the
    socket, the limits (files under ``<root>/gateway/limits``) and the metrics
    (``PROMETHEUS_MULTIPROC_DIR``)."""
    import uvicorn

    os.environ[ENV_CONFIG] = str(config_path or "")
    os.environ[ENV_TARGET] = target or ""
    os.environ[ENV_VARS] = json.dumps(dict(variables or {}))
    if workers > 1:
        from ragops.serving.local import worker_threads

        metrics_dir = settings.root / "gateway" / "metrics"
        metrics_dir.mkdir(parents=True, exist_ok=True)
        for stale in metrics_dir.glob("*.db"):  # samples of a previous run's (dead) workers
            stale.unlink()
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
        # N workers each running a model on every core would fight over them (as `ragops serve`)
        threads = str(worker_threads(workers))
        os.environ.setdefault("OMP_NUM_THREADS", threads)
        os.environ.setdefault("RAGOPS_LLM_THREADS", threads)
    config = uvicorn.Config("ragops.serving.gateway.app:app_from_environment", factory=True, host=host, port=port,
                            workers=workers, lifespan="on", access_log=False, log_config=None,
                            timeout_graceful_shutdown=graceful_timeout_s)
    if workers <= 1:
        server = uvicorn.Server(config)
        # After its graceful shutdown uvicorn re-raises the signal that stopped it under the handler
        # that was in place before; with this no-op one a SIGTERM'd gateway exits 0 (its log flushed).
        previous = signal.signal(signal.SIGTERM, lambda signum, frame: None)
        try:
            server.run()
        except KeyboardInterrupt:  # Ctrl-C, re-raised the same way after the clean shutdown
            pass
        finally:
            signal.signal(signal.SIGTERM, previous)
        return 0 if server.started else 1
    from uvicorn.supervisors import Multiprocess

    class ReloadingSupervisor(Multiprocess):
        def handle_hup(self) -> None:  # uvicorn restarts every worker; reloading in place keeps the models
            log.info("SIGHUP: every worker reloads the gateway config")
            for process in self.processes:
                if process.pid is not None:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(process.pid, signal.SIGHUP)

    ReloadingSupervisor(config, sockets=[config.bind_socket()]).run()
    return 0


__all__ = ["ChatRequest", "CheckRefused", "Gateway", "GatewayError", "NoChecks", "RequestChecks",
           "app_from_environment", "create_app", "parse_chat_request", "serve_gateway"]
