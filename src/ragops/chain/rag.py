"""The RAG chain: question (+ history) → retrieve → prompt → LLM → answer with citations.

Built from LangChain parts (a ``ChatPromptTemplate`` from the registry template, any LangChain
chat model) and traced with MLflow: one ``rag_chain`` span with ``retrieve``, ``prompt`` and
``generate`` children. When no retrieved chunk is similar enough to the question, the chain
answers that it does not know without calling the LLM.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import asdict
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage
from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder
from langchain_core.runnables import RunnableLambda

from ragops.chain.prompts import DONT_KNOW, ResolvedPrompt
from ragops.config import ChainConfig, config_hash
from ragops.index.search import Searcher, SearchResult
from ragops.llm.messages import from_dicts


def _langchain_prompt(prompt: ResolvedPrompt) -> ChatPromptTemplate:
    """Registry templates use {{var}}; LangChain uses {var}. History goes before the last message."""
    parts: list[Any] = []
    for i, m in enumerate(prompt.messages):
        text = m["content"].replace("{", "{{").replace("}", "}}").replace("{{{{", "{").replace("}}}}", "}")
        if i == len(prompt.messages) - 1:
            parts.append(MessagesPlaceholder("history", optional=True))
        parts.append(({"user": "human", "assistant": "ai"}.get(m["role"], m["role"]), text))
    return ChatPromptTemplate.from_messages(parts)


def tidy_answer(text: str) -> str:
    """Drop sentences a small model repeats verbatim ("X. X. X.") and a trailing cut-off fragment
    when at least one full sentence precedes it."""
    seen, kept = set(), []
    for sentence in re.split(r"(?<=[.!?])\s+", text.strip()):
        key = " ".join(sentence.lower().split())
        if key and key not in seen:
            seen.add(key)
            kept.append(sentence)
    if len(kept) > 1 and not re.search(r"[.!?\])\"']$", kept[-1]):
        kept.pop()
    return " ".join(kept).strip()


def format_context(results: list[SearchResult], max_chars: int) -> str:
    blocks, used = [], 0
    for i, r in enumerate(results, start=1):
        where = r.title + (f" — {r.section}" if r.section else "")
        block = f"[{i}] {where}\n{r.text.strip()}"
        if used + len(block) > max_chars and blocks:
            break
        blocks.append(block)
        used += len(block)
    return "\n\n".join(blocks)


class RagChain:
    def __init__(self, searcher: Searcher, llm: BaseChatModel, prompt: ResolvedPrompt, config: ChainConfig,
                 lineage: dict[str, Any] | None = None) -> None:
        self.searcher = searcher
        self.llm = llm
        self.prompt = prompt
        self.config = config
        self.template = _langchain_prompt(prompt)
        self.config_hash = config_hash(asdict(config))
        self.lineage = {
            "index_snapshot": searcher.manifest.snapshot_id,
            "index_source_table": searcher.manifest.source_table,
            "index_source_version": searcher.manifest.source_version,
            "prompt": f"{prompt.name}@{prompt.alias}",
            "prompt_version": prompt.version,
            "chain_config_hash": self.config_hash,
            **(lineage or {}),
        }

    def warm(self) -> RagChain:
        """Load the embedding model and the LLM now, so the first request does not pay for it."""
        self.searcher.search("warm up", k=1, mode="vector")
        warm = getattr(self.llm, "warm", None)
        if callable(warm):
            warm()
        return self

    # --- steps -----------------------------------------------------------------------------
    def retrieve(self, question: str) -> list[SearchResult]:
        results = self.searcher.search(question, k=self.config.k, mode=self.config.search_mode)
        return [r for r in results if (r.vector_score or 0.0) >= self.config.min_similarity]

    def messages(self, question: str, history: list[BaseMessage], results: list[SearchResult]) -> list[BaseMessage]:
        context = format_context(results, self.config.max_context_chars)
        return self.template.format_messages(context=context, question=question, history=history)

    # --- invocation ------------------------------------------------------------------------
    def invoke(self, question: str, history: list[dict[str, str]] | None = None, *,
               include_context: bool = False) -> dict[str, Any]:
        """Answer one question. ``include_context`` adds the passages' text (``contexts``), which
        evaluation needs for groundedness; serving leaves it out to keep responses small."""
        import mlflow
        from mlflow.entities import SpanType

        if not isinstance(question, str) or not question.strip():
            raise ValueError("the question is empty")
        hist = from_dicts(history or [])
        timings: dict[str, float] = {}
        with mlflow.start_span(name="rag_chain", span_type=SpanType.CHAIN) as root:
            root.set_inputs({"question": question, "history": history or []})
            t0 = time.perf_counter()
            with mlflow.start_span(name="retrieve", span_type=SpanType.RETRIEVER) as span:
                span.set_inputs({"query": question, "k": self.config.k, "mode": self.config.search_mode})
                results = self.retrieve(question)
                span.set_outputs([{"page_content": r.text, "metadata": {"doc_id": r.doc_id, "chunk_id": r.chunk_id,
                                   "score": r.score, "vector_score": r.vector_score}} for r in results])
            timings["retrieval_ms"] = (time.perf_counter() - t0) * 1000
            usage: dict[str, int] = {}
            if not results:
                answer = DONT_KNOW
                timings["prompt_ms"] = timings["generation_ms"] = 0.0
            else:
                t1 = time.perf_counter()
                with mlflow.start_span(name="prompt", span_type=SpanType.PARSER) as span:
                    msgs = self.messages(question, hist, results)
                    span.set_inputs({"prompt": self.prompt.uri})
                    span.set_outputs({"messages": [m.content for m in msgs]})
                timings["prompt_ms"] = (time.perf_counter() - t1) * 1000
                t2 = time.perf_counter()
                with mlflow.start_span(name="generate", span_type=SpanType.CHAT_MODEL) as span:
                    span.set_inputs({"messages": [{"role": m.type, "content": m.content} for m in msgs]})
                    reply = self.llm.invoke(msgs)
                    answer = tidy_answer(str(reply.content)) or DONT_KNOW
                    usage = dict(reply.usage_metadata or {})
                    span.set_outputs({"content": answer, "usage": usage})
                timings["generation_ms"] = (time.perf_counter() - t2) * 1000
            out = self._output(answer, results, timings, usage, root.trace_id)
            if include_context:
                out["contexts"] = [r.text for r in results]
            root.set_outputs({"answer": answer, "sources": out["sources"]})
        return out

    def stream(self, question: str, history: list[dict[str, str]] | None = None) -> Iterator[dict[str, Any]]:
        """Yield ``{"delta": text}`` pieces, then one final ``{"done": True, ...full output}``."""
        started = time.perf_counter()
        results = self.retrieve(question)
        timings = {"retrieval_ms": (time.perf_counter() - started) * 1000}
        if not results:
            yield {"delta": DONT_KNOW}
            yield {"done": True, **self._output(DONT_KNOW, results, timings, {}, None)}
            return
        msgs = self.messages(question, from_dicts(history or []), results)
        parts, usage, first = [], {}, None
        t = time.perf_counter()
        for chunk in self.llm.stream(msgs):
            if chunk.content:
                first = first or time.perf_counter()
                parts.append(str(chunk.content))
                yield {"delta": str(chunk.content)}
            if getattr(chunk, "usage_metadata", None):
                usage = dict(chunk.usage_metadata)
        timings["generation_ms"] = (time.perf_counter() - t) * 1000
        timings["time_to_first_token_ms"] = ((first or time.perf_counter()) - started) * 1000
        yield {"done": True, **self._output(tidy_answer("".join(parts)) or DONT_KNOW, results, timings, usage, None)}

    def as_runnable(self) -> RunnableLambda:
        """The chain as a LangChain Runnable: ``{"question", "history"?}`` → output dict."""
        return RunnableLambda(lambda x: self.invoke(x["question"], x.get("history")), name="ragops_rag_chain")

    def _output(self, answer: str, results: list[SearchResult], timings: dict[str, float], usage: dict[str, int],
                trace_id: str | None) -> dict[str, Any]:
        return {
            "answer": answer,
            "sources": [
                {"doc_id": r.doc_id, "source_uri": r.source_uri, "chunk_id": r.chunk_id, "title": r.title,
                 "score": r.score, "vector_score": r.vector_score}
                for r in results
            ],
            "trace_id": trace_id,
            "usage": usage,
            "timings_ms": {k: round(v, 2) for k, v in timings.items()},
            "lineage": self.lineage,
        }
