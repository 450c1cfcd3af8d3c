"""Chat-model backends behind LangChain's interface.

``llm_backend``:

- ``local``: llama.cpp on GGUF weights (:mod:`ragops.llm.llamacpp`) — the packaged SmolLM2
  rewritten once to F16 (``llm_gguf_type``), or a fine-tuned transformers folder converted once.
  The fast default on CPU (BENCHMARKS.md, section 8).
- ``openvino``: the model exported once to a stateful OpenVINO model (:mod:`ragops.llm.openvino_llm`),
  in ``llm_dtype`` (bf16 by default): the fastest prompt evaluation on CPUs with AMX / AVX512-BF16.
- ``transformers``: the same model through torch (:mod:`ragops.llm.local`), fp32 safetensors;
  what fine-tuning trains and evaluates with.
- ``openai``: any OpenAI-compatible server; ``databricks``: Databricks Model Serving.
"""

from __future__ import annotations

from langchain_core.language_models import BaseChatModel

from ragops.config import LLMConfig, SettingsError
from ragops.llm.messages import from_dicts, to_dicts
from ragops.openvino_cpu import PRECISIONS
from ragops.weights.llm import DEFAULT_LLM, LLMNotFoundError, resolve_llm_path


def get_chat_model(config: LLMConfig) -> BaseChatModel:
    if config.backend == "local":
        from ragops.llm.llamacpp import LlamaCppChatModel

        return LlamaCppChatModel(model_name=config.model, gguf_type=config.gguf_type, max_new_tokens=config.max_new_tokens,
                                 temperature=config.temperature, top_p=config.top_p,
                                 repetition_penalty=config.repetition_penalty)
    if config.backend == "openvino":
        from ragops.llm.openvino_llm import OpenVinoChatModel

        return OpenVinoChatModel(model_name=config.model, dtype=config.dtype, max_new_tokens=config.max_new_tokens,
                                 temperature=config.temperature, top_p=config.top_p,
                                 repetition_penalty=config.repetition_penalty)
    if config.backend == "transformers":
        from ragops.llm.local import LocalChatModel

        return LocalChatModel(model_name=config.model, max_new_tokens=config.max_new_tokens,
                              temperature=config.temperature, top_p=config.top_p,
                              repetition_penalty=config.repetition_penalty)
    if config.backend == "openai":
        from ragops.llm.remote import OpenAICompatibleChatModel

        if not config.endpoint:
            raise SettingsError("llm_backend=openai needs llm_endpoint=<base URL, e.g. http://host:8000/v1>")
        return OpenAICompatibleChatModel(base_url=config.endpoint, model_name=config.model,
                                         max_new_tokens=config.max_new_tokens, temperature=config.temperature,
                                         top_p=config.top_p)
    from ragops.llm.remote import DatabricksChatModel

    return DatabricksChatModel(endpoint=config.endpoint or config.model, max_new_tokens=config.max_new_tokens,
                               temperature=config.temperature)


#: Engine and weight format of each local backend, recorded in the identity: the same model name
#: answers differently through Q4_1 GGUF on llama.cpp and fp32 safetensors on torch.
LOCAL_ENGINES = {"local": "llama.cpp/gguf", "openvino": "openvino/ir", "transformers": "transformers/safetensors"}


def _engine(config: LLMConfig) -> str:
    engine = LOCAL_ENGINES[config.backend]
    if config.backend == "local" and config.gguf_type != "packaged":
        engine += f"-{config.gguf_type}"  # F16 and Q4_1 weights give different answers
    if config.backend == "openvino":
        engine += f"-{PRECISIONS[config.dtype]}"  # OpenVINO's name of it: bf16 answers differ from f32 ones
    return engine


def llm_identity(config: LLMConfig) -> str:
    """What a logged model (``llm`` tag), a judge cache and a synthetic eval set record as the LLM:
    ``backend:model[@endpoint]``, with the engine/format for local ones, e.g.
    ``local[llama.cpp/gguf-f16]:SmolLM2-135M-Instruct``."""
    where = f"@{config.endpoint}" if config.endpoint else ""
    engine = f"[{_engine(config)}]" if config.backend in LOCAL_ENGINES else ""
    return f"{config.backend}{engine}:{config.model}{where}"


__all__ = ["DEFAULT_LLM", "LLMNotFoundError", "from_dicts", "get_chat_model", "llm_identity", "resolve_llm_path",
           "to_dicts"]
