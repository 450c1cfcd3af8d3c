"""MLflow models-from-code definition of a fine-tuned LLM pyfunc (registered as ``rag_llm``).

Logged by :func:`ragops.finetune.register.register_llm` with the ``ragops`` package as code and
two artifacts: ``merged`` (the merged transformers folder: the weights that answer) and, when the
fine-tune was LoRA, ``adapter`` (kept for lineage; not loaded). ``load_context`` builds a ragops
chat model on ``merged``: llama.cpp by default (``backend: local``; the folder is converted to
GGUF once on load and cached in the model cache), OpenVINO (``backend: openvino``; exported once
the same way) or torch (``backend: transformers``). The model config (logged from the settings'
``llm_*`` values; override with ``mlflow.pyfunc.load_model(uri, model_config={...})``) takes
``backend``, ``gguf_type``, ``dtype``,
``max_new_tokens``, ``temperature``, ``top_p`` and ``repetition_penalty``.

Inputs: ``{"messages": [{"role": ..., "content": ...}, ...]}`` (OpenAI chat style) → the answer
text; a DataFrame with a ``messages`` column → one answer text per row (a single row: the text).
"""

from __future__ import annotations

from typing import Any

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel

#: model_config keys passed on to :class:`ragops.config.LLMConfig`
CONFIG_KEYS = ("backend", "gguf_type", "dtype", "max_new_tokens", "temperature", "top_p", "repetition_penalty")


def _messages(value: Any) -> list[dict[str, str]]:
    if hasattr(value, "tolist"):
        value = value.tolist()
    if not isinstance(value, list) or not value:
        raise ValueError("'messages' must be a non-empty list of {role, content} objects")
    return [dict(m) for m in value]


class FineTunedLLM(PythonModel):
    def load_context(self, context) -> None:
        from ragops.config import LLMConfig
        from ragops.llm import get_chat_model

        config = {k: v for k, v in (context.model_config or {}).items() if k in CONFIG_KEYS}
        config.setdefault("backend", "local")
        if config["backend"] not in LLMConfig.LOCAL_BACKENDS:
            raise ValueError(f"backend={config['backend']!r}: a registered LLM runs on "
                             f"{', '.join(LLMConfig.LOCAL_BACKENDS)}")
        self.llm = get_chat_model(LLMConfig(model=str(context.artifacts["merged"]), **config))
        warm = getattr(self.llm, "warm", None)
        if callable(warm):
            warm()

    def _answer(self, messages: Any) -> str:
        from ragops.llm.messages import from_dicts

        reply = self.llm.invoke(from_dicts(_messages(messages)))
        return reply.content if isinstance(reply.content, str) else str(reply.content)

    # pd.DataFrame: the hint MLflow 3 documents for a model whose signature is given at logging time
    # (see ragops.models.rag_model); a direct call may still pass a dict.
    def predict(self, context, model_input: pd.DataFrame, params: dict[str, Any] | None = None):
        if isinstance(model_input, dict):
            if "messages" not in model_input:
                raise ValueError(f"expected 'messages'; got keys {sorted(model_input)}")
            return self._answer(model_input["messages"])
        if isinstance(model_input, pd.DataFrame):
            if "messages" not in model_input.columns:
                raise ValueError(f"expected a 'messages' column; got {list(model_input.columns)}")
            answers = [self._answer(m) for m in model_input["messages"].tolist()]
            return answers[0] if len(answers) == 1 else answers
        if isinstance(model_input, list):
            return [self.predict(context, m, params) for m in model_input]
        raise ValueError(f"unsupported input type {type(model_input).__name__}")


mlflow.models.set_model(FineTunedLLM())
