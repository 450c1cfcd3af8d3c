"""Chat-model backends behind LangChain's interface: local transformers (SmolLM2), any
OpenAI-compatible server, and Databricks Model Serving."""

from __future__ import annotations

from langchain_core.language_models import BaseChatModel

from ragops.config import LLMConfig, SettingsError
from ragops.llm.messages import from_dicts, to_dicts
from ragops.weights.llm import DEFAULT_LLM, LLMNotFoundError, resolve_llm_path


def get_chat_model(config: LLMConfig) -> BaseChatModel:
    if config.backend == "local":
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


def llm_identity(config: LLMConfig) -> str:
    """What a logged model records as its LLM (backend:model[@endpoint])."""
    where = f"@{config.endpoint}" if config.endpoint else ""
    return f"{config.backend}:{config.model}{where}"


__all__ = ["DEFAULT_LLM", "LLMNotFoundError", "from_dicts", "get_chat_model", "llm_identity", "resolve_llm_path",
           "to_dicts"]
