"""Versioned evaluation sets in the ``eval_sets`` Delta table: register, read, list.

An eval set is a named list of questions with what a correct answer contains
(``expected_answers``) and which documents hold it (``expected_doc_ids``). Every registration of
changed content becomes a new ``version`` of the set; registering unchanged content is a no-op
(no Delta commit), so a job can re-register its source on every run (:func:`ensure_eval_set`).
An evaluation records both the eval-set version and the Delta table version it read, so it can
be re-run exactly later with ``read_eval_set(..., table_version=...)`` even after the set has
moved on.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ragops.config import EvaluationConfig
from ragops.evaluation.eval_sets.schema import TABLE, EvalSetError, content_hash, normalise
from ragops.lakehouse.base import Lakehouse, LakehouseError
from ragops.lakehouse.schemas import EVAL_SETS, SchemaError, utcnow, validate

log = logging.getLogger(__name__)

__all__ = ["EvalSet", "EvalSetVersion", "ensure_eval_set", "list_eval_sets", "read_eval_set", "register_eval_set"]


@dataclass
class EvalSetVersion:
    """What :func:`register_eval_set` did: ``created`` is False when the content was unchanged."""

    name: str
    version: int
    rows: int
    created: bool
    table_version: int | None


@dataclass
class EvalSet:
    """One version of an eval set, with the Delta table version it was read from (for exact re-runs)."""

    name: str
    version: int
    table_version: int
    frame: pd.DataFrame
    #: True when :func:`ensure_eval_set` registered this version just now (its content changed)
    created: bool = False

    def __len__(self) -> int:
        return len(self.frame)


def _read_table(lh: Lakehouse, table_version: int | None, name: str | None = None) -> tuple[int, pd.DataFrame]:
    """The table (or one eval set of it) at a fixed Delta version, so what is read and the version
    reported always agree."""
    current = lh.version(TABLE)
    if current is None:
        raise EvalSetError(
            f"no eval sets registered yet ({TABLE} table at {lh.location(TABLE)} does not exist); "
            "register one first with register_eval_set"
        )
    tv = current if table_version is None else table_version
    if tv < 0 or tv > current:
        raise EvalSetError(f"{TABLE} table has no version {tv}; its versions are 0..{current}")
    try:
        frame = lh.read(TABLE, version=tv, where={"eval_set": [name]} if name is not None else None)
    except LakehouseError as exc:  # e.g. a version removed by VACUUM
        raise EvalSetError(f"cannot read {TABLE} as of version {tv}: {exc}") from exc
    return tv, frame


def _available(frame: pd.DataFrame) -> str:
    if frame.empty:
        return "none"
    versions = frame.groupby("eval_set")["version"].agg(lambda v: sorted({int(x) for x in v}))
    return ", ".join(f"{name} (versions {', '.join(map(str, vs))})" for name, vs in versions.items())


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not name.strip() or name != name.strip():
        raise EvalSetError(f"eval set name {name!r}: use a non-empty name without surrounding spaces")
    return name


def register_eval_set(lh: Lakehouse, name: str, df: pd.DataFrame, *, origin: str | None = None) -> EvalSetVersion:
    """Store ``df`` as the next version of eval set ``name`` — unless it equals the latest version.

    Content is compared by :func:`content_hash` (row order does not matter), so re-running the
    job that registers a set creates no Delta commit and no new version. Everything is validated
    before the single append, so bad input leaves the table untouched. One writer per eval set at
    a time (a job), as two concurrent registrations could pick the same version number.
    """
    _check_name(name)
    frame = normalise(df, f"eval set {name!r}")
    if origin is not None:
        if not isinstance(origin, str) or not origin.strip():
            raise EvalSetError(f"eval set {name!r}: origin must be a non-empty string, got {origin!r}")
        frame["origin"] = origin.strip()
    if frame.empty:
        raise EvalSetError(f"eval set {name!r}: no questions to register")
    latest, table_version = 0, lh.version(TABLE)
    if table_version is not None:
        _, existing = _read_table(lh, table_version, name)
        if not existing.empty:
            latest = int(existing["version"].max())
            current = existing[existing["version"] == latest]
            if content_hash(normalise(current, f"{TABLE} {name!r} v{latest}")) == content_hash(frame):
                log.info("eval set %s: unchanged, stays at version %d (%d questions)", name, latest, len(current))
                return EvalSetVersion(name, latest, len(current), False, table_version)
    version = latest + 1
    rows = frame.assign(eval_set=name, version=np.int32(version), created_at=utcnow())[EVAL_SETS.columns]
    rows["version"] = rows["version"].astype("int32")
    try:
        validate(TABLE, rows)
    except SchemaError as exc:
        raise EvalSetError(f"eval set {name!r}: {exc}") from exc
    result = lh.append(TABLE, rows)
    log.info("eval set %s: registered version %d (%d questions, table version %s)", name, version, len(rows),
             result.version)
    return EvalSetVersion(name, version, len(rows), True, result.version)


def read_eval_set(lh: Lakehouse, name: str, version: int | None = None, *,
                  table_version: int | None = None) -> EvalSet:
    """One version of an eval set (the latest by default), as of the current table or of ``table_version``.

    Passing the ``table_version`` an evaluation recorded reads exactly the questions it scored.
    """
    tv, mine = _read_table(lh, table_version, name)
    if mine.empty:
        everything = lh.read(TABLE, ["eval_set", "version"], version=tv)
        raise EvalSetError(
            f"no eval set {name!r} in {TABLE} (table version {tv}); available: {_available(everything)}"
        )
    versions = sorted({int(v) for v in mine["version"]})
    chosen = versions[-1] if version is None else int(version)
    if chosen not in versions:
        raise EvalSetError(
            f"eval set {name!r} has no version {chosen} (table version {tv}); its versions are {versions}"
        )
    rows = mine[mine["version"] == chosen].sort_values("question_id", kind="stable")
    return EvalSet(name, chosen, tv, normalise(rows, f"{TABLE} {name!r} v{chosen}"))


def list_eval_sets(lh: Lakehouse) -> pd.DataFrame:
    """Every version of every eval set: question count, origins and when it was registered."""
    columns = ["eval_set", "version", "questions", "origins", "created_at"]
    if not lh.exists(TABLE):
        return pd.DataFrame(columns=columns)
    frame = lh.read(TABLE, ["eval_set", "version", "question_id", "origin", "created_at"])
    if frame.empty:
        return pd.DataFrame(columns=columns)
    out = (
        frame.groupby(["eval_set", "version"], sort=True)
        .agg(questions=("question_id", "size"),
             origins=("origin", lambda o: ", ".join(sorted({x for x in o if isinstance(x, str)}))),
             created_at=("created_at", "min"))
        .reset_index()
    )
    out["version"] = out["version"].astype(int)
    return out[columns]


def ensure_eval_set(lh: Lakehouse, cfg: EvaluationConfig, name: str | None = None) -> EvalSet:
    """The eval set a job, ``ragops eval`` or a notebook scores: ``cfg.eval_set`` registered from
    ``cfg.source`` first when one is given (a new version only if its content changed), else
    read from the table as it is (a set curated elsewhere: feedback, synthetic, a notebook).

    ``name`` other than ``cfg.eval_set`` reads that set as it is: ``cfg.source`` is the source
    of ``cfg.eval_set`` only.
    """
    from ragops.evaluation.eval_sets.sources import load_source

    name = name or cfg.eval_set
    if name != cfg.eval_set or not cfg.source:
        return read_eval_set(lh, name)
    registered = register_eval_set(lh, name, load_source(cfg.source))
    es = read_eval_set(lh, name, registered.version)
    es.created = registered.created
    return es
