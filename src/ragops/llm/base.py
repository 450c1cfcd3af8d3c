"""What the local chat models (llama.cpp and transformers) share: the generation settings they
take from :class:`~ragops.config.LLMConfig`, declared once."""

from __future__ import annotations

from langchain_core.language_models import BaseChatModel

from ragops.weights.llm import DEFAULT_LLM


class LocalChatBase(BaseChatModel):
    """A chat model that runs on this machine; subclasses implement ``_generate`` / ``_stream``."""

    model_name: str = DEFAULT_LLM
    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    repetition_penalty: float = 1.0
