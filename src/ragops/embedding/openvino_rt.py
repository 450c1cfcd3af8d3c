"""The local embedder on OpenVINO (``embedding_runtime=openvino``, the default).

It runs the very ONNX file that :class:`~ragops.embedding.onnxrt.OnnxEmbedder` runs (exported once
into the model cache; OpenVINO reads ONNX directly, no conversion step or second file), with the same
tokenizer and batching, so the only difference is the engine.

Precision is explicit (:func:`ragops.openvino_cpu.compile_cpu`): ``embedding_dtype=float32`` asks
for fp32 everywhere (torch's vectors to float rounding, the bare identity ``all-MiniLM-L6-v2``), and
``bfloat16`` asks for bf16, which is checked after compiling: a CPU without bf16 arithmetic is an error
naming the fix, not a silent fp32 run under a bf16 identity (``all-MiniLM-L6-v2@openvino-bf16``).
Measured in BENCHMARKS.md §7: on a 2-core Xeon with AMX, fp32 1.10–1.17× and bf16 2.72–2.93×
``SentenceTransformer.encode``. OpenVINO is imported without its telemetry
(:func:`ragops.openvino_cpu.import_openvino`).
"""

from __future__ import annotations

import numpy as np

from ragops.embedding.base import EmbeddingError
from ragops.embedding.onnxrt import OnnxEmbedder
from ragops.openvino_cpu import PRECISIONS, PrecisionUnavailable, compile_cpu


class OpenVinoEmbedder(OnnxEmbedder):
    runtime_label = "OpenVINO"

    def __init__(self, model: str = "all-MiniLM-L6-v2", *, dtype: str = "float32", batch_size: int = 32,
                 model_name: str, threads: int | None = None) -> None:
        if dtype not in PRECISIONS:
            raise EmbeddingError(f"embedding_dtype={dtype!r}: the openvino runtime runs {' or '.join(PRECISIONS)}")
        self.dtype = dtype
        super().__init__(model, quantized=False, batch_size=batch_size, model_name=model_name, threads=threads)

    def _open(self) -> None:
        try:
            self.compiled = compile_cpu(self.model_file, self.dtype, self.threads)
        except PrecisionUnavailable as e:
            raise EmbeddingError(f"embedding_dtype={self.dtype} on the openvino runtime: {e}. Use --var "
                                 "embedding_dtype=float32 (the same vectors as torch).") from e
        self._output = self.compiled.output(0)

    def _infer(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        # One request per batch, and a copy of its output. A request kept per thread (threading.local)
        # whose output was read as a view of its memory crashed the Spark Connect (Sail) server that
        # runs the engine's mapInPandas functions (SIGSEGV, or "double free or corruption"), though
        # never a plain process; a request costs microseconds next to a batch.
        result = self.compiled.create_infer_request().infer(feeds)
        return np.array(result[self._output], dtype=np.float32)
