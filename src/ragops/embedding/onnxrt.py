"""The local embedder on ONNX Runtime (``embedding_runtime=onnx`` or ``onnx-int8``).

The same model as :class:`~ragops.embedding.local.LocalEmbedder`, exported once to ONNX
(:func:`ragops.weights.embedder.onnx_model_file`) and run without torch in the hot loop. The
graph holds the whole sentence-transformers model after the tokenizer, so fp32 vectors agree with
torch's to float rounding (max |Δ| 2e-7, cosine 0.9999999 on SciFact) and share torch fp32's
identity; int8 trades a little agreement for speed (see BENCHMARKS.md, "Embedding runtimes") and
says so in the identity it stores with every vector (``all-MiniLM-L6-v2@onnx-int8``), so one
index never mixes them.

No torch and no transformers at query time: the tokenizer is the model's own ``tokenizer.json``
read by the ``tokenizers`` package (what transformers' fast tokenizer wraps; the same ids,
tested), with the model's truncation length and pad-to-longest padding. That is what lets a cold
``ragops ask`` skip the ~7 s import of sentence-transformers (BENCHMARKS.md, section 9).

Batching follows ``SentenceTransformer.encode``: texts sorted by length (longest first), padded
per batch, truncated at the model's ``max_seq_length``.
"""

from __future__ import annotations

import logging

import numpy as np

from ragops.cpu import available_cores
from ragops.embedding.base import Embedder, normalize
from ragops.weights.embedder import (
    ONNX_INPUTS,
    load_fast_tokenizer,
    load_tokenizer,
    onnx_model_file,
    onnx_model_info,
)

log = logging.getLogger(__name__)


class OnnxEmbedder(Embedder):
    """The exported graph on ONNX Runtime. :class:`~ragops.embedding.openvino_rt.OpenVinoEmbedder`
    runs the same file on OpenVINO and shares everything here but :meth:`_open` and :meth:`_infer`."""

    runtime_label = "ONNX Runtime"

    def __init__(self, model: str = "all-MiniLM-L6-v2", *, quantized: bool = False, batch_size: int = 32,
                 model_name: str, threads: int | None = None) -> None:
        self.model_file = onnx_model_file(model, quantized=quantized)
        info = onnx_model_info(self.model_file)
        self.threads = threads or available_cores()
        self._open()
        self.model = model
        self.model_name = model_name
        self.dimension = int(info["dimension"])
        self.max_seq_length = int(info["max_seq_length"])
        self._fast = load_fast_tokenizer(model, self.max_seq_length)
        self.batch_size = batch_size
        log.info("loaded %s embedding model %s (%d-d, %s, %d threads)", self.runtime_label, model_name,
                 self.dimension, self.model_file, self.threads)

    def _open(self) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # ORT warns about unused initializers in exported graphs
        self.session = ort.InferenceSession(str(self.model_file), options, providers=["CPUExecutionProvider"])

    def _infer(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        """One padded batch (``ONNX_INPUTS`` → int64 arrays) → its (rows, dimension) sentence vectors."""
        return self.session.run(None, feeds)[0]

    @property
    def tokenizer(self):
        """The transformers tokenizer (what the chunker counts tokens with); loaded on first use."""
        return load_tokenizer(self.model)

    def encode(self, texts: list[str], *, batch_size: int | None = None, show_progress: bool = False) -> np.ndarray:
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        size = batch_size or self.batch_size
        order = np.argsort([-len(t) for t in texts], kind="stable")
        starts = range(0, len(texts), size)
        if show_progress:
            from tqdm.auto import tqdm

            starts = tqdm(starts, desc="embed", unit="batch")
        for start in starts:
            rows = order[start:start + size]
            encodings = self._fast.encode_batch([texts[i] for i in rows])
            ids = np.array([e.ids for e in encodings], dtype=np.int64)
            columns = {"input_ids": ids, "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
                       "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64)}
            out[rows] = self._infer({name: columns[name] for name in ONNX_INPUTS})
        return normalize(out)
