"""Embedders (local: the sentence-transformers model on OpenVINO, ONNX Runtime or torch; OpenAI-compatible HTTP; Databricks
serving) and the embed stage."""

from __future__ import annotations

import functools

from ragops.config import EmbeddingConfig, SettingsError
from ragops.embedding.base import Embedder, EmbeddingError
from ragops.weights.embedder import ModelNotFoundError, embedder_name, resolve_model_path

#: What a local embedder's identity says after the model name when its numerics are not fp32's.
#: ONNX Runtime fp32 and torch fp32 run the same graph at the same precision: their vectors differ by
#: float rounding only (max |Δ| 1.9e-7 over 400 SciFact abstracts, min cosine 0.9999999; torch on
#: two CPUs differs as much), so they share the bare name and either can query the other's index. OpenVINO
#: fp32 runs the same file at fp32 (min cosine 0.9999999 to torch); its bf16 is not torch's bf16 (other
#: kernels, other rounding), so the two bf16 runtimes get separate names.
_NUMERICS_SUFFIX = {("torch", "bfloat16"): "@bf16", ("onnx-int8", "float32"): "@onnx-int8",
                    ("openvino", "bfloat16"): "@openvino-bf16"}


def embedder_identity(config: EmbeddingConfig) -> str:
    """The ``model`` value an embedder of this config stores with its vectors — known without
    loading the model, so a no-op run stays cheap and a model change is detected.

    A local model's identity also names its numerics when they are not fp32 (``…@onnx-int8``,
    ``…@bf16``, ``…@openvino-bf16``): vectors of the same model computed at another precision are close
    but not equal, and one index must not mix them. fp32 keeps the bare name on every runtime (OpenVINO,
    the default, ONNX Runtime or torch), so indexes built before runtimes existed stay valid.
    """
    if config.backend == "local":
        return embedder_name(config.model) + _NUMERICS_SUFFIX.get((config.runtime, config.dtype), "")
    if config.backend == "databricks":
        return f"databricks:{config.endpoint or config.model}"
    return config.model


@functools.lru_cache(maxsize=4)
def get_embedder(config: EmbeddingConfig) -> Embedder:
    """One embedder per config per process (workers reuse it across batches)."""
    if config.backend == "local" and config.runtime == "openvino":
        from ragops.embedding.openvino_rt import OpenVinoEmbedder

        return OpenVinoEmbedder(config.model, dtype=config.dtype, batch_size=config.batch_size,
                                model_name=embedder_identity(config))
    if config.backend == "local" and config.runtime != "torch":
        from ragops.embedding.onnxrt import OnnxEmbedder

        return OnnxEmbedder(config.model, quantized=config.runtime == "onnx-int8", batch_size=config.batch_size,
                            model_name=embedder_identity(config))
    if config.backend == "local":
        from ragops.embedding.local import LocalEmbedder

        embedder = LocalEmbedder(config.model, batch_size=config.batch_size, dtype=config.dtype)
        embedder.model_name = embedder_identity(config)
        return embedder
    if config.backend == "openai":
        from ragops.embedding.remote import OpenAIEmbedder

        return OpenAIEmbedder(config.endpoint, config.model, batch_size=config.batch_size)
    if config.backend == "databricks":
        from ragops.embedding.remote import DatabricksEmbedder

        return DatabricksEmbedder(config.endpoint or config.model, batch_size=config.batch_size)
    raise SettingsError(f"embedding_backend={config.backend!r}: use local, openai or databricks")


from ragops.embedding.embed import EmbedSummary, run_embedding  # noqa: E402 - needs get_embedder above

__all__ = ["EmbedSummary", "Embedder", "EmbeddingError", "ModelNotFoundError", "embedder_identity", "get_embedder",
           "resolve_model_path", "run_embedding"]
