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

Either may carry ``groups`` (a list of group names: document access control, see
:mod:`ragops.index.access`): a ``groups`` key / column, or ``params={"groups": [...]}``. Without it
the model searches every document, so an endpoint serving restricted documents must only be
reachable through the gateway, which always sends its caller's groups. (For MLflow's scoring
server to pass a ``groups`` column or param through, the logged signature must declare it.)
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


def _groups(value: Any) -> tuple[str, ...] | None:
    """A request's ``groups``: None (absent: no access filter) or a tuple of group names."""
    if hasattr(value, "tolist") and not isinstance(value, str):  # a numpy array from a frame cell
        value = value.tolist()
    if value is None or (pd.api.types.is_scalar(value) and pd.isna(value)):  # a frame row without groups
        return None
    if not isinstance(value, (list, tuple)) or not all(isinstance(g, str) for g in value):
        raise InvalidRequest(f"'groups' must be a list of group names (strings); got {value!r:.80}")
    return tuple(value)


class RagChainModel(PythonModel):
    def load_context(self, context) -> None:
        from ragops.models.loading import chain_from_artifacts

        self.chain = chain_from_artifacts(context.artifacts["chain_config"], context.artifacts["index_snapshot"],
                                          context.artifacts.get("llm_weights"))
        self.chain.warm()

    def _one(self, question: str, history: list[dict[str, str]],
             groups: tuple[str, ...] | None = None) -> dict[str, Any]:
        if not isinstance(question, str) or not question.strip():
            raise InvalidRequest("the question is empty")
        return self.chain.invoke(question, history, groups=groups)

    # ``pd.DataFrame`` is the hint MLflow 3 documents for a model whose signature is given at logging
    # time (it infers no schema from it, so the logged two-column signature stands): the signature
    # makes MLflow hand every request over as a frame. Without a hint MLflow warns on every load.
    # A direct call of this method (no pyfunc wrapper) may still pass a dict or a list.
    def predict(self, context, model_input: pd.DataFrame, params: dict[str, Any] | None = None):
        default_groups = _groups((params or {}).get("groups"))
        if isinstance(model_input, dict):
            if "messages" not in model_input:
                raise InvalidRequest(f"expected 'messages'; got keys {sorted(model_input)}")
            question, history = _split_messages(model_input["messages"])
            groups = _groups(model_input.get("groups"))
            return self._one(question, history, default_groups if groups is None else groups)
        if isinstance(model_input, pd.DataFrame):
            # The signature makes MLflow hand chat requests over as a one-row frame with 'messages'.
            # A chat request is one conversation → one answer object; 'question' rows are a batch.
            n = len(model_input)
            groups = [_groups(g) for g in model_input["groups"].tolist()] if "groups" in model_input.columns \
                else [None] * n
            groups = [default_groups if g is None else g for g in groups]
            questions = model_input["question"] if "question" in model_input.columns else None
            if questions is not None and questions.notna().any():
                return [self._one(q, [], g) for q, g in zip(questions.tolist(), groups, strict=True)]
            if "messages" in model_input.columns:
                answers = [self._one(*_split_messages(m), g)
                           for m, g in zip(model_input["messages"].tolist(), groups, strict=True)]
                return answers[0] if len(answers) == 1 else answers
            raise InvalidRequest(f"expected a 'question' or 'messages' column; got {list(model_input.columns)}")
        if isinstance(model_input, list):
            return [self._one(q, [], default_groups) if isinstance(q, str) else self.predict(context, q, params)
                    for q in model_input]
        raise InvalidRequest(f"unsupported input type {type(model_input).__name__}")

    def predict_stream(self, context, model_input, params: dict[str, Any] | None = None):
        groups = _groups((params or {}).get("groups"))
        if isinstance(model_input, dict):
            question, history = _split_messages(model_input["messages"])
            own = _groups(model_input.get("groups"))
            groups = groups if own is None else own
        else:
            question, history = str(model_input), []
        for event in self.chain.stream(question, history, groups=groups):
            yield json.loads(json.dumps(event, default=str))


mlflow.models.set_model(RagChainModel())
