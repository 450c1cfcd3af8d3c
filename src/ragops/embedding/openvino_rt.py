"""The local embedder on OpenVINO (``embedding_runtime=openvino``, the default).

It runs the very ONNX file that :class:`~ragops.embedding.onnxrt.OnnxEmbedder` runs (exported once
into the model cache; OpenVINO reads ONNX directly, no conversion step or second file), with the same
tokenizer and batching, so the only difference is the engine.

Precision is explicit, never OpenVINO's own default: left alone, OpenVINO computes in bfloat16 on CPUs
that have it (AVX512-BF16, AMX) and in fp32 elsewhere, so the same setting would give different
vectors on different machines. Here ``embedding_dtype=float32`` asks for fp32 everywhere (torch's
vectors to float rounding, the bare identity ``all-MiniLM-L6-v2``), and ``bfloat16`` asks for bf16,
which is checked after compiling: a CPU without bf16 arithmetic is an error naming the fix, not a
silent fp32 run under a bf16 identity (``all-MiniLM-L6-v2@openvino-bf16``). Measured in BENCHMARKS.md
§7: on a 2-core Xeon with AMX, fp32 1.10–1.17× and bf16 2.72–2.93× ``SentenceTransformer.encode``.

Thread pinning is off: the embedder shares two cores with the LLM, the gateway's workers and test
runs, and pinned OpenVINO threads would wait on cores that others hold.

No telemetry: ``import openvino`` imports its model converter, which sends an "import" event to Google
Analytics unless the user opted out (``openvino_telemetry``; no consent asked, skipped only when
``CI=true``). Offline that is a forked child per import that waits on the network, and it hung a Spark
worker here. :func:`import_openvino` imports OpenVINO with that package hidden, so its converter falls
back to its own no-op stub; the runtime itself sends nothing.
"""

from __future__ import annotations

import sys

import numpy as np

from ragops.embedding.base import EmbeddingError
from ragops.embedding.onnxrt import OnnxEmbedder


def import_openvino():
    """``openvino``, imported without its usage telemetry (see the module docstring). If OpenVINO or the
    telemetry package is already imported, by the user's own code, it is left as it is."""
    if "openvino" not in sys.modules:
        sys.modules.setdefault("openvino_telemetry", None)  # import → ImportError → OpenVINO's stub
    import openvino

    return openvino


#: ``embedding_dtype`` → OpenVINO's element type (``openvino.Type``) for its inference precision hint.
PRECISIONS = {"float32": "f32", "bfloat16": "bf16"}


class OpenVinoEmbedder(OnnxEmbedder):
    runtime_label = "OpenVINO"

    def __init__(self, model: str = "all-MiniLM-L6-v2", *, dtype: str = "float32", batch_size: int = 32,
                 model_name: str, threads: int | None = None) -> None:
        if dtype not in PRECISIONS:
            raise EmbeddingError(f"embedding_dtype={dtype!r}: the openvino runtime runs {' or '.join(PRECISIONS)}")
        self.dtype = dtype
        super().__init__(model, quantized=False, batch_size=batch_size, model_name=model_name, threads=threads)

    def _open(self) -> None:
        ov = import_openvino()
        core = ov.Core()
        precision = getattr(ov.Type, PRECISIONS[self.dtype])
        self.compiled = core.compile_model(core.read_model(str(self.model_file)), "CPU", {
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_NUM_THREADS": self.threads,
            "INFERENCE_PRECISION_HINT": precision,
            "ENABLE_CPU_PINNING": False,
        })
        ran = self.compiled.get_property("INFERENCE_PRECISION_HINT")
        if ran != precision:  # only bf16 can be refused: OpenVINO computes fp32 on every CPU
            capabilities = ", ".join(core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
            raise EmbeddingError(
                f"embedding_dtype={self.dtype} on the openvino runtime needs a CPU with bfloat16 arithmetic "
                f"(AVX512-BF16 or AMX); this one offers {capabilities} and OpenVINO would compute in {ran}. "
                "Use --var embedding_dtype=float32 (the same vectors as torch).")
        self._output = self.compiled.output(0)

    def _infer(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        # One request per batch, and a copy of its output. A request kept per thread (threading.local)
        # whose output was read as a view of its memory crashed the Spark Connect (Sail) server that
        # runs the engine's mapInPandas functions (SIGSEGV, or "double free or corruption"), though
        # never a plain process; a request costs microseconds next to a batch.
        result = self.compiled.create_infer_request().infer(feeds)
        return np.array(result[self._output], dtype=np.float32)
