"""Synthetic eval questions: an LLM writes a question and a short answer for sampled chunks.

Generated questions are only as good as their filters, so every reply is checked and the reasons
for dropping it are counted (and logged): no parseable question/answer, an empty field, a
question already generated, or an answer that is not a span of the chunk (the model made it up).
Small models phrase their replies loosely, so parsing accepts JSON anywhere in the reply (code
fences, prose around it) and ``Question: ... Answer: ...`` lines.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import re
import unicodedata
from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage

from ragops.evaluation.eval_sets.schema import EVAL_COLUMNS, EvalSetError, normalise
from ragops.progress import progress

log = logging.getLogger(__name__)

ORIGIN = "synthetic"
#: Characters of a chunk shown to the LLM; longer chunks are cut (the answer check uses the whole text).
MAX_CHUNK_CHARS = 4000
#: Why a reply was dropped, in the order the checks run.
DROP_REASONS = ("llm_error", "unparseable", "empty", "duplicate", "answer_not_in_chunk")

SYSTEM_PROMPT = "You write quiz questions about a text. Reply with JSON only."
USER_PROMPT = (
    "Text:\n\"\"\"\n{text}\n\"\"\"\n\n"
    "Write one question that this text answers, and its answer: a short phrase copied exactly from the text.\n"
    "{avoid}"
    'Reply with JSON only, like {{"question": "...", "answer": "..."}}'
)

_FENCE = re.compile(r"```[a-zA-Z]*\s*(.*?)```", re.S)
_WRAPPERS = " *\"“”`"
_QA_LINES = re.compile(
    r"\bquestion\s*\**\s*:\s*\**\s*(?P<q>.+?)\s*\**\s*\banswer\s*\**\s*:\s*\**\s*(?P<a>[^\n]+)", re.I | re.S
)


@dataclass
class GenerationStats:
    """How many LLM replies were requested, kept, and dropped by reason (kept + dropped = requested)."""

    chunks: int = 0
    requested: int = 0
    kept: int = 0
    dropped: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DROP_REASONS, 0))

    def drop(self, reason: str) -> None:
        self.dropped[reason] += 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        why = ", ".join(f"{n} {reason}" for reason, n in self.dropped.items() if n) or "none"
        return f"kept {self.kept} of {self.requested} generated questions from {self.chunks} chunks; dropped: {why}"


def _text(value: Any) -> str:
    if isinstance(value, list):  # {"answer": ["x", ...]}: the first alternative
        value = next((v for v in value if isinstance(v, (str, int, float))), "")
    if value is None or isinstance(value, (dict, bool)):
        return ""
    return " ".join(str(value).split())


def parse_reply(reply: str) -> tuple[str, str] | None:
    """(question, answer) from an LLM reply, or None when it holds neither JSON with a ``question``
    nor ``Question: ... Answer: ...`` text. Whitespace is collapsed; fields may come back empty."""
    decoder = json.JSONDecoder()
    for candidate in [*_FENCE.findall(reply), reply]:
        for start in (i for i, ch in enumerate(candidate) if ch == "{"):
            try:
                obj, _ = decoder.raw_decode(candidate, start)
            except json.JSONDecodeError:
                continue
            if isinstance(obj, dict):
                keys = {str(k).strip().lower(): v for k, v in obj.items()}
                if "question" in keys:
                    return _text(keys["question"]), _text(keys.get("answer"))
    m = _QA_LINES.search(reply)
    if m:  # small models often wrap the fields in quotes or bold markers
        return _text(m.group("q")).strip(_WRAPPERS), _text(m.group("a")).strip(_WRAPPERS)
    return None


def _norm(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def answer_in_text(answer: str, text: str) -> bool:
    """Whether the answer is a span of the text (case, whitespace and surrounding quotes/punctuation ignored)."""
    needle = _norm(answer).strip(" \"'`.,;:!?()[]")
    return bool(needle) and needle in _norm(text)


def question_id(chunk_id: str, question: str) -> str:
    """Stable id: the same question generated for the same chunk keeps its id across runs."""
    return "syn-" + hashlib.sha256(f"{chunk_id}\n{question}".encode()).hexdigest()[:16]


def _messages(title: str, text: str, asked: list[str]) -> list[BaseMessage]:
    body = text if len(text) <= MAX_CHUNK_CHARS else text[:MAX_CHUNK_CHARS] + " …"
    if title and title not in body[:200]:
        body = f"{title}\n\n{body}"
    avoid = "".join(f"- {q}\n" for q in asked)
    avoid = f"Ask something different from these questions:\n{avoid}" if avoid else ""
    return [SystemMessage(SYSTEM_PROMPT), HumanMessage(USER_PROMPT.format(text=body, avoid=avoid))]


def _sample(chunks: pd.DataFrame, max_chunks: int | None, seed: int) -> pd.DataFrame:
    """Chunks with text, ordered by chunk_id (tables have no stable row order), then a seeded sample."""
    usable = chunks[chunks["text"].map(lambda t: isinstance(t, str) and bool(t.strip()))]
    usable = usable.sort_values("chunk_id", kind="stable").reset_index(drop=True)
    if max_chunks is not None and max_chunks < len(usable):
        keep = sorted(random.Random(seed).sample(range(len(usable)), max_chunks))
        usable = usable.iloc[keep].reset_index(drop=True)
    return usable


def generate_questions(
    chunks: pd.DataFrame,
    llm: BaseChatModel,
    *,
    per_chunk: int = 1,
    max_chunks: int | None = None,
    seed: int = 0,
    llm_identity: str = "",
) -> pd.DataFrame:
    """An eval-set frame of LLM-written questions, ``per_chunk`` per sampled chunk.

    Each kept question expects its chunk's document (``expected_doc_ids = [doc_id]``) and the
    generated answer, which must occur in the chunk. Follow-up questions for one chunk are asked to
    differ from the earlier ones (a temperature-0 model would repeat itself otherwise). The counts
    behind the result are in ``frame.attrs["generation"]`` (:class:`GenerationStats`) and logged.
    """
    missing = [c for c in ("chunk_id", "doc_id", "text") if c not in chunks.columns]
    if missing:
        raise EvalSetError(f"chunks for synthetic questions: missing columns {missing} (has {list(chunks.columns)})")
    if per_chunk < 1:
        raise ValueError(f"per_chunk must be at least 1, got {per_chunk}")
    if max_chunks is not None and max_chunks < 1:
        raise ValueError(f"max_chunks must be at least 1 (or None for all), got {max_chunks}")
    identity = llm_identity or f"{llm._llm_type}:{getattr(llm, 'model_name', '') or type(llm).__name__}"
    sampled = _sample(chunks, max_chunks, seed)
    stats = GenerationStats(chunks=len(sampled))
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    first_error: Exception | None = None
    with progress(total=len(sampled) * per_chunk, desc="synthetic questions", unit="question") as bar:
        for chunk in sampled.to_dict("records"):
            title = chunk.get("title") if isinstance(chunk.get("title"), str) else ""
            asked: list[str] = []
            for _ in range(per_chunk):
                stats.requested += 1
                bar.update(1)
                try:
                    reply = llm.invoke(_messages(title, chunk["text"], asked))
                except Exception as exc:  # one failed call (timeout, rate limit) must not lose the batch
                    if first_error is None:
                        log.warning("synthetic questions: LLM call failed for chunk %s: %s", chunk["chunk_id"], exc)
                    first_error = first_error or exc
                    stats.drop("llm_error")
                    continue
                content = reply.content if isinstance(reply.content, str) else str(reply.content)
                parsed = parse_reply(content)
                if parsed is None:
                    log.debug("unparseable reply for chunk %s: %.200r", chunk["chunk_id"], content)
                    stats.drop("unparseable")
                    continue
                question, answer = parsed
                if not question or not answer:
                    stats.drop("empty")
                    continue
                if question not in asked:
                    asked.append(question)
                key = _norm(question).rstrip("?").strip()
                if key in seen:
                    stats.drop("duplicate")
                    continue
                if not answer_in_text(answer, chunk["text"]):
                    stats.drop("answer_not_in_chunk")
                    continue
                seen.add(key)
                stats.kept += 1
                rows.append({
                    "question_id": question_id(str(chunk["chunk_id"]), question),
                    "question": question,
                    "expected_answers": [answer],
                    "expected_doc_ids": [str(chunk["doc_id"])],
                    "tags": ["synthetic", f"llm:{identity}"],
                    "origin": ORIGIN,
                })
    if stats.requested and stats.dropped["llm_error"] == stats.requested:
        raise RuntimeError(
            f"synthetic questions: every one of {stats.requested} LLM calls failed; first error: {first_error}"
        ) from first_error
    log.info("synthetic questions (%s): %s", identity, stats.summary())
    frame = normalise(pd.DataFrame(rows, columns=EVAL_COLUMNS), f"synthetic questions from {identity}")
    frame.attrs["generation"] = stats.to_dict()
    return frame


def indexed_chunks(settings: Any, lh: Any = None) -> pd.DataFrame:
    """The chunks questions should be about: the current index snapshot's rows (what the model
    serves), else the ``chunks`` table when no index has been built yet."""
    from ragops.index.snapshot import SnapshotNotFoundError, SnapshotStore

    try:
        return SnapshotStore(settings.index_root).load(config=settings.index).rows
    except SnapshotNotFoundError:
        if lh is None or not lh.exists("chunks"):
            raise EvalSetError(f"no index snapshot under {settings.index_root} and no chunks table: "
                               "run `ragops bundle run ingest_job` first") from None
        log.info("no index snapshot yet: generating from the chunks table")
        return lh.read("chunks")


def synthesize_eval_set(settings: Any, lh: Any, name: str, llm_config: Any = None, *, per_chunk: int = 1,
                        max_chunks: int | None = None, seed: int = 0) -> tuple[Any, dict[str, Any]]:
    """Generate questions from the indexed chunks with ``llm_config`` (default: the chain's LLM)
    and register them as eval set ``name`` (origin synthetic; a new version only if they changed).

    Returns the :class:`~ragops.evaluation.eval_sets.EvalSetVersion` and the generation stats.
    """
    from ragops.evaluation.eval_sets.store import register_eval_set
    from ragops.llm import get_chat_model
    from ragops.llm import llm_identity as identity_of

    config = llm_config or settings.llm
    frame = generate_questions(indexed_chunks(settings, lh), get_chat_model(config), per_chunk=per_chunk,
                               max_chunks=max_chunks, seed=seed, llm_identity=identity_of(config))
    stats = frame.attrs["generation"]
    if frame.empty:
        raise EvalSetError(f"synthetic questions: none of {stats['requested']} replies was kept "
                           f"(dropped: {stats['dropped']}); try another --llm-model or more --max-chunks")
    return register_eval_set(lh, name, frame, origin=ORIGIN), stats


__all__ = ["DROP_REASONS", "GenerationStats", "answer_in_text", "generate_questions", "indexed_chunks",
           "parse_reply", "question_id", "synthesize_eval_set"]
