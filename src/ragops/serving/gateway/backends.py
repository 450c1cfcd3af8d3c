"""A route target's answerer: the registered chain in this process, or an upstream server over HTTP.

Every backend answers a :class:`Question` with an :class:`Answer` (``complete``) or with text
deltas followed by one final :class:`Answer` (``stream``). The app enforces the route's timeout
around these calls (it cancels them); a backend raises :class:`BackendError` for a failure the
fallback target may recover from.

In-process (``Target.model``): the same warm path as ``ragops ask`` (:mod:`ragops.serving.local`:
``resolve_version`` → ``cached_model`` → ``load_chain``), so one chain per model version and
process. The chain blocks (retrieval, then llama.cpp), so it runs in a thread pool; its LLM is one
llama.cpp context behind a lock (:mod:`ragops.llm.llamacpp`), so concurrent requests queue there.
Both ``complete`` and ``stream`` iterate ``RagChain.stream``: a cancelled call (timeout, client
gone) stops generation at the next token and frees the LLM for the next request, where a running
``invoke`` could not be interrupted. A request's ``max_tokens`` / ``temperature`` do not reach an
in-process chain: its generation settings are part of the registered version (and of its
lineage); an OpenAI-compatible upstream gets them.

Upstream (``Target.upstream``), with httpx:

- ``kind: openai`` — any OpenAI-compatible server; ``upstream`` is its base URL (``…/v1``) or the
  full ``…/chat/completions`` URL. Streaming is passed through. Extra fields a ragops gateway adds
  (``sources``, ``model_version``, ``lineage``) are kept.
- ``kind: mlflow`` — MLflow's scoring server (``ragops serve``): ``POST …/invocations`` with
  ``{"dataframe_records": [{"messages": […], "groups": [the key's groups]}]}``; its prediction is
  the chain's output dict.
- ``kind: databricks`` — a Databricks serving endpoint (``…/serving-endpoints/<name>/invocations``),
  same body, with ``Authorization: Bearer $DATABRICKS_TOKEN``.

mlflow and databricks answer in one piece; a streamed request gets that answer as one delta. The
OpenAI protocol has no field for the caller's groups: an OpenAI-compatible upstream applies its own
access control (another ragops gateway: the key it is called with).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from ragops.errors import RagopsError

if TYPE_CHECKING:
    from ragops.config import Settings
    from ragops.serving.gateway.config import Target

log = logging.getLogger("ragops.serving.gateway")

SOURCE_FIELDS = ("doc_id", "source_uri", "chunk_id", "score")
#: Threads running in-process chains. Retrieval runs in parallel; generation queues on the LLM's lock.
CHAIN_THREADS = int(os.environ.get("RAGOPS_GATEWAY_CHAIN_THREADS", "8"))


class BackendError(RagopsError, RuntimeError):
    """A target failed to answer (upstream unreachable or erroring, the chain raised): HTTP 502,
    or the route's fallback answers."""


class BackendTimeout(BackendError):
    """The target did not answer in time (HTTP 504)."""


class BackendNotReady(BackendError):
    """The target's model is not loaded (yet, or it failed to load)."""


@dataclass(frozen=True)
class Question:
    """What a backend is asked: the last user message, the turns before it, and the caller's scope."""

    question: str
    history: list[dict[str, str]] = field(default_factory=list)   # earlier user/assistant turns
    groups: tuple[str, ...] | None = None    # access control groups of the key (None: no filter)
    route: str = ""                          # the route name (sent as "model" to an OpenAI upstream)
    messages: list[dict[str, str]] = field(default_factory=list)  # the request's messages as sent
    max_tokens: int | None = None
    temperature: float | None = None
    user: str | None = None


@dataclass
class Answer:
    text: str
    sources: list[dict[str, Any]] = field(default_factory=list)
    usage: dict[str, int] = field(default_factory=lambda: {"prompt_tokens": 0, "completion_tokens": 0,
                                                           "total_tokens": 0})
    model_uri: str | None = None
    model_version: str | None = None
    lineage: dict[str, Any] = field(default_factory=dict)
    ttft_ms: float | None = None
    access: dict[str, Any] | None = None     # the chain's {"groups": [...] or None}: the filter that applied
    contexts: list[str] = field(default_factory=list)  # the passages' text, when the target returns it (guardrails)

    @property
    def chunk_ids(self) -> list[str]:
        return [str(s["chunk_id"]) for s in self.sources if s.get("chunk_id") is not None]


@runtime_checkable
class Backend(Protocol):
    """What the app calls. ``stream`` yields ``str`` deltas, then exactly one :class:`Answer`."""

    target: Target

    @property
    def ready(self) -> bool: ...

    async def load(self) -> None: ...

    async def complete(self, question: Question) -> Answer: ...

    def stream(self, question: Question) -> AsyncIterator[str | Answer]: ...

    async def aclose(self) -> None: ...


def clean_sources(sources: Any) -> list[dict[str, Any]]:
    """The fields of each source a client sees (doc id, source URI, chunk id, score)."""
    if not isinstance(sources, list):
        return []
    return [{k: s.get(k) for k in SOURCE_FIELDS} for s in sources if isinstance(s, dict)]


def usage_dict(usage: Any) -> dict[str, int]:
    usage = usage if isinstance(usage, dict) else {}
    prompt, completion = int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": int(usage.get("total_tokens") or prompt + completion)}


def answer_from_chain(out: dict[str, Any], model_uri: str | None, model_version: str | None,
                      ttft_ms: float | None = None) -> Answer:
    """The chain's output dict (``RagChain.invoke``/``stream``'s final event, or a pyfunc prediction)."""
    timings = out.get("timings") or {}
    if ttft_ms is None and timings.get("ttft_s") is not None:
        ttft_ms = float(timings["ttft_s"]) * 1000
    return Answer(text=str(out.get("answer") or ""), sources=clean_sources(out.get("sources")),
                  usage=usage_dict(out.get("usage")), model_uri=model_uri,
                  model_version=out.get("model_version") or model_version,
                  lineage=dict(out.get("lineage") or {}), ttft_ms=ttft_ms, access=out.get("access"),
                  contexts=[str(c) for c in out.get("contexts") or []])


# --- in-process ---------------------------------------------------------------------------

_END = object()
_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


def chain_executor() -> ThreadPoolExecutor:
    """The process's one pool for blocking chain calls (created on first use, after any fork)."""
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(max_workers=CHAIN_THREADS, thread_name_prefix="ragops-chain")
        return _executor


async def iterate_in_thread(make_iterator: Callable[[], Iterator[Any]],
                            executor: ThreadPoolExecutor | None = None) -> AsyncIterator[Any]:
    """Run a blocking iterator in a worker thread and yield its items here. When the consumer stops
    early (cancelled, timed out, client gone), the thread stops at its next item and closes the
    iterator, so the chain's generator (and llama.cpp's lock) is released."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue()
    stop = threading.Event()

    def put(item: Any, exc: BaseException | None = None) -> None:
        try:
            loop.call_soon_threadsafe(queue.put_nowait, (item, exc))
        except RuntimeError:  # the loop is gone (shutdown): nobody is listening
            stop.set()

    def produce() -> None:
        try:
            iterator = make_iterator()
            try:
                for item in iterator:
                    if stop.is_set():
                        break
                    put(item)
            finally:
                close = getattr(iterator, "close", None)
                if callable(close):
                    close()
            put(_END)
        except BaseException as exc:  # handed to the consumer, raised there
            put(_END, exc)

    loop.run_in_executor(executor or chain_executor(), produce)
    try:
        while True:
            item, exc = await queue.get()
            if item is _END:
                if exc is not None:
                    raise exc
                return
            yield item
    finally:
        stop.set()


class InProcessBackend:
    """A registered chain version loaded in this process (one per model version, shared by targets)."""

    def __init__(self, target: Target, settings: Settings) -> None:
        self.target = target
        self.settings = settings
        self.chain: Any = None
        self.model_version: str | None = None
        self.load_error: str | None = None
        self._accepts_groups = False
        self._load_lock = asyncio.Lock()

    @property
    def ready(self) -> bool:
        return self.chain is not None

    def _load_blocking(self) -> tuple[Any, str | None]:
        from ragops.serving.local import cached_model, load_chain, resolve_version

        ref, shown = resolve_version(self.settings, self.target.model)
        if ref is not None:
            model_dir, _ = cached_model(self.settings, ref)
        elif (Path(shown) / "MLmodel").exists():
            model_dir = Path(shown)
        else:
            raise BackendNotReady(f"target {self.target.name!r}: {shown!r} is neither a registered version "
                                  "nor a model folder; serve runs:/ URIs through `ragops serve` (kind: mlflow)")
        return load_chain(model_dir), ref.version if ref is not None else None

    async def load(self) -> None:
        async with self._load_lock:
            if self.chain is not None:
                return
            started = time.perf_counter()
            try:
                chain, version = await asyncio.get_running_loop().run_in_executor(chain_executor(),
                                                                                   self._load_blocking)
            except Exception as exc:
                self.load_error = str(exc)
                raise
            self._accepts_groups = "groups" in inspect.signature(chain.stream).parameters
            if not self._accepts_groups:
                # Fail closed: serving a chain that cannot filter by the caller's groups would show
                # every key every document, restricted ones included.
                self.load_error = (f"target {self.target.name!r}: this chain has no document access control "
                                   "(RagChain.stream takes no groups); log and register it again with this ragops")
                raise BackendNotReady(self.load_error)
            self.chain, self.model_version, self.load_error = chain, version, None
            log.info("target %s: %s (version %s) loaded in %.1f s", self.target.name, self.target.model,
                     version, time.perf_counter() - started)

    def _events(self, question: Question) -> Iterator[dict[str, Any]]:
        kwargs = {"groups": question.groups} if self._accepts_groups else {}
        return self.chain.stream(question.question, question.history, **kwargs)

    async def stream(self, question: Question) -> AsyncIterator[str | Answer]:
        if self.chain is None:
            await self.load()
        started = time.perf_counter()
        ttft_ms: float | None = None
        try:
            async for event in iterate_in_thread(lambda: self._events(question)):
                if event.get("done"):
                    yield answer_from_chain(event, self.target.model, self.model_version, ttft_ms)
                    return
                if event.get("delta"):
                    if ttft_ms is None:
                        ttft_ms = (time.perf_counter() - started) * 1000
                    yield str(event["delta"])
        except (BackendError, asyncio.CancelledError):
            raise
        except Exception as exc:  # the chain failed: a fallback may answer
            raise BackendError(f"target {self.target.name!r} failed: {type(exc).__name__}: {exc}") from exc
        raise BackendError(f"target {self.target.name!r}: the chain's stream ended without a final answer")

    async def complete(self, question: Question) -> Answer:
        async for item in self.stream(question):
            if isinstance(item, Answer):
                return item
        raise BackendError(f"target {self.target.name!r}: no answer")

    async def aclose(self) -> None:
        return None


# --- upstream -----------------------------------------------------------------------------

class UpstreamBackend:
    """An upstream server over HTTP (``Target.upstream``; protocol ``Target.kind``)."""

    def __init__(self, target: Target, settings: Settings | None = None, *, connect_timeout_s: float = 5.0) -> None:
        self.target = target
        self.kind = target.kind
        base = str(target.upstream).rstrip("/")
        if self.kind == "openai":
            self.url = base if base.endswith("/chat/completions") else base + "/chat/completions"
        else:
            self.url = base if base.endswith("/invocations") else base + "/invocations"
        self.headers = {"Content-Type": "application/json"}
        if self.kind == "databricks" and os.environ.get("DATABRICKS_TOKEN"):
            self.headers["Authorization"] = f"Bearer {os.environ['DATABRICKS_TOKEN']}"
        self.connect_timeout_s = connect_timeout_s
        self._session: Any = None

    def session(self):
        """One aiohttp session per backend, made inside the running event loop on first use.

        Why aiohttp, not httpx: the gateway's own cost is its budget (p50 ≤ 2 ms), and with httpx
        the upstream call was most of it: 1.6–3.4 CPU ms per request against 0.8–0.9 ms with
        aiohttp, and 301 against 1,380 requests/s at 16 connections, in the same gateway app
        (BENCHMARKS.md section 10, ``benchmarks/probe_gateway_client.py``)."""
        if self._session is None or self._session.closed:
            import aiohttp

            # No read timeout here: the app cancels the call at the route's timeout.
            self._session = aiohttp.ClientSession(
                headers=self.headers, connector=aiohttp.TCPConnector(limit=256),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=self.connect_timeout_s))
        return self._session

    @property
    def ready(self) -> bool:
        return True  # nothing to load; an unreachable upstream is a per-request failure (fallback / 502)

    async def load(self) -> None:
        return None

    def _body(self, question: Question, stream: bool) -> dict[str, Any]:
        messages = question.messages or [*question.history, {"role": "user", "content": question.question}]
        if self.kind != "openai":
            # the pyfunc filters retrieval by a `groups` column (ragops.models.rag_model): the caller's groups
            record: dict[str, Any] = {"messages": messages}
            if question.groups is not None:
                record["groups"] = list(question.groups)
            return {"dataframe_records": [record]}
        body: dict[str, Any] = {"model": question.route, "messages": messages, "stream": stream}
        if question.max_tokens is not None:
            body["max_tokens"] = question.max_tokens
        if question.temperature is not None:
            body["temperature"] = question.temperature
        if question.user is not None:
            body["user"] = question.user
        if stream:
            body["stream_options"] = {"include_usage": True}
        return body

    def _failure(self, exc: Exception) -> BackendError:
        where = f"target {self.target.name!r} ({self.url})"
        if isinstance(exc, asyncio.TimeoutError):  # aiohttp's ServerTimeoutError is one too
            return BackendTimeout(f"{where} timed out: {type(exc).__name__}")
        return BackendError(f"{where} failed: {type(exc).__name__}: {exc}")

    def _answer(self, data: Any) -> Answer:
        if self.kind == "openai":
            try:
                text = data["choices"][0]["message"]["content"] or ""
            except (KeyError, IndexError, TypeError) as exc:
                raise BackendError(f"target {self.target.name!r}: not an OpenAI chat completion") from exc
            return Answer(text=text, sources=clean_sources(data.get("sources")), usage=usage_dict(data.get("usage")),
                          model_uri=self.target.upstream, model_version=data.get("model_version"),
                          lineage=dict(data.get("lineage") or {}))
        prediction = data.get("predictions") if isinstance(data, dict) else None
        if isinstance(prediction, list) and prediction:
            prediction = prediction[0]
        if not isinstance(prediction, dict) or "answer" not in prediction:
            raise BackendError(f"target {self.target.name!r}: the scoring server's answer has no predictions.answer")
        return answer_from_chain(prediction, self.target.upstream, None)

    async def complete(self, question: Question) -> Answer:
        started = time.perf_counter()
        try:
            async with self.session().post(self.url, data=json.dumps(self._body(question, False))) as response:
                status, raw = response.status, await response.read()
        except Exception as exc:
            raise self._failure(exc) from exc
        if status >= 400:
            raise BackendError(f"target {self.target.name!r} answered HTTP {status}: "
                               f"{raw[:300].decode('utf-8', 'replace')}")
        try:
            answer = self._answer(json.loads(raw))
        except ValueError as exc:
            raise BackendError(f"target {self.target.name!r}: the response is not JSON") from exc
        if answer.ttft_ms is None:
            answer.ttft_ms = (time.perf_counter() - started) * 1000
        return answer

    async def stream(self, question: Question) -> AsyncIterator[str | Answer]:
        if self.kind != "openai":
            answer = await self.complete(question)
            if answer.text:
                yield answer.text
            yield answer
            return
        started, ttft_ms = time.perf_counter(), None
        parts: list[str] = []
        extra: dict[str, Any] = {}
        usage: dict[str, int] | None = None
        try:
            async with self.session().post(self.url, data=json.dumps(self._body(question, True))) as resp:
                if resp.status >= 400:
                    body = (await resp.read()).decode("utf-8", "replace")
                    raise BackendError(f"target {self.target.name!r} answered HTTP {resp.status}: {body[:300]}")
                async for raw_line in resp.content:  # server-sent events, one line at a time
                    line = raw_line.decode("utf-8", "replace").strip()
                    if not line.startswith("data:"):
                        continue
                    payload = line[5:].strip()
                    if payload == "[DONE]":
                        break
                    chunk = json.loads(payload)
                    if "error" in chunk:
                        raise BackendError(f"target {self.target.name!r}: {chunk['error']}")
                    for name in ("sources", "model_version", "lineage"):
                        if chunk.get(name) is not None:
                            extra[name] = chunk[name]
                    if chunk.get("usage"):
                        usage = usage_dict(chunk["usage"])
                    for choice in chunk.get("choices") or []:
                        text = (choice.get("delta") or {}).get("content")
                        if text:
                            ttft_ms = ttft_ms or (time.perf_counter() - started) * 1000
                            parts.append(text)
                            yield text
        except BackendError:
            raise
        except Exception as exc:
            raise self._failure(exc) from exc
        yield Answer(text="".join(parts), sources=clean_sources(extra.get("sources")),
                     usage=usage or usage_dict(None), model_uri=self.target.upstream,
                     model_version=extra.get("model_version"), lineage=dict(extra.get("lineage") or {}),
                     ttft_ms=ttft_ms)

    async def aclose(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()


def make_backend(target: Target, settings: Settings) -> Backend:
    """The backend of a target: in-process for ``model``, HTTP for ``upstream``."""
    if target.upstream:
        return UpstreamBackend(target, settings)
    return InProcessBackend(target, settings)


__all__ = ["Answer", "Backend", "BackendError", "BackendNotReady", "BackendTimeout", "InProcessBackend",
           "Question", "UpstreamBackend", "iterate_in_thread", "make_backend"]
