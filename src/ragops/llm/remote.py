"""Hosted chat models: any OpenAI-compatible ``/v1/chat/completions`` server, and Databricks
Model Serving endpoints (through databricks-sdk)."""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult

from ragops.errors import RagopsError
from ragops.llm.messages import to_dicts


class LLMError(RagopsError, RuntimeError):
    pass


def _usage(u: dict[str, Any] | None) -> dict[str, int] | None:
    if not u:
        return None
    i, o = int(u.get("prompt_tokens", 0)), int(u.get("completion_tokens", 0))
    return {"input_tokens": i, "output_tokens": o, "total_tokens": int(u.get("total_tokens", i + o))}


class OpenAICompatibleChatModel(BaseChatModel):
    """POST ``{base_url}/chat/completions``; streaming via server-sent events."""

    base_url: str
    model_name: str
    api_key: str = ""
    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    timeout: float = 120.0
    max_retries: int = 2

    @property
    def _llm_type(self) -> str:
        return "openai-compatible"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"base_url": self.base_url, "model_name": self.model_name}

    def _body(self, messages: list[BaseMessage], stop: list[str] | None, stream: bool, **kw: Any) -> bytes:
        body = {
            "model": self.model_name,
            "messages": to_dicts(messages),
            "max_tokens": int(kw.get("max_new_tokens", self.max_new_tokens)),
            "temperature": float(kw.get("temperature", self.temperature)),
            "top_p": float(kw.get("top_p", self.top_p)),
            "stream": stream,
        }
        if stop:
            body["stop"] = stop
        if stream:
            body["stream_options"] = {"include_usage": True}
        return json.dumps(body).encode()

    def _open(self, body: bytes):
        url = f"{self.base_url.rstrip('/')}/chat/completions"
        headers = {"Content-Type": "application/json"}
        key = self.api_key or os.environ.get("OPENAI_API_KEY", "")
        if key:
            headers["Authorization"] = f"Bearer {key}"
        for attempt in range(self.max_retries + 1):
            try:
                return urllib.request.urlopen(urllib.request.Request(url, data=body, headers=headers), timeout=self.timeout)
            except urllib.error.HTTPError as exc:
                if (exc.code < 500 and exc.code != 429) or attempt == self.max_retries:
                    raise LLMError(f"{url}: HTTP {exc.code} {exc.read()[:300]!r}") from exc
            except (urllib.error.URLError, TimeoutError) as exc:
                if attempt == self.max_retries:
                    raise LLMError(f"{url}: {exc}") from exc
            time.sleep(min(4.0, 0.5 * 2**attempt))
        raise AssertionError("unreachable")

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        with self._open(self._body(messages, stop, False, **kwargs)) as resp:
            payload = json.loads(resp.read())
        try:
            text = payload["choices"][0]["message"]["content"] or ""
        except (KeyError, IndexError, TypeError) as exc:
            raise LLMError(f"unexpected response from {self.base_url}: {str(payload)[:300]}") from exc
        message = AIMessage(content=text, usage_metadata=_usage(payload.get("usage")),
                            response_metadata={"model_name": payload.get("model", self.model_name)})
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _stream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        with self._open(self._body(messages, stop, True, **kwargs)) as resp:
            for raw in resp:
                line = raw.decode().strip()
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    break
                event = json.loads(data)
                usage = _usage(event.get("usage"))
                delta = (event.get("choices") or [{}])[0].get("delta", {}).get("content") or ""
                if delta or usage:
                    chunk = ChatGenerationChunk(message=AIMessageChunk(content=delta, usage_metadata=usage))
                    if run_manager and delta:
                        run_manager.on_llm_new_token(delta, chunk=chunk)
                    yield chunk


class DatabricksChatModel(BaseChatModel):
    """A Databricks Model Serving chat endpoint (foundation model or custom), via databricks-sdk."""

    endpoint: str
    max_new_tokens: int = 256
    temperature: float = 0.0
    client: Any = None

    @property
    def _llm_type(self) -> str:
        return "databricks-serving"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"endpoint": self.endpoint}

    def _client(self):
        if self.client is None:
            from ragops.workspace import workspace_client

            self.client = workspace_client(purpose=f"the chat endpoint {self.endpoint!r} cannot be called")
        return self.client

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        from databricks.sdk.service.serving import ChatMessage, ChatMessageRole

        chat = [ChatMessage(role=ChatMessageRole(m["role"]), content=m["content"]) for m in to_dicts(messages)]
        resp = self._client().serving_endpoints.query(
            name=self.endpoint, messages=chat, stop=stop,
            max_tokens=int(kwargs.get("max_new_tokens", self.max_new_tokens)),
            temperature=float(kwargs.get("temperature", self.temperature)),
        )
        choice = resp.choices[0]
        content = choice.message.content if choice.message else (choice.text or "")
        usage = resp.usage
        meta = None if usage is None else {
            "input_tokens": usage.prompt_tokens or 0, "output_tokens": usage.completion_tokens or 0,
            "total_tokens": usage.total_tokens or 0}
        message = AIMessage(content=content or "", usage_metadata=meta,
                            response_metadata={"model_name": resp.model or self.endpoint})
        return ChatResult(generations=[ChatGeneration(message=message)])
