"""How many cores this process may use: what the LLM, the ONNX embedder and the scoring-server
workers size their threads by."""

from __future__ import annotations

import os


def available_cores() -> int:
    """The cores this process may run on (a container's or taskset's share, not the host's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def llm_threads_override() -> int | None:
    """``RAGOPS_LLM_THREADS``, if set: the threads a local chat model may use (``ragops serve --workers N``
    sets it to share the cores between workers)."""
    value = os.environ.get("RAGOPS_LLM_THREADS", "").strip()
    return max(1, int(value)) if value else None
