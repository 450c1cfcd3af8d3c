"""The RAG chain: question (+ history) → retrieve → prompt → LLM → answer with citations.

Built from LangChain parts (a ``ChatPromptTemplate`` from the registry template, any LangChain
chat model) and traced with MLflow: one ``rag_chain`` span with ``retrieve``, ``prompt`` and
``generate`` children. When no retrieved chunk is similar enough to the question, the chain
answers that it does not know without calling the LLM.

Every answer carries what the model call cost: ``usage`` (``prompt_tokens``, ``completion_tokens``,
``total_tokens``, from the chat model's ``usage_metadata``) and ``timings`` (``ttft_s``, ``total_s``:
the backend's own ``response_metadata["timings"]`` when it reports them, else measured around the
stream's first chunk). ``invoke(trace=False)`` skips MLflow altogether (no import, no trace write:
seconds on a cold ``ragops ask``).

Document access control: ``invoke(..., groups=...)`` and ``stream(..., groups=...)`` retrieve only
chunks those groups may see (``None``: no filter, for a local owner or evaluation; the gateway
always passes its key's groups, ``()`` meaning public documents only). The filter is applied in
the search itself (:mod:`ragops.index.access`), so the prompt never holds a hidden passage, and
the output records it: ``"access": {"groups": [...] | None}``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage
from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder
from langchain_core.runnables import RunnableLambda

from ragops.chain.prompts import DONT_KNOW, ResolvedPrompt
from ragops.config import ChainConfig, config_hash
from ragops.index.access import check_groups
from ragops.index.search import Searcher, SearchResult
from ragops.llm.messages import from_dicts

#: What ``usage`` holds when the LLM was not called (the "I don't know" answer).
NO_USAGE = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}


class _NoSpan:
    """What ``invoke(trace=False)`` uses instead of an MLflow span: the same calls, no recording."""

    trace_id = None

    def __enter__(self) -> _NoSpan:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def set_inputs(self, inputs: Any) -> None:
        pass

    def set_outputs(self, outputs: Any) -> None:
        pass


def _spans(trace: bool):
    """``start_span(name, span_type)`` of MLflow when tracing, else a no-op (MLflow never imported)."""
    if not trace:
        return lambda name, span_type=None: _NoSpan()
    import mlflow
    from mlflow.entities import SpanType

    kinds = {"chain": SpanType.CHAIN, "retriever": SpanType.RETRIEVER, "parser": SpanType.PARSER,
             "chat_model": SpanType.CHAT_MODEL}
    return lambda name, span_type=None: mlflow.start_span(name=name, span_type=kinds[span_type])


def usage_of(usage_metadata: dict[str, Any] | None) -> dict[str, int]:
    """LangChain's ``usage_metadata`` (input/output tokens) in the OpenAI spelling serving clients read."""
    meta = usage_metadata or {}
    prompt, completion = int(meta.get("input_tokens") or 0), int(meta.get("output_tokens") or 0)
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": int(meta.get("total_tokens") or prompt + completion)}


def generate(llm: BaseChatModel, messages: list[BaseMessage]) -> tuple[str, dict[str, int], dict[str, float | None]]:
    """Stream one reply: (text, usage, timings). The backend's own timings win (llama.cpp and
    transformers time the first token inside generation); otherwise ttft is measured here, at the
    first chunk with content."""
    started = time.perf_counter()
    first: float | None = None
    parts: list[str] = []
    usage_meta: dict[str, Any] = {}
    reported: dict[str, Any] = {}
    for chunk in llm.stream(messages):
        if chunk.content:
            first = first or time.perf_counter()
            parts.append(str(chunk.content))
        if getattr(chunk, "usage_metadata", None):
            usage_meta = dict(chunk.usage_metadata)
        reported = (chunk.response_metadata or {}).get("timings") or reported
    ended = time.perf_counter()
    timings = {"ttft_s": round((first or ended) - started, 4), "total_s": round(ended - started, 4)}
    for key in ("ttft_s", "total_s"):
        if reported.get(key) is not None:
            timings[key] = round(float(reported[key]), 4)
    return "".join(parts), usage_of(usage_meta), timings


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

    @classmethod
    def from_settings(cls, settings, llm: BaseChatModel | None = None) -> RagChain:
        """The chain ``settings`` describe, on the target's current index snapshot and the prompt its
        registry alias points to (registered first if missing); what ``log_chain`` would log,
        in-process, for jobs that use the chain without serving it (fine-tuning, sweeps)."""
        from ragops.chain.prompts import ensure_prompts, resolve_prompt
        from ragops.llm import get_chat_model
        from ragops.tracking import configure_mlflow

        configure_mlflow(settings)
        ensure_prompts(settings.chain.prompt_alias)
        prompt = resolve_prompt(settings.chain.prompt_name, settings.chain.prompt_alias)
        searcher = Searcher.open(settings)
        return cls(searcher, llm if llm is not None else get_chat_model(settings.llm), prompt, settings.chain)

    def needs_embedder(self) -> bool:
        """Whether answering embeds the question: vector or hybrid search, or a similarity floor."""
        return self.config.search_mode != "keyword" or self.config.min_similarity > 0

    def load(self) -> RagChain:
        """Build the models answering will use (the embedder only if it is needed), running none."""
        if self.needs_embedder():
            _ = self.searcher.embedder
        load = getattr(self.llm, "warm", None)
        if callable(load):
            load()
        return self

    def warm(self) -> RagChain:
        """Load the embedding model and the LLM now, so the first request does not pay for it."""
        self.searcher.search("warm up", k=1, mode="vector")
        warm = getattr(self.llm, "warm", None)
        if callable(warm):
            warm()
        return self

    # --- steps -----------------------------------------------------------------------------
    def retrieve(self, question: str, groups: Sequence[str] | None = None) -> list[SearchResult]:
        """The passages for ``question`` that ``groups`` may see (None: every passage)."""
        # The similarity floor is what needs the query vector in keyword mode: without a floor a
        # keyword-only chain never loads the embedding model.
        floor = self.config.min_similarity
        results = self.searcher.search(question, k=self.config.k, mode=self.config.search_mode,
                                       vector_scores=floor > 0, groups=groups)
        return [r for r in results if floor <= 0 or (r.vector_score or 0.0) >= floor]

    def messages(self, question: str, history: list[BaseMessage], results: list[SearchResult]) -> list[BaseMessage]:
        context = format_context(results, self.config.max_context_chars)
        return self.template.format_messages(context=context, question=question, history=history)

    # --- invocation ------------------------------------------------------------------------
    def invoke(self, question: str, history: list[dict[str, str]] | None = None, *,
               groups: Sequence[str] | None = None, include_context: bool = False,
               trace: bool = True) -> dict[str, Any]:
        """Answer one question from the passages ``groups`` may see (None: all of them).
        ``include_context`` adds the passages' text (``contexts``), which evaluation needs for
        groundedness; serving leaves it out to keep responses small. ``trace=False`` records no
        MLflow trace (``trace_id`` is then None)."""
        if not isinstance(question, str) or not question.strip():
            raise ValueError("the question is empty")
        groups = check_groups(groups)
        span = _spans(trace)
        hist = from_dicts(history or [])
        timings: dict[str, float] = {}
        with span("rag_chain", "chain") as root:
            root.set_inputs({"question": question, "history": history or []})
            t0 = time.perf_counter()
            with span("retrieve", "retriever") as s:
                s.set_inputs({"query": question, "k": self.config.k, "mode": self.config.search_mode,
                              "groups": None if groups is None else list(groups)})
                results = self.retrieve(question, groups)
                s.set_outputs([{"page_content": r.text, "metadata": {"doc_id": r.doc_id, "chunk_id": r.chunk_id,
                               "score": r.score, "vector_score": r.vector_score}} for r in results])
            timings["retrieval_ms"] = (time.perf_counter() - t0) * 1000
            usage: dict[str, int] = dict(NO_USAGE)
            model_timings: dict[str, float | None] = {"ttft_s": None, "total_s": 0.0}
            if not results:
                answer = DONT_KNOW
                timings["prompt_ms"] = timings["generation_ms"] = 0.0
            else:
                t1 = time.perf_counter()
                with span("prompt", "parser") as s:
                    msgs = self.messages(question, hist, results)
                    s.set_inputs({"prompt": self.prompt.uri})
                    s.set_outputs({"messages": [m.content for m in msgs]})
                timings["prompt_ms"] = (time.perf_counter() - t1) * 1000
                t2 = time.perf_counter()
                with span("generate", "chat_model") as s:
                    s.set_inputs({"messages": [{"role": m.type, "content": m.content} for m in msgs]})
                    text, usage, model_timings = generate(self.llm, msgs)
                    answer = tidy_answer(text) or DONT_KNOW
                    s.set_outputs({"content": answer, "usage": usage, "timings": model_timings})
                timings["generation_ms"] = (time.perf_counter() - t2) * 1000
            out = self._output(answer, results, timings, usage, root.trace_id, model_timings, groups)
            if include_context:
                out["contexts"] = [r.text for r in results]
            root.set_outputs({"answer": answer, "sources": out["sources"]})
        return out

    def stream(self, question: str, history: list[dict[str, str]] | None = None, *,
               groups: Sequence[str] | None = None) -> Iterator[dict[str, Any]]:
        """Yield ``{"delta": text}`` pieces, then one final ``{"done": True, ...full output}``;
        ``groups`` as in :meth:`invoke`."""
        groups = check_groups(groups)
        started = time.perf_counter()
        results = self.retrieve(question, groups)
        timings = {"retrieval_ms": (time.perf_counter() - started) * 1000}
        if not results:
            yield {"delta": DONT_KNOW}
            yield {"done": True, **self._output(DONT_KNOW, results, timings, dict(NO_USAGE), None,
                                                {"ttft_s": None, "total_s": 0.0}, groups), "contexts": []}
            return
        msgs = self.messages(question, from_dicts(history or []), results)
        parts, usage_meta, reported, first = [], {}, {}, None
        t = time.perf_counter()
        for chunk in self.llm.stream(msgs):
            if chunk.content:
                first = first or time.perf_counter()
                parts.append(str(chunk.content))
                yield {"delta": str(chunk.content)}
            if getattr(chunk, "usage_metadata", None):
                usage_meta = dict(chunk.usage_metadata)
            reported = (chunk.response_metadata or {}).get("timings") or reported
        ended = time.perf_counter()
        timings["generation_ms"] = (ended - t) * 1000
        timings["time_to_first_token_ms"] = ((first or ended) - started) * 1000
        model_timings = {"ttft_s": round(float(reported.get("ttft_s") or (first or ended) - t), 4),
                         "total_s": round(float(reported.get("total_s") or ended - t), 4)}
        # The passages' text rides along for the gateway's grounded-answer guardrail (never sent to clients).
        yield {"done": True, **self._output(tidy_answer("".join(parts)) or DONT_KNOW, results, timings,
                                            usage_of(usage_meta), None, model_timings, groups),
               "contexts": [r.text for r in results]}

    def as_runnable(self) -> RunnableLambda:
        """The chain as a LangChain Runnable: ``{"question", "history"?, "groups"?}`` → output dict."""
        return RunnableLambda(lambda x: self.invoke(x["question"], x.get("history"), groups=x.get("groups")),
                              name="ragops_rag_chain")

    def _output(self, answer: str, results: list[SearchResult], timings: dict[str, float], usage: dict[str, int],
                trace_id: str | None, model_timings: dict[str, float | None],
                groups: tuple[str, ...] | None = None) -> dict[str, Any]:
        return {
            "answer": answer,
            "sources": [
                {"doc_id": r.doc_id, "source_uri": r.source_uri, "chunk_id": r.chunk_id, "title": r.title,
                 "score": r.score, "vector_score": r.vector_score}
                for r in results
            ],
            "trace_id": trace_id,
            "usage": usage,
            #: the model call: time to first token and the whole generation, in seconds
            "timings": dict(model_timings),
            "timings_ms": {k: round(v, 2) for k, v in timings.items()},
            "lineage": self.lineage,
            #: the access filter retrieval applied (None: none, every document was searchable)
            "access": {"groups": None if groups is None else list(groups)},
        }
