"""Local chat model on llama.cpp (llama-cpp-python) over GGUF weights, as a LangChain chat model.

Why: on 2 CPU cores the packaged SmolLM2 Q4_1 GGUF decodes about 3x faster through llama.cpp
than through transformers fp32 on a quiet machine (28x on a busy one), loads in a fraction of a
second, takes a third of the memory and needs no torch (BENCHMARKS.md, section 8). Prefill is
compute-bound on both engines, so the time to the first token is about the same. The transformers backend (:mod:`ragops.llm.local`) stays:
fine-tuning trains with it.

Same prompt tokens as the transformers backend: the chat template is the GGUF's own
``tokenizer.chat_template`` (the one transformers copies into the converted folder), rendered
with jinja2 the way ``tokenizer.apply_chat_template`` renders it (sandboxed, ``trim_blocks`` and
``lstrip_blocks``), and tokenized by llama.cpp with special tokens parsed and no BOS added
(transformers' ``add_special_tokens=False``). ``tests/llm`` compares the token ids.

Generation is our own loop over ``Llama.generate`` rather than ``create_completion``: it gives the
time to the first token, exact prompt / completion token counts while streaming (llama-cpp-python's
stream carries no usage), and the KV cache is cleared before every call, so a temperature-0 answer
depends on nothing but its prompt (prefix reuse would evaluate the prompt in different batch splits).
Sampling: temperature 0 is greedy; otherwise temperature + top-p only (llama.cpp's default top-k 40
and min-p 0.05 are switched off, as transformers' backend applies neither). ``repetition_penalty``
maps to llama.cpp's ``repeat_penalty``, which looks back 64 tokens where transformers looks at the
whole sequence: equal at the default 1.0 (which RAG should keep).

One ``Llama`` per GGUF path and process (:func:`load_gguf`), guarded by a lock: a llama.cpp
context is not thread-safe, and the scoring server may call from several threads.
"""

from __future__ import annotations

import atexit
import codecs
import contextlib
import functools
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from langchain_core.messages import BaseMessage
from pydantic import PrivateAttr

from ragops.cpu import available_cores, llm_threads_override
from ragops.llm.generation import StopFilter, TokenStreamChatModel, generation_stats, render_chat_template
from ragops.llm.messages import to_dicts
from ragops.llm.remote import LLMError
from ragops.weights.llm import resolve_gguf_path

log = logging.getLogger(__name__)

#: Context window: the chain's prompt (chain_max_context_chars 6000 ≈ 1,500 tokens, + system
#: prompt, history and question) plus the answer fits with room; the KV cache costs ~94 MB at 4096.
DEFAULT_N_CTX = 4096


def default_threads() -> int:
    """Half the available cores (at least one). llama.cpp's OpenMP threads spin at every one of the
    ~300 barriers of a decode step: when any of them is descheduled (a busy or shared machine, the
    embedder in the same process) the step waits for it. On the 2-core benchmark box one thread
    decoded 3-5x faster than two under load, and never slower (BENCHMARKS.md); half the logical
    cores is also llama.cpp's own advice (physical cores, not hyper-threads). ``RAGOPS_LLM_THREADS``
    overrides it (``ragops serve --workers N`` sets it to share the cores between workers)."""
    return llm_threads_override() or max(1, available_cores() // 2)


def batch_threads_default() -> int:
    """Threads for prompt evaluation (prefill): every available core, or ``RAGOPS_LLM_THREADS``.
    Prefill is a few large matmuls per layer, not ~300 tiny synchronised steps, so a second thread
    pays: on 2 idle cores the chain's 772-token prompt took 1.7 s on two threads against 4.4 s on
    one (F16 weights; BENCHMARKS.md, section 8)."""
    return llm_threads_override() or available_cores()


@dataclass
class LoadedGGUF:
    llama: Any
    lock: threading.Lock
    path: str
    load_seconds: float
    chat_template: str
    special_tokens: dict[str, str]


def amx_compiled_in() -> bool:
    """Whether this llama.cpp build has its AMX int8 kernels (built natively on a CPU with AMX)."""
    import llama_cpp

    return b"AMX_INT8 = 1" in llama_cpp.llama_print_system_info()


_model_params_lock = threading.Lock()


@contextlib.contextmanager
def _model_params(**fields: Any):
    """llama-cpp-python 0.3.36 builds ``llama_model_params`` inside ``Llama.__init__`` from
    ``llama_model_default_params()`` and exposes no argument for some fields; this sets them for one
    load (under a lock, since the default function is swapped module-wide for that moment)."""
    import llama_cpp.llama as llama_module

    with _model_params_lock:
        default = llama_module.llama_cpp.llama_model_default_params

        def patched():
            params = default()
            for name, value in fields.items():
                setattr(params, name, value)
            return params

        llama_module.llama_cpp.llama_model_default_params = patched
        try:
            yield
        finally:
            llama_module.llama_cpp.llama_model_default_params = default


def open_llama(path: str, **kwargs: Any):
    """``llama_cpp.Llama(model_path=path, **kwargs)``, the one way the project opens a GGUF.

    llama.cpp's "extra" weight buffers repack quantized matrices for AMX where the build has it; with
    llama-cpp-python 0.3.36 on a 2-core Xeon with AMX that path crashed the process (SIGSEGV at the
    first evaluation) for SmolLM2's Q8_0 and Q4_1 weights, and F16 gained nothing from it (prefill of
    700 tokens 1.77 s with it, 1.90 s without). So it is off where AMX is compiled in, and left to
    llama.cpp elsewhere (its AVX2 repacks ran fine on the AMD box of BENCHMARKS.md §8)."""
    from llama_cpp import Llama

    with _model_params(use_extra_bufts=not amx_compiled_in()):
        return Llama(model_path=path, **kwargs)


def _new_context(path: str, n_ctx: int, threads: int, batch_threads: int) -> LoadedGGUF:
    started = time.perf_counter()
    llama = open_llama(path, n_ctx=n_ctx, n_threads=threads, n_threads_batch=batch_threads, verbose=False)
    # Free it before interpreter teardown: Llama.__del__ at exit finds llama.cpp's bindings gone and
    # prints a TypeError traceback after every `ragops ask`.
    atexit.register(llama.close)
    seconds = time.perf_counter() - started
    template = llama.metadata.get("tokenizer.chat_template")
    if not template:
        raise LLMError(f"{path} has no tokenizer.chat_template; the chat model needs one (convert with "
                       "ragops.weights.gguf.to_gguf, which copies the base model's template)")

    def piece(key: str) -> str:
        tid = llama.metadata.get(key)
        return "" if tid is None else llama.detokenize([int(tid)], special=True).decode("utf-8", "replace")

    special = {"bos_token": piece("tokenizer.ggml.bos_token_id"), "eos_token": piece("tokenizer.ggml.eos_token_id")}
    log.info("loaded GGUF %s in %.2fs (n_ctx %d, %d decode / %d prompt threads)", path, seconds, n_ctx, threads,
             batch_threads)
    return LoadedGGUF(llama, threading.Lock(), path, seconds, template, special)


@functools.lru_cache(maxsize=4)
def load_gguf(path: str, n_ctx: int = DEFAULT_N_CTX, n_threads: int = 0) -> LoadedGGUF:
    """The GGUF at ``path`` loaded once per process (and per n_ctx / n_threads)."""
    return _new_context(path, n_ctx, n_threads or default_threads(), n_threads or batch_threads_default())


class ContextPool:
    """Up to ``size`` llama.cpp contexts of one GGUF, so that ``size`` answers generate at once
    (evaluation, a serving process with concurrent requests). Each context runs on
    ``cores // size`` threads for decode and prompt alike, so the pool never asks for more threads
    than there are cores (oversubscribed llama.cpp threads spin-wait; see :func:`default_threads`).
    The weights are mmap'ed, so the contexts share one copy in the page cache; each adds its KV
    cache and scratch buffers (~100 MB at n_ctx 4096). Contexts are created on demand.

    Why: one context answers one request at a time, and on 2 cores two single-threaded contexts
    served 0.44 requests/s against 0.30 for one context on both cores (BENCHMARKS.md section 9):
    decode is latency-bound, so two sequences at once use the cores better than one sequence on two.
    """

    def __init__(self, path: str, n_ctx: int, size: int) -> None:
        self.path, self.n_ctx, self.size = path, n_ctx, max(1, size)
        self.threads = max(1, available_cores() // self.size)
        self._free: list[LoadedGGUF] = []
        self._count = 0
        self._cond = threading.Condition()
        self.first = self._create()
        self._free.append(self.first)

    def _create(self) -> LoadedGGUF:
        self._count += 1
        return _new_context(self.path, self.n_ctx, self.threads, self.threads)

    @contextlib.contextmanager
    def acquire(self) -> Iterator[LoadedGGUF]:
        with self._cond:
            while not self._free and self._count >= self.size:
                self._cond.wait()
            loaded = self._free.pop() if self._free else self._create()
        try:
            yield loaded
        finally:
            with self._cond:
                self._free.append(loaded)
                self._cond.notify()


@functools.lru_cache(maxsize=4)
def context_pool(path: str, n_ctx: int, size: int) -> ContextPool:
    return ContextPool(path, n_ctx, size)


def render_chat(loaded: LoadedGGUF, messages: list[dict[str, str]]) -> str:
    """The prompt text, as ``tokenizer.apply_chat_template(..., add_generation_prompt=True)`` renders it."""
    return render_chat_template(loaded.chat_template, messages, loaded.special_tokens)


class LlamaCppChatModel(TokenStreamChatModel):
    """A GGUF model on llama.cpp behind LangChain's chat-model interface."""

    gguf_type: str = "f16"  # llm_gguf_type
    n_ctx: int = DEFAULT_N_CTX
    n_threads: int = 0  # 0 = default_threads()
    #: contexts generating at once (ContextPool); 1 = one context on the default threads
    n_parallel: int = 1
    seed: int = 0
    #: the GGUF file model_name resolved to: resolved once per model, since a registry name
    #: (models:/rag_llm@candidate) would otherwise cost a registry query on every request
    _gguf: str | None = PrivateAttr(default=None)

    @property
    def _llm_type(self) -> str:
        return "ragops-local-llamacpp"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": self.model_name, "gguf_type": self.gguf_type, "max_new_tokens": self.max_new_tokens,
                "temperature": self.temperature, "top_p": self.top_p, "engine": "llama.cpp"}

    def loaded(self) -> LoadedGGUF:
        """The (first) context: what tokenizes, and what answers when ``n_parallel`` is 1."""
        if self.n_parallel > 1:
            return self._pool().first
        return load_gguf(self._gguf_file(), self.n_ctx, self.n_threads)

    def _gguf_file(self) -> str:
        if self._gguf is None:
            self._gguf = str(resolve_gguf_path(self.model_name, self.gguf_type))
        return self._gguf

    def _pool(self) -> ContextPool:
        return context_pool(self._gguf_file(), self.n_ctx, self.n_parallel)

    def _context(self) -> contextlib.AbstractContextManager[LoadedGGUF]:
        return self._pool().acquire() if self.n_parallel > 1 else contextlib.nullcontext(self.loaded())

    def warm(self) -> None:
        self.loaded()

    def prompt_tokens(self, messages: list[BaseMessage]) -> list[int]:
        """The prompt's token ids: the chat template rendered, special tokens parsed, no BOS added."""
        loaded = self.loaded()
        text = render_chat(loaded, to_dicts(messages))
        return loaded.llama.tokenize(text.encode("utf-8"), add_bos=False, special=True)

    def _tokens(self, messages: list[BaseMessage], stop: list[str] | None, **overrides: Any
                ) -> Iterator[tuple[str, dict[str, Any]]]:
        """Yield ``(text delta, stats)``; the last item has an empty delta and the final stats."""
        started = time.perf_counter()
        prompt = self.prompt_tokens(messages)
        max_new = int(overrides.get("max_new_tokens", self.max_new_tokens))
        first_context = self.loaded().llama
        n_ctx = min(first_context.n_ctx(), first_context.context_params.n_ctx)  # llama.cpp may pad its own up
        if len(prompt) + max_new > n_ctx:
            raise LLMError(f"the prompt has {len(prompt)} tokens and llm_max_new_tokens is {max_new}, more than "
                           f"the llama.cpp context of {n_ctx} tokens; lower chain_max_context_chars")
        temperature = float(overrides.get("temperature", self.temperature))
        sampling: dict[str, Any] = {"temp": temperature, "top_k": 0, "min_p": 0.0, "typical_p": 1.0,
                                    "top_p": float(overrides.get("top_p", self.top_p)) if temperature > 0 else 1.0,
                                    "repeat_penalty": float(overrides.get("repetition_penalty",
                                                                          self.repetition_penalty))}
        from llama_cpp import llama_vocab_is_eog

        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        stops = StopFilter(stop)
        n_out, first, finish = 0, None, "length"
        with self._context() as loaded, loaded.lock:
            llama = loaded.llama
            llama.reset()
            llama.set_seed(int(overrides.get("seed", self.seed)))
            for token in llama.generate(prompt, reset=True, **sampling):
                if first is None:
                    first = time.perf_counter()
                if llama_vocab_is_eog(llama._model.vocab, token):  # end of turn (<|im_end|>) or of text
                    finish = "stop"
                    break
                n_out += 1
                delta = stops.feed(decoder.decode(llama.detokenize([token], special=False)))
                if delta:
                    yield delta, {}
                if stops.stopped:
                    finish = "stop"
                    break
                if n_out >= max_new:
                    break
            tail = stops.flush() if stops.stopped else stops.feed(decoder.decode(b"", final=True)) + stops.flush()
        if tail:
            yield tail, {}
        yield "", generation_stats(model_name=self.model_name, engine="llama.cpp", finish=finish, n_prompt=len(prompt),
                                   n_out=n_out, started=started, first=first, ended=time.perf_counter())
