"""What the token-by-token local chat models (llama.cpp, OpenVINO) share: the chat template rendered
as transformers renders it, stop sequences on a stream of pieces, the stats every answer reports, and
LangChain's ``_generate`` / ``_stream`` on top of one ``_tokens`` generator."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult

from ragops.llm.base import LocalChatBase


@functools.lru_cache(maxsize=8)
def compiled_chat_template(template: str):
    import json
    from datetime import datetime

    import jinja2
    import jinja2.ext
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str):
        raise jinja2.exceptions.TemplateError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = lambda x, ensure_ascii=False, indent=None, separators=None, sort_keys=False: json.dumps(
        x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env.from_string(template)


class StopFilter:
    """Turns a stream of decoded pieces into safe-to-emit text: holds back a tail that could be the
    start of a stop sequence, and reports when one is complete (the text before it is emitted)."""

    def __init__(self, stop: list[str] | None) -> None:
        self.stop = [s for s in (stop or []) if s]
        self.text = ""
        self.emitted = 0
        self.stopped = False

    def feed(self, piece: str) -> str:
        self.text += piece
        if not self.stop:
            out, self.emitted = self.text[self.emitted:], len(self.text)
            return out
        hits = [i for i in (self.text.find(s, max(0, self.emitted - len(s))) for s in self.stop) if i >= 0]
        if hits:
            self.stopped = True
            self.text = self.text[:min(hits)]
            out, self.emitted = self.text[self.emitted:], len(self.text)
            return out
        hold = max((n for s in self.stop for n in range(min(len(s) - 1, len(self.text)), 0, -1)
                    if self.text.endswith(s[:n])), default=0)
        safe = len(self.text) - hold
        out, self.emitted = self.text[self.emitted:safe], max(self.emitted, safe)
        return out

    def flush(self) -> str:
        out, self.emitted = self.text[self.emitted:], len(self.text)
        return out


def render_chat_template(template: str, messages: list[dict[str, str]], special_tokens: dict[str, str]) -> str:
    """The prompt text, as ``tokenizer.apply_chat_template(..., add_generation_prompt=True)`` renders it
    (sandboxed jinja2 with ``trim_blocks`` and ``lstrip_blocks``; ``special_tokens``: ``bos_token`` etc.)."""
    return compiled_chat_template(template).render(messages=messages, add_generation_prompt=True, **special_tokens)


def generation_stats(*, model_name: str, engine: str, finish: str, n_prompt: int, n_out: int, started: float,
                     first: float | None, ended: float, **extra: Any) -> dict[str, Any]:
    """The last item of a ``_tokens`` stream: LangChain usage and the response metadata (TTFT, decode speed)."""
    ttft = (first or ended) - started
    decode = ended - (first or ended)
    return {
        "usage": {"input_tokens": n_prompt, "output_tokens": n_out, "total_tokens": n_prompt + n_out},
        "metadata": {
            "model_name": model_name, "engine": engine, "finish_reason": finish, **extra,
            "generation_seconds": round(ended - started, 4),
            "tokens_per_second": round(n_out / (ended - started), 2) if ended > started else None,
            "timings": {"ttft_s": round(ttft, 4), "total_s": round(ended - started, 4),
                        "decode_tokens_per_second": round((n_out - 1) / decode, 2) if n_out > 1 and decode > 0
                        else None},
        },
    }


class TokenStreamChatModel(LocalChatBase):
    """A local chat model that implements ``_tokens``: yield ``(text delta, {})`` pieces, then
    ``("", generation_stats(...))``."""

    def _tokens(self, messages: list[BaseMessage], stop: list[str] | None, **overrides: Any
                ) -> Iterator[tuple[str, dict[str, Any]]]:
        raise NotImplementedError

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        parts: list[str] = []
        stats: dict[str, Any] = {}
        for delta, info in self._tokens(messages, stop, **kwargs):
            parts.append(delta)
            stats = info or stats
        message = AIMessage(content="".join(parts).strip(), usage_metadata=stats["usage"],
                            response_metadata=stats["metadata"])
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _stream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        for delta, stats in self._tokens(messages, stop, **kwargs):
            if delta:
                chunk = ChatGenerationChunk(message=AIMessageChunk(content=delta))
                if run_manager:
                    run_manager.on_llm_new_token(delta, chunk=chunk)
                yield chunk
            else:
                yield ChatGenerationChunk(message=AIMessageChunk(
                    content="", usage_metadata=stats["usage"], response_metadata=stats["metadata"]))


__all__ = ["StopFilter", "TokenStreamChatModel", "compiled_chat_template", "generation_stats",
           "render_chat_template"]
