"""Message conversions shared by every backend."""

from __future__ import annotations

from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage

_ROLES = {"human": "user", "ai": "assistant", "system": "system", "user": "user", "assistant": "assistant"}


def to_dicts(messages: list[BaseMessage]) -> list[dict[str, str]]:
    """LangChain messages → OpenAI-style ``{"role", "content"}`` dicts."""
    out = []
    for m in messages:
        role = _ROLES.get(m.type)
        if role is None:
            raise ValueError(f"message type {m.type!r} is not supported (use system, user or assistant)")
        out.append({"role": role, "content": m.content if isinstance(m.content, str) else str(m.content)})
    return out


def from_dicts(messages: list[dict[str, Any]]) -> list[BaseMessage]:
    """OpenAI-style dicts → LangChain messages, with a clear error for malformed input."""
    out: list[BaseMessage] = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("content"), str) or "role" not in m:
            raise ValueError(f"messages[{i}] must be an object with string 'role' and 'content'")
        role = m["role"]
        cls = {"user": HumanMessage, "assistant": AIMessage, "system": SystemMessage}.get(role)
        if cls is None:
            raise ValueError(f"messages[{i}].role={role!r}: use system, user or assistant")
        out.append(cls(content=m["content"]))
    return out


def truncate_at_stop(text: str, stop: list[str] | None) -> str:
    if not stop:
        return text
    cut = min((i for i in (text.find(s) for s in stop) if i >= 0), default=-1)
    return text if cut < 0 else text[:cut]
