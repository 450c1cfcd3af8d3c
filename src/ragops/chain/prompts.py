"""Prompt templates in the MLflow Prompt Registry: versioned, loaded by alias.

The project ships default templates; :func:`ensure_prompts` registers a template as a new
version only when its text changed, and points the alias at it if the alias is unset. Users
iterate by registering new versions (UI or API) and moving the alias — the chain records the
version it used.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from ragops.errors import RagopsError
from ragops.tracking import is_not_found

log = logging.getLogger(__name__)



class PromptNotFoundError(RagopsError, LookupError):
    """The prompt (name@alias) is not in the MLflow Prompt Registry."""


DONT_KNOW = "I don't know: the indexed documents do not cover this question."

DEFAULT_PROMPTS: dict[str, list[dict[str, str]]] = {
    "rag_answer": [
        {
            "role": "system",
            "content": (
                "You are a documentation assistant. Answer the question using only the numbered "
                "context passages. Cite the passages you use like [1]. If the passages do not "
                "contain the answer, say \"I don't know\". Be brief."
            ),
        },
        {"role": "user", "content": "Context:\n{{context}}\n\nQuestion: {{question}}"},
    ],
    "rag_answer_concise": [
        {
            "role": "system",
            "content": (
                "Answer in one sentence from the context passages only, citing them like [1]. "
                "If they do not contain the answer, reply \"I don't know\"."
            ),
        },
        {"role": "user", "content": "{{context}}\n\nQ: {{question}}\nA:"},
    ],
}


@dataclass(frozen=True)
class ResolvedPrompt:
    name: str
    version: int
    alias: str
    messages: list[dict[str, str]]

    @property
    def uri(self) -> str:
        return f"prompts:/{self.name}/{self.version}"

    def to_dict(self) -> dict:
        return {"name": self.name, "version": self.version, "alias": self.alias, "messages": self.messages}


def ensure_prompts(alias: str = "production") -> dict[str, int]:
    """Register the shipped templates (new version only if the text changed); set ``alias`` if unset."""
    import mlflow

    versions = {}
    for name, template in DEFAULT_PROMPTS.items():
        current = None
        try:
            current = mlflow.genai.load_prompt(f"prompts:/{name}@latest", link_to_model=False)
        except Exception:  # not registered yet
            current = None
        if current is None or current.template != template:
            current = mlflow.genai.register_prompt(
                name=name, template=template, commit_message="ragops default template",
                tags={"source": "ragops.chain.prompts"},
            )
            log.info("registered prompt %s version %s", name, current.version)
        versions[name] = int(current.version)
        try:
            mlflow.genai.load_prompt(f"prompts:/{name}@{alias}", link_to_model=False)
        except Exception:
            mlflow.genai.set_prompt_alias(name, alias, int(current.version))
    return versions


def resolve_prompt(name: str, alias: str) -> ResolvedPrompt:
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        pv = mlflow.genai.load_prompt(f"prompts:/{name}@{alias}", link_to_model=False)
    except MlflowException as exc:
        if not is_not_found(exc):  # auth, network, server: not "no such prompt"
            raise
        raise PromptNotFoundError(
            f"prompt {name}@{alias} is not in the prompt registry ({exc}); run the rag_chain job, which "
            "registers the default prompts, or register it with mlflow.genai.register_prompt"
        ) from exc
    template = pv.template
    if isinstance(template, str):  # a text prompt: use it as the user message
        template = [{"role": "user", "content": template}]
    return ResolvedPrompt(name, int(pv.version), alias, list(template))
