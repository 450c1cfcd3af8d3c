"""Continuous batching for ``llm_backend=openvino`` in a server (``ragops serve``; ``RAGOPS_LLM_BATCHING=1``).

Why: one compiled model answers one request at a time, so a worker with four requests in flight runs four
decodes one after another, each re-reading every weight per token. OpenVINO GenAI's
``ContinuousBatchingPipeline`` puts every running request's next token into one forward pass (a paged KV
cache; a new prompt's prefill joins the decode steps of the others), so at concurrency 4 the decode of
four answers costs little more than one (BENCHMARKS.md §9).

The pipeline takes the export of :mod:`ragops.weights.openvino_llm` as it is (optimum-intel's layout);
GenAI rewrites its attention to paged attention when it compiles it. One :class:`BatchingEngine` per
(folder, precision, threads) and process owns the pipeline and one scheduler thread: it calls ``step()``
while any request runs and moves each request's new tokens to that request's queue. Only that thread
touches the GenAI handles: ``GenerationHandle.read()`` blocks without releasing the GIL, so a request
thread blocked in it would stop the scheduler too.
"""

from __future__ import annotations

import functools
import itertools
import logging
import os
import queue
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

#: the KV cache's size: SmolLM2-135M keeps 23 KB a token in bf16, so 1 GB holds ~45,000 tokens
#: (over 50 chain-sized requests at once); a request that does not fit waits for one to finish
CACHE_GB = 1
#: prompt tokens one step may take: a long prompt is prefilled in chunks of this many, between the
#: decode steps of the requests already running
MAX_BATCHED_TOKENS = 2048


def batching_requested() -> bool:
    """``RAGOPS_LLM_BATCHING`` (``ragops serve`` sets it): batch concurrent requests of ``llm_backend=openvino``."""
    return os.environ.get("RAGOPS_LLM_BATCHING", "").strip().lower() in ("1", "true", "yes", "on")


class BatchingEngine:
    """One ``ContinuousBatchingPipeline`` and the thread that steps it; :meth:`generate` from any thread."""

    def __init__(self, folder: str, precision: str, threads: int) -> None:
        import openvino as ov
        import openvino_genai as og

        started = time.perf_counter()
        scheduler = og.SchedulerConfig()
        scheduler.cache_size = CACHE_GB
        scheduler.max_num_batched_tokens = MAX_BATCHED_TOKENS
        scheduler.dynamic_split_fuse = True
        scheduler.enable_prefix_caching = False  # the chain's prompts share little but the system prompt
        self._og, self._tensor = og, ov.Tensor
        self._pipe = og.ContinuousBatchingPipeline(folder, scheduler, "CPU", {
            "INFERENCE_PRECISION_HINT": precision, "INFERENCE_NUM_THREADS": threads,
            "ENABLE_CPU_PINNING": False, "KV_CACHE_PRECISION": precision})  # see ragops.openvino_cpu
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._active: dict[int, tuple[Any, queue.Queue]] = {}
        self._ids = itertools.count()
        self._failed: BaseException | None = None
        self.load_seconds = time.perf_counter() - started
        self._thread = threading.Thread(target=self._run, name="ragops-openvino-batching", daemon=True)
        self._thread.start()
        log.info("continuous batching on %s (%s, %d threads) ready in %.2fs", Path(folder).name, precision, threads,
                 self.load_seconds)

    def _run(self) -> None:
        try:
            while True:
                if self._pipe.has_non_finished_requests():
                    self._pipe.step()
                else:
                    self._wake.wait(0.5)
                    self._wake.clear()
                with self._lock:
                    active = list(self._active.items())
                for rid, (handle, out) in active:
                    while handle.can_read():
                        for piece in handle.read().values():
                            out.put(list(piece.generated_ids))
                    if handle.get_status() != self._og.GenerationStatus.RUNNING and not handle.can_read():
                        out.put(None)
                        with self._lock:
                            self._active.pop(rid, None)
        except BaseException as e:  # a dead scheduler must not leave requests waiting forever
            log.exception("the continuous-batching scheduler stopped")
            with self._lock:
                self._failed = e
                waiting, self._active = list(self._active.values()), {}
            for _, out in waiting:
                out.put(e)

    def generate(self, prompt: list[int], *, max_new_tokens: int, temperature: float, top_p: float,
                 repetition_penalty: float, seed: int, stop_ids: frozenset[int]) -> Iterator[int]:
        """The generated token ids of ``prompt`` as they come; closing the iterator cancels the request."""
        og = self._og
        config = og.GenerationConfig()
        config.max_new_tokens = max_new_tokens
        config.stop_token_ids = set(stop_ids)
        config.repetition_penalty = repetition_penalty
        if temperature > 0:
            config.do_sample, config.temperature, config.top_p, config.rng_seed = True, temperature, top_p, seed
        else:
            config.do_sample = False
        out: queue.Queue = queue.Queue()
        with self._lock:
            if self._failed is not None:
                raise RuntimeError(f"the continuous-batching scheduler stopped: {self._failed}")
            rid = next(self._ids)
            handle = self._pipe.add_request(rid, self._tensor(np.asarray([prompt], dtype=np.int64)), config)
            self._active[rid] = (handle, out)
        self._wake.set()
        finished = False
        try:
            while (piece := out.get()) is not None:
                if isinstance(piece, BaseException):
                    raise RuntimeError(f"the continuous-batching scheduler stopped: {piece}") from piece
                yield from piece
            finished = True
        finally:
            if not finished:
                handle.cancel()  # the scheduler frees its KV blocks at the next step and drops it


@functools.lru_cache(maxsize=2)
def batching_engine(folder: str, precision: str, threads: int) -> BatchingEngine:
    """The process's engine for this export, precision (OpenVINO's name, ``bf16`` / ``f32``) and threads."""
    return BatchingEngine(folder, precision, threads)


__all__ = ["BatchingEngine", "batching_engine", "batching_requested"]
