"""Chat model on transformers (SmolLM2 by default, ``llm_backend=transformers``), as a LangChain chat model.

Generation parameters, streaming (``TextIteratorStreamer``) and token counts (``usage_metadata``)
behave like the hosted backends, so the chain does not care which one it talks to. This is the
backend fine-tuning trains with; the faster default for answering is llama.cpp
(:mod:`ragops.llm.llamacpp`), which sees the same prompt tokens.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult

from ragops.llm.base import LocalChatBase
from ragops.llm.messages import to_dicts, truncate_at_stop
from ragops.weights.llm import resolve_llm_path

log = logging.getLogger(__name__)


@functools.lru_cache(maxsize=2)
def load_transformers_model(name: str, device: str = "auto"):
    """(model, tokenizer), loaded once per process."""
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    transformers.utils.logging.disable_progress_bar()
    path = resolve_llm_path(name)
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    started = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    model = AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype).to(device).eval()
    log.info("loaded LLM %s on %s in %.1fs", name, device, time.perf_counter() - started)
    return model, tokenizer


def _first_token_clock():
    """A stopping criterion that never stops, only notes when the first new token exists (TTFT)."""
    import torch
    from transformers import StoppingCriteria

    class FirstTokenClock(StoppingCriteria):
        at: float | None = None

        def __call__(self, input_ids, scores, **kwargs):
            if self.at is None:
                self.at = time.perf_counter()
            return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)

    return FirstTokenClock()


def _timings(started: float, first: float | None, ended: float, n_out: int) -> dict[str, Any]:
    decode = ended - (first or ended)
    return {"ttft_s": round((first or ended) - started, 4), "total_s": round(ended - started, 4),
            "decode_tokens_per_second": round((n_out - 1) / decode, 2) if n_out > 1 and decode > 0 else None}


class LocalChatModel(LocalChatBase):
    """A transformers causal LM behind LangChain's chat-model interface."""

    device: str = "auto"

    @property
    def _llm_type(self) -> str:
        return "ragops-local-transformers"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": self.model_name, "max_new_tokens": self.max_new_tokens,
                "temperature": self.temperature, "top_p": self.top_p}

    def warm(self) -> None:
        load_transformers_model(self.model_name, self.device)

    def _inputs(self, messages: list[BaseMessage]):
        model, tokenizer = load_transformers_model(self.model_name, self.device)
        enc = tokenizer.apply_chat_template(
            to_dicts(messages), add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        return model, tokenizer, {k: v.to(model.device) for k, v in dict(enc).items()}

    def _generation_kwargs(self, tokenizer, **overrides: Any) -> dict[str, Any]:
        temperature = float(overrides.get("temperature", self.temperature))
        kwargs: dict[str, Any] = {
            "max_new_tokens": int(overrides.get("max_new_tokens", self.max_new_tokens)),
            "repetition_penalty": float(overrides.get("repetition_penalty", self.repetition_penalty)),
            "pad_token_id": tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id,
        }
        if temperature > 0:
            kwargs.update(do_sample=True, temperature=temperature, top_p=float(overrides.get("top_p", self.top_p)))
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        return kwargs

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        import torch

        model, tokenizer, inputs = self._inputs(messages)
        n_in = int(inputs["input_ids"].shape[1])
        from transformers import StoppingCriteriaList

        clock = _first_token_clock()
        started = time.perf_counter()
        with torch.inference_mode():
            out = model.generate(**inputs, **self._generation_kwargs(tokenizer, **kwargs),
                                 stopping_criteria=StoppingCriteriaList([clock]))
        ended = time.perf_counter()
        seconds = ended - started
        new_tokens = out[0, n_in:]
        text = truncate_at_stop(tokenizer.decode(new_tokens, skip_special_tokens=True), stop)
        n_out = int(new_tokens.shape[0])
        message = AIMessage(
            content=text.strip(),
            usage_metadata={"input_tokens": n_in, "output_tokens": n_out, "total_tokens": n_in + n_out},
            response_metadata={"model_name": self.model_name, "engine": "transformers",
                               "generation_seconds": round(seconds, 4),
                               "tokens_per_second": round(n_out / seconds, 2) if seconds > 0 else None,
                               "timings": _timings(started, clock.at, ended, n_out)},
        )
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _stream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        import torch
        from transformers import TextIteratorStreamer

        model, tokenizer, inputs = self._inputs(messages)
        n_in = int(inputs["input_ids"].shape[1])
        started = time.perf_counter()
        first: float | None = None
        streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
        gen_kwargs = {**inputs, **self._generation_kwargs(tokenizer, **kwargs), "streamer": streamer}
        counter: dict[str, int] = {}

        def run() -> None:
            with torch.inference_mode():
                out = model.generate(**gen_kwargs)
            counter["n_out"] = int(out.shape[1] - n_in)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        produced = ""
        for piece in streamer:
            if not piece:
                continue
            first = first or time.perf_counter()
            produced += piece
            if stop and truncate_at_stop(produced, stop) != produced:
                break
            chunk = ChatGenerationChunk(message=AIMessageChunk(content=piece))
            if run_manager:
                run_manager.on_llm_new_token(piece, chunk=chunk)
            yield chunk
        thread.join()
        n_out = counter.get("n_out", 0)
        yield ChatGenerationChunk(message=AIMessageChunk(
            content="", usage_metadata={"input_tokens": n_in, "output_tokens": n_out, "total_tokens": n_in + n_out},
            response_metadata={"model_name": self.model_name, "engine": "transformers",
                               "timings": _timings(started, first, time.perf_counter(), n_out)}))
