"""OpenVINO on the CPU, the way every ragops model runs on it (the embedder, and the chat model of
``llm_backend=openvino``): imported without telemetry, compiled with an explicit precision.

No telemetry: ``import openvino`` imports its model converter, which sends an "import" event to Google
Analytics unless the user opted out (``openvino_telemetry``; no consent asked, skipped only when
``CI=true``). Offline that is a forked child per import that waits on the network, and it hung a Spark
worker here. :func:`import_openvino` imports OpenVINO with that package hidden, so its converter falls
back to its own no-op stub; the runtime itself sends nothing.

Precision is explicit, never OpenVINO's own default: left alone, OpenVINO computes in bfloat16 on CPUs
that have it (AVX512-BF16, AMX) and in fp32 elsewhere, so the same setting would give different
numbers on different machines. :func:`compile_cpu` asks for what the setting says and checks what it
got: a CPU without bf16 arithmetic is an error naming the fix, never a silent fp32 run under a bf16
name.

Thread pinning is off: the models share two cores with each other, the gateway's workers and test runs,
and pinned OpenVINO threads would wait on cores that others hold.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

#: a ``*_dtype`` setting's value → OpenVINO's element type (``openvino.Type``) for its precision hint
PRECISIONS = {"float32": "f32", "bfloat16": "bf16"}


def import_openvino():
    """``openvino``, imported without its usage telemetry (see the module docstring). If OpenVINO or the
    telemetry package is already imported, by the user's own code, it is left as it is."""
    if "openvino" not in sys.modules:
        sys.modules.setdefault("openvino_telemetry", None)  # import → ImportError → OpenVINO's stub
    import openvino

    return openvino


class PrecisionUnavailable(RuntimeError):
    """The CPU cannot compute in the precision asked for; the message names what it offers."""


def require_precision(dtype: str) -> None:
    """Raise :class:`PrecisionUnavailable` before compiling when this CPU has no ``dtype`` arithmetic (for
    pipelines that would fall back silently; :func:`compile_cpu` checks what it compiled)."""
    if dtype == "bfloat16":
        core = import_openvino().Core()
        if "BF16" not in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
            raise _unavailable(core, dtype)


def _unavailable(core: Any, dtype: str, ran: Any = None) -> PrecisionUnavailable:
    capabilities = ", ".join(core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
    computes = f" and OpenVINO would compute in {ran}" if ran is not None else ""
    return PrecisionUnavailable(f"{dtype} needs a CPU with bfloat16 arithmetic (AVX512-BF16 or AMX); this one "
                                f"offers {capabilities}{computes}")


def compile_cpu(model: Any, dtype: str, threads: int):
    """``model`` (a path OpenVINO reads, or an ``openvino.Model``) compiled for the CPU in ``dtype``
    (``float32`` | ``bfloat16``) on ``threads`` threads, for latency. Raises :class:`PrecisionUnavailable`
    when the CPU would not run ``dtype``."""
    if dtype not in PRECISIONS:
        raise ValueError(f"dtype={dtype!r}: OpenVINO runs {' or '.join(PRECISIONS)}")
    ov = import_openvino()
    core = ov.Core()
    precision = getattr(ov.Type, PRECISIONS[dtype])
    source = core.read_model(str(model)) if isinstance(model, str | Path) else model
    compiled = core.compile_model(source, "CPU", {
        "PERFORMANCE_HINT": "LATENCY",
        "INFERENCE_NUM_THREADS": threads,
        "INFERENCE_PRECISION_HINT": precision,
        "ENABLE_CPU_PINNING": False,
        # a fused KV cache (the LLM's) is kept in u8 by default, which moves fp32 logits by ~0.1 after
        # the prompt: keep it in the precision the model computes in
        "KV_CACHE_PRECISION": precision,
    })
    ran = compiled.get_property("INFERENCE_PRECISION_HINT")
    if ran != precision:  # only bf16 can be refused: OpenVINO computes fp32 on every CPU
        raise _unavailable(core, dtype, ran)
    return compiled


__all__ = ["PRECISIONS", "PrecisionUnavailable", "compile_cpu", "import_openvino", "require_precision"]
