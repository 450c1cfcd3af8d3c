"""Local chat model on OpenVINO (``llm_backend=openvino``), as a LangChain chat model.

Why: the chain's prompts are ~800 tokens and its answers short, so the time to the first token is
most of an answer, and prompt evaluation is compute-bound. llama.cpp's prefill does not use AMX; on a
CPU that has it, OpenVINO in bf16 evaluates the prompt ~2.5x faster than transformers fp32 and ~4x
faster than llama.cpp F16 (BENCHMARKS.md §8). Elsewhere (no bf16) it runs fp32, at transformers' speed.

- Weights: the model's transformers folder exported once to a stateful OpenVINO model
  (:func:`ragops.weights.openvino_llm.resolve_openvino_llm`): the packaged SmolLM2, a folder, or a
  registered fine-tune ``models:/rag_llm/<v>``, as ``llm_model`` names them.
- Precision: ``llm_dtype`` (:func:`ragops.openvino_cpu.compile_cpu`). ``float32`` gives transformers'
  greedy answers; ``bfloat16`` changes some (6 of 8 chain answers identical over 32 tokens in the
  probe), so it is recorded in the identity, and a CPU without bf16 is an error, not a silent fp32 run.
- Prompt: the folder's chat template rendered as transformers renders it, tokenized by the folder's
  ``tokenizer.json`` (the ``tokenizers`` library, no transformers import) with special tokens parsed
  and none added: the ids of ``tokenizer.apply_chat_template`` (``tests/llm/test_openvino_llm.py``).
- Generation: greedy at temperature 0; otherwise temperature + top-p (seeded); ``repetition_penalty``
  as transformers applies it (over the whole sequence). It stops at the model's end-of-turn tokens,
  at ``llm_max_new_tokens`` and at stop sequences. The KV cache is OpenVINO state, reset per prompt.

One compiled model and infer request per (folder, precision, threads) and process, guarded by a lock:
the scoring server may call from several threads.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from langchain_core.messages import BaseMessage
from pydantic import Field, PrivateAttr

from ragops.config import LLMConfig
from ragops.cpu import available_cores, llm_threads_override
from ragops.llm.generation import StopFilter, TokenStreamChatModel, generation_stats, render_chat_template
from ragops.llm.messages import to_dicts
from ragops.llm.openvino_batching import batching_requested
from ragops.llm.remote import LLMError

log = logging.getLogger(__name__)

@dataclass
class Prompting:
    """What turns messages into prompt ids and ids back into text, per exported folder."""

    tokenizer: Any  # tokenizers.Tokenizer
    chat_template: str
    special_tokens: dict[str, str]
    eos_ids: frozenset[int]
    n_ctx: int


@dataclass
class LoadedOpenVino:
    compiled: Any
    request: Any
    lock: threading.Lock
    prompting: Prompting
    path: str
    dtype: str
    load_seconds: float


def _token_text(value: Any) -> str:
    return value.get("content", "") if isinstance(value, dict) else (value or "")


@functools.lru_cache(maxsize=4)
def load_prompting(path: str) -> Prompting:
    """The tokenizer (``tokenizer.json``, no transformers import), chat template, special tokens and the
    ids that end a turn of the exported folder at ``path``."""
    from tokenizers import Tokenizer

    folder = Path(path)
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tok_cfg = json.loads((folder / "tokenizer_config.json").read_text()) if (folder / "tokenizer_config.json").exists() \
        else {}
    template_file = folder / "chat_template.jinja"
    template = template_file.read_text() if template_file.exists() else tok_cfg.get("chat_template")
    if not template:
        raise LLMError(f"{folder} has no chat template (chat_template.jinja or tokenizer_config.json's "
                       "chat_template); the chat model needs one")
    special = {k: _token_text(tok_cfg.get(k)) for k in ("bos_token", "eos_token", "unk_token", "pad_token")}
    config = json.loads((folder / "config.json").read_text())
    generation = folder / "generation_config.json"
    # transformers stops at generation_config's eos, and falls back to the model config's
    value = json.loads(generation.read_text()).get("eos_token_id") if generation.exists() else None
    value = config.get("eos_token_id") if value is None else value
    eos = set(value if isinstance(value, list) else [] if value is None else [value])
    if special["eos_token"] and tokenizer.token_to_id(special["eos_token"]) is not None:
        eos.add(tokenizer.token_to_id(special["eos_token"]))
    return Prompting(tokenizer, template, special, frozenset(eos), int(config.get("max_position_embeddings", 2048)))


def precision_error(dtype: str, cause: Exception) -> LLMError:
    return LLMError(f"llm_dtype={dtype} on llm_backend=openvino: {cause}. Use --var llm_dtype=float32 (transformers' "
                    "answers) or llm_backend=local.")


def effective_threads(dtype: str, threads: int) -> int:
    if dtype == "bfloat16" and threads < 2:
        # OpenVINO 2026.4's CPU plugin dies with SIGFPE compiling a gated MLP (silu(x Wg) * x Wu, its
        # fused LLMMLP node) in bf16 on one inference thread (a 3-matmul torch module reproduces it; f32
        # and two threads do not). One worker per core (`ragops serve --workers N`) asks for one thread:
        # it gets two, which costs some oversubscription instead of a dead worker.
        return 2
    return threads


@functools.lru_cache(maxsize=4)
def load_openvino_llm(path: str, dtype: str, threads: int) -> LoadedOpenVino:
    """The exported model at ``path`` compiled once per process (and per precision and threads)."""
    from ragops.openvino_cpu import PrecisionUnavailable, compile_cpu, import_openvino
    from ragops.weights.openvino_llm import MODEL_XML, last_token_logits, without_beam_reorder

    folder = Path(path)
    started = time.perf_counter()
    threads = effective_threads(dtype, threads)
    try:
        # no compiled-blob cache (CACHE_DIR): it would save ~1 s of a cold start for 250 MB per precision
        model = last_token_logits(import_openvino().Core().read_model(str(folder / MODEL_XML)))
        if dtype == "bfloat16":  # fp32 computes the fused cache read correctly, and decodes 2x faster with it
            model = without_beam_reorder(model)
        compiled = compile_cpu(model, dtype, threads)
    except PrecisionUnavailable as e:
        raise precision_error(dtype, e) from e
    prompting = load_prompting(path)
    seconds = time.perf_counter() - started
    log.info("loaded OpenVINO LLM %s (%s, %d threads) in %.2fs", folder.name, dtype, threads, seconds)
    return LoadedOpenVino(compiled, compiled.create_infer_request(), threading.Lock(), prompting, str(folder), dtype,
                          seconds)


def _sample(logits: np.ndarray, temperature: float, top_p: float, rng: np.random.Generator) -> int:
    if temperature <= 0:
        return int(np.argmax(logits))
    z = logits.astype(np.float64) / temperature
    p = np.exp(z - z.max())
    p /= p.sum()
    if top_p < 1.0:
        order = np.argsort(-p)
        keep = order[: int(np.searchsorted(np.cumsum(p[order]), top_p)) + 1]
        q = np.zeros_like(p)
        q[keep] = p[keep]
        p = q / q.sum()
    return int(rng.choice(len(p), p=p))


def _penalise(logits: np.ndarray, prompt: list[int], out: list[int], penalty: float) -> np.ndarray:
    """transformers' ``RepetitionPenaltyLogitsProcessor``: every token already in the sequence."""
    if penalty == 1.0:
        return logits
    ids = np.unique(np.asarray(prompt + out))
    values = logits[ids]
    logits = logits.copy()
    logits[ids] = np.where(values < 0, values * penalty, values / penalty)
    return logits


class OpenVinoChatModel(TokenStreamChatModel):
    """A Llama model exported to OpenVINO behind LangChain's chat-model interface."""

    dtype: str = "bfloat16"  # llm_dtype
    n_threads: int = 0  # 0 = every available core (or RAGOPS_LLM_THREADS)
    seed: int = 0
    #: continuous batching (:mod:`ragops.llm.openvino_batching`): concurrent calls share forward passes;
    #: ``ragops serve`` turns it on through ``RAGOPS_LLM_BATCHING``
    batching: bool = Field(default_factory=batching_requested)
    #: the exported folder model_name resolved to, once per model (a registry name costs a query)
    _folder: str | None = PrivateAttr(default=None)

    @property
    def _llm_type(self) -> str:
        return "ragops-local-openvino"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": self.model_name, "dtype": self.dtype, "max_new_tokens": self.max_new_tokens,
                "temperature": self.temperature, "top_p": self.top_p, "engine": "openvino"}

    def _export(self) -> str:
        if self._folder is None:
            from ragops.weights.openvino_llm import resolve_openvino_llm

            self._folder = str(resolve_openvino_llm(self.model_name))
        return self._folder

    def _threads(self) -> int:
        return effective_threads(self.dtype, self.n_threads or llm_threads_override() or available_cores())

    def _check_dtype(self) -> None:
        if self.dtype not in LLMConfig.DTYPES:
            raise LLMError(f"llm_dtype={self.dtype!r}: llm_backend=openvino runs {' or '.join(LLMConfig.DTYPES)}")

    def loaded(self) -> LoadedOpenVino:
        """The compiled model of our own loop (one request at a time)."""
        self._check_dtype()
        return load_openvino_llm(self._export(), self.dtype, self._threads())

    def engine(self):
        """The continuous-batching engine (``batching``), after the same precision check as :meth:`loaded`."""
        from ragops.llm.openvino_batching import batching_engine
        from ragops.openvino_cpu import PRECISIONS, PrecisionUnavailable, require_precision

        self._check_dtype()
        try:
            require_precision(self.dtype)
        except PrecisionUnavailable as e:
            raise precision_error(self.dtype, e) from e
        return batching_engine(self._export(), PRECISIONS[self.dtype], self._threads())

    def prompting(self) -> Prompting:
        return load_prompting(self._export())

    def warm(self) -> None:
        self.engine() if self.batching else self.loaded()

    def prompt_tokens(self, messages: list[BaseMessage]) -> list[int]:
        """The prompt's token ids: the chat template rendered, special tokens parsed, none added."""
        prompting = self.prompting()
        text = render_chat_template(prompting.chat_template, to_dicts(messages), prompting.special_tokens)
        return prompting.tokenizer.encode(text, add_special_tokens=False).ids

    def _tokens(self, messages: list[BaseMessage], stop: list[str] | None, **overrides: Any
                ) -> Iterator[tuple[str, dict[str, Any]]]:
        started = time.perf_counter()
        prompting = self.prompting()
        prompt = self.prompt_tokens(messages)
        max_new = int(overrides.get("max_new_tokens", self.max_new_tokens))
        if len(prompt) + max_new > prompting.n_ctx:
            raise LLMError(f"the prompt has {len(prompt)} tokens and llm_max_new_tokens is {max_new}, more than the "
                           f"model's {prompting.n_ctx} positions; lower chain_max_context_chars")
        temperature = float(overrides.get("temperature", self.temperature))
        top_p = float(overrides.get("top_p", self.top_p))
        penalty = float(overrides.get("repetition_penalty", self.repetition_penalty))
        seed = int(overrides.get("seed", self.seed))
        if self.batching:
            ids = self.engine().generate(prompt, max_new_tokens=max_new, temperature=temperature, top_p=top_p,
                                         repetition_penalty=penalty, seed=seed, stop_ids=prompting.eos_ids)
        else:
            ids = self._own_loop(self.loaded(), prompt, max_new, temperature, top_p, penalty, seed)
        stops = StopFilter(stop)
        out: list[int] = []
        text, first, finish = "", None, "length"
        try:
            for token in ids:
                if first is None:
                    first = time.perf_counter()
                if token in prompting.eos_ids:
                    finish = "stop"
                    break
                out.append(token)
                # decode the whole answer and emit what is new: byte-level pieces of one character
                # decode to U+FFFD until the character is complete
                full = prompting.tokenizer.decode(out, skip_special_tokens=True)
                if not full.endswith("\ufffd") and len(full) > len(text):
                    delta = stops.feed(full[len(text):])
                    text = full
                    if delta:
                        yield delta, {}
                    if stops.stopped:
                        finish = "stop"
                        break
                if len(out) >= max_new:
                    break
        finally:
            ids.close()  # ends our loop (and its lock) or cancels the batched request
        if not stops.stopped:
            full = prompting.tokenizer.decode(out, skip_special_tokens=True)
            tail = (stops.feed(full[len(text):]) if len(full) > len(text) else "") + stops.flush()
        else:
            tail = stops.flush()
        if tail:
            yield tail, {}
        yield "", generation_stats(model_name=self.model_name, engine="openvino", finish=finish, n_prompt=len(prompt),
                                   n_out=len(out), started=started, first=first, ended=time.perf_counter(),
                                   dtype=self.dtype, batched=self.batching)

    @staticmethod
    def _own_loop(loaded: LoadedOpenVino, prompt: list[int], max_new: int, temperature: float, top_p: float,
                  penalty: float, seed: int) -> Iterator[int]:
        """One request at a time on the process's compiled model: the KV cache is its state, reset per prompt."""
        rng = np.random.default_rng(seed)
        out: list[int] = []
        with loaded.lock:
            request = loaded.request
            request.reset_state()
            feed, past = np.asarray([prompt], dtype=np.int64), 0
            while len(out) < max_new:
                t = feed.shape[1]
                logits = request.infer({"input_ids": feed, "attention_mask": np.ones((1, past + t), dtype=np.int64),
                                        "position_ids": np.arange(past, past + t, dtype=np.int64)[None],
                                        "beam_idx": np.zeros(1, dtype=np.int32)})["logits"][0, -1]
                past += t
                token = _sample(_penalise(logits, prompt, out, penalty), temperature, top_p, rng)
                yield token
                if token in loaded.prompting.eos_ids:
                    return
                out.append(token)
                feed = np.asarray([[token]], dtype=np.int64)


__all__ = ["OpenVinoChatModel", "Prompting", "load_openvino_llm", "load_prompting"]
