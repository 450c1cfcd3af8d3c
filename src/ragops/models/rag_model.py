"""MLflow models-from-code definition of the RAG chain pyfunc.

This file is logged as the model's code (``python_model=<this path>``). Everything it needs at
load time travels with the model: the ``chain_config`` artifact (chain/LLM/embedding config and
the prompt version resolved at logging time, with its template), the ``index_snapshot`` artifact
(FAISS + BM25 + rows), and the ``ragops`` package itself (``code_paths``). Serving therefore
needs no access to the lakehouse or the prompt registry.

Inputs:
- ``{"messages": [{"role": "user", "content": "..."}, ...]}`` (OpenAI chat style; MLflow's scoring
  server passes it through) → one answer object;
- a DataFrame with a ``question`` column (optionally ``messages``) → one answer per row.
"""

from __future__ import annotations

import json
from typing import Any

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel

from ragops.errors import RagopsError


class InvalidRequest(RagopsError, ValueError):
    """A request the model cannot answer because of its shape; serving returns it as a 400."""


def _split_messages(messages: Any) -> tuple[str, list[dict[str, str]]]:
    if hasattr(messages, "tolist"):
        messages = messages.tolist()
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("'messages' must be a non-empty list of {role, content} objects")
    clean = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("content"), str) or m.get("role") not in (
            "system", "user", "assistant"
        ):
            raise InvalidRequest(f"messages[{i}] must be {{'role': 'system'|'user'|'assistant', 'content': str}}")
        clean.append({"role": m["role"], "content": m["content"]})
    if clean[-1]["role"] != "user":
        raise InvalidRequest("the last message must have role 'user' (the question)")
    return clean[-1]["content"], [m for m in clean[:-1] if m["role"] != "system"]


class RagChainModel(PythonModel):
    def load_context(self, context) -> None:
        from ragops.models.loading import chain_from_artifacts

        self.chain = chain_from_artifacts(context.artifacts["chain_config"], context.artifacts["index_snapshot"])
        self.chain.warm()

    def _one(self, question: str, history: list[dict[str, str]]) -> dict[str, Any]:
        if not isinstance(question, str) or not question.strip():
            raise InvalidRequest("the question is empty")
        return self.chain.invoke(question, history)

    # ``pd.DataFrame`` is the hint MLflow 3 documents for a model whose signature is given at logging
    # time (it infers no schema from it, so the logged two-column signature stands): the signature
    # makes MLflow hand every request over as a frame. Without a hint MLflow warns on every load.
    # A direct call of this method (no pyfunc wrapper) may still pass a dict or a list.
    def predict(self, context, model_input: pd.DataFrame, params: dict[str, Any] | None = None):
        if isinstance(model_input, dict):
            if "messages" not in model_input:
                raise InvalidRequest(f"expected 'messages'; got keys {sorted(model_input)}")
            question, history = _split_messages(model_input["messages"])
            return self._one(question, history)
        if isinstance(model_input, pd.DataFrame):
            # The signature makes MLflow hand chat requests over as a one-row frame with 'messages'.
            # A chat request is one conversation → one answer object; 'question' rows are a batch.
            questions = model_input["question"] if "question" in model_input.columns else None
            if questions is not None and questions.notna().any():
                return [self._one(q, []) for q in questions.tolist()]
            if "messages" in model_input.columns:
                answers = [self._one(*_split_messages(m)) for m in model_input["messages"].tolist()]
                return answers[0] if len(answers) == 1 else answers
            raise InvalidRequest(f"expected a 'question' or 'messages' column; got {list(model_input.columns)}")
        if isinstance(model_input, list):
            return [self._one(q, []) if isinstance(q, str) else self.predict(context, q, params) for q in model_input]
        raise InvalidRequest(f"unsupported input type {type(model_input).__name__}")

    def predict_stream(self, context, model_input, params: dict[str, Any] | None = None):
        question, history = _split_messages(model_input["messages"]) if isinstance(model_input, dict) else (
            str(model_input), [])
        for event in self.chain.stream(question, history):
            yield json.loads(json.dumps(event, default=str))


mlflow.models.set_model(RagChainModel())
