"""What an eval set is: its columns, the checks every source passes through, and its content hash.

Every loader (:mod:`.sources`) returns :func:`normalise`'s output and the store (:mod:`.store`)
normalises again before writing, so a bad file never leaves half an eval set behind and equal
content always hashes equal (:func:`content_hash` ignores row order).
"""

from __future__ import annotations

import difflib
import hashlib
import json
import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from ragops.errors import RagopsError
from ragops.lakehouse.schemas import EVAL_SETS

log = logging.getLogger(__name__)


TABLE = EVAL_SETS.name
#: The columns of one eval-set version as loaders return it (the table adds eval_set, version, created_at).
EVAL_COLUMNS: list[str] = [c for c in EVAL_SETS.columns if c not in ("eval_set", "version", "created_at")]
LIST_FIELDS = ("expected_answers", "expected_doc_ids", "tags")
REQUIRED_FIELDS = ("question_id", "question")
#: Written when a source does not say where its questions came from.
DEFAULT_ORIGIN = "unknown"
_TABLE_ONLY = ("eval_set", "version", "created_at")



class EvalSetError(RagopsError, ValueError):
    """An eval set or its source is invalid or missing; the message names the file/row/field."""


def is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA


def _describe(value: Any) -> str:
    return f"{type(value).__name__} {value!r:.60}"


def _str_list(value: Any, where: str, field: str) -> list[str]:
    if is_missing(value):
        return []
    if isinstance(value, (str, bytes, dict)) or not isinstance(value, (list, tuple, np.ndarray)):
        hint = f' (write ["{value}"])' if isinstance(value, str) else ""
        raise EvalSetError(f"{where}: field {field!r} must be a list of strings, got {_describe(value)}{hint}")
    out = []
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise EvalSetError(f"{where}: field {field!r}[{i}] must be a string, got {_describe(item)}")
        if not item.strip():
            raise EvalSetError(f"{where}: field {field!r}[{i}] is an empty string; remove it")
        out.append(item.strip())
    return out


def _check_columns(df: pd.DataFrame, source: str) -> None:
    columns = [str(c) for c in df.columns]
    unknown = [c for c in columns if c not in EVAL_COLUMNS and c not in _TABLE_ONLY]
    for col in unknown:
        close = difflib.get_close_matches(col, [c for c in EVAL_COLUMNS if c not in columns], n=1, cutoff=0.8)
        if close:
            raise EvalSetError(f"{source}: unknown field {col!r}; did you mean {close[0]!r}?")
    missing = [c for c in REQUIRED_FIELDS if c not in columns]
    if missing:
        raise EvalSetError(
            f"{source}: missing required field(s) {missing} (has {columns}); every question needs "
            f"{list(REQUIRED_FIELDS)}"
        )
    if unknown:
        log.warning("%s: ignoring fields %s (an eval set has %s)", source, unknown, EVAL_COLUMNS)


def normalise(df: pd.DataFrame, source: str, *, row_labels: Sequence[str] | None = None) -> pd.DataFrame:
    """Check a frame of questions and return it with exactly :data:`EVAL_COLUMNS`.

    Every check happens here, before anything is written, so a bad file never leaves half an eval
    set behind. Missing optional lists become ``[]``; strings are stripped. ``source`` (a file, a
    dataset) and ``row_labels`` (e.g. ``line 7``) only make error messages point at the culprit.
    """
    if not isinstance(df, pd.DataFrame):
        raise EvalSetError(f"{source}: expected a pandas DataFrame of questions, got {type(df).__name__}")
    _check_columns(df, source)
    labels = list(row_labels) if row_labels is not None else [f"row {i}" for i in range(len(df))]
    if len(labels) != len(df):
        raise ValueError(f"{len(labels)} row labels for {len(df)} rows")
    rows: list[dict[str, Any]] = []
    first_seen: dict[str, str] = {}
    records = df.to_dict("records")
    for label, rec in zip(labels, records, strict=True):
        qid = rec.get("question_id")
        if isinstance(qid, (int, np.integer)) and not isinstance(qid, bool):
            qid = str(qid)
        if is_missing(qid) or (isinstance(qid, str) and not qid.strip()):
            raise EvalSetError(f"{source}: {label}: field 'question_id' is missing or empty")
        if not isinstance(qid, str):
            raise EvalSetError(f"{source}: {label}: field 'question_id' must be a string, got {_describe(qid)}")
        qid = qid.strip()
        where = f"{source}: {label} (question_id {qid!r})"
        if qid in first_seen:
            raise EvalSetError(
                f"{where}: duplicate question_id, first used at {first_seen[qid]}; question ids must be unique"
            )
        first_seen[qid] = label
        question = rec.get("question")
        if is_missing(question) or (isinstance(question, str) and not question.strip()):
            raise EvalSetError(f"{where}: field 'question' is missing or empty")
        if not isinstance(question, str):
            raise EvalSetError(f"{where}: field 'question' must be a string, got {_describe(question)}")
        origin = rec.get("origin")
        if is_missing(origin):
            origin = DEFAULT_ORIGIN
        if not isinstance(origin, str) or not origin.strip():
            raise EvalSetError(f"{where}: field 'origin' must be a non-empty string, got {_describe(origin)}")
        row = {"question_id": qid, "question": question.strip()}
        for field in LIST_FIELDS:
            row[field] = _str_list(rec.get(field), where, field)
        row["origin"] = origin.strip()
        rows.append(row)
    return pd.DataFrame(rows, columns=EVAL_COLUMNS)


def content_hash(frame: pd.DataFrame) -> str:
    """A hash of the questions that ignores row order (and ``created_at``): equal hash, same eval set."""
    norm = frame if list(frame.columns) == EVAL_COLUMNS else normalise(frame, "content_hash")
    rows = sorted(
        [r["question_id"], r["question"], *(list(r[f]) for f in LIST_FIELDS), r["origin"]]
        for r in norm.to_dict("records")
    )
    payload = json.dumps(rows, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()
