"""Document access control in the index: each chunk's allowed groups, and the search mask they give.

Where the groups live
    A document's groups are ingest metadata (``raw_documents.metadata``, key ``allowed_groups``;
    see :mod:`ragops.ingest.access`). They are *not* copied into ``chunks`` or ``embeddings``:
    the index sync looks them up by ``doc_id`` when it builds a snapshot and writes them into
    the snapshot's ``rows.parquet`` (column ``allowed_groups``: a sorted list of names, ``[]`` for
    public, null for unknown). So the tables keep their schemas, a change of groups never touches
    a chunk or a vector, and the groups that apply are those of the documents *now*, even while
    a re-embedding is still pending.

How a sync notices a change of groups alone
    The manifest records the ``raw_documents`` version the groups were read at
    (``manifest.access_control["source_version"]``). Ingest rewrites a document whose metadata
    changed (same content hash, so chunking and embedding skip it), which moves that version
    while the embeddings table stays where it was. The sync then re-reads the groups and, when
    any chunk's groups differ from the snapshot's, publishes a new snapshot in mode ``access``:
    the same FAISS and BM25 indexes, new rows. No text is re-chunked or re-embedded.

Unknown groups fail closed
    A chunk whose document is no longer in ``raw_documents`` (deleted; its embeddings go at the
    next chunk/embed run) or whose stored groups are not a valid list gets null: only callers
    without an access filter (``groups=None``: a local owner, evaluation) see it. Without a
    ``raw_documents`` table at all (embeddings written by other means) every chunk is public, as
    there is no access control to apply.

The search side (:class:`AccessIndex`) turns ``groups`` into a boolean row mask that
:class:`~ragops.index.search.Searcher` applies inside FAISS (an ``IDSelector``) and BM25 (a
weight mask), so the top k are chosen among the visible chunks only.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from ragops.errors import RagopsError

log = logging.getLogger(__name__)

COLUMN = "allowed_groups"
ARROW_TYPE = pa.list_(pa.string())

#: Groups per doc_id (``()`` public, ``None`` unknown); None for "no raw_documents table".
GroupsByDoc = dict[str, "tuple[str, ...] | None"]


class AccessControlError(RagopsError, ValueError):
    """An access filter that cannot be applied as asked (a bare string for groups, or a snapshot
    built before access control)."""


def check_groups(groups: Sequence[str] | None) -> tuple[str, ...] | None:
    """``None`` (no filter) or a tuple of group names. A bare string is refused: iterating it
    would filter by its letters."""
    if groups is None:
        return None
    if isinstance(groups, (str, bytes)):
        raise AccessControlError(f"groups must be a list of group names, not the string {groups!r}; "
                                 f"write groups=[{groups!r}]")
    out = tuple(groups)
    bad = [g for g in out if not isinstance(g, str)]
    if bad:
        raise AccessControlError(f"groups must be strings; got {bad[0]!r} ({type(bad[0]).__name__})")
    return out


# --- sync side -----------------------------------------------------------------------------

def document_groups(lh, version: int | None = None) -> GroupsByDoc | None:
    """Every document's groups as stored at ``version`` of ``raw_documents`` (None: the current
    one); None when there is no ``raw_documents`` table."""
    from ragops.ingest.access import groups_of_metadata

    if not lh.exists("raw_documents"):
        return None
    docs = lh.read("raw_documents", ["doc_id", "metadata"], version=version)
    out: GroupsByDoc = {}
    invalid = []
    for doc_id, metadata in zip(docs["doc_id"], docs["metadata"], strict=True):
        groups = groups_of_metadata(metadata)
        if groups is None:
            invalid.append(doc_id)
        out[doc_id] = groups
    if invalid:
        log.warning("access control: %d document(s) have invalid stored allowed_groups and are shown only to "
                    "callers without an access filter until re-ingested (e.g. %s)", len(invalid), invalid[0])
    return out


def chunk_groups(doc_ids: Sequence[str], by_doc: GroupsByDoc | None) -> list[list[str] | None]:
    """The ``allowed_groups`` value of each snapshot row, by its doc_id."""
    if by_doc is None:
        return [[] for _ in doc_ids]
    missing = object()
    out: list[list[str] | None] = []
    for doc_id in doc_ids:
        groups = by_doc.get(doc_id, missing)
        out.append(None if groups is missing or groups is None else list(groups))
    return out


def _key(value: Any) -> tuple[str, ...] | None:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    return tuple(value)


def same_groups(before: Sequence[Any], after: Sequence[Any]) -> np.ndarray:
    """Per row: whether two ``allowed_groups`` columns (lists, arrays or nulls) agree."""
    return np.array([_key(a) == _key(b) for a, b in zip(before, after, strict=True)], dtype=bool)


def summary(rows: pd.DataFrame, source_table: str | None, source_version: int | None) -> dict[str, Any]:
    """What the manifest records about the groups it was built with."""
    keys = [_key(v) for v in rows[COLUMN]]
    restricted = [k for k in keys if k]
    restricted_docs = {d for d, k in zip(rows["doc_id"], keys, strict=True) if k}
    return {
        "source_table": source_table,
        "source_version": source_version,
        "restricted_chunks": len(restricted),
        "restricted_documents": len(restricted_docs),
        "unknown_chunks": sum(1 for k in keys if k is None),
        "groups": sorted({g for k in restricted for g in k}),
    }


def is_current(recorded: dict[str, Any] | None, source_version: int | None) -> bool:
    """Whether groups recorded in a manifest were read at ``raw_documents`` version ``source_version``."""
    return bool(recorded) and "source_version" in recorded and recorded["source_version"] == source_version


def to_arrow(values: Sequence[Any]) -> pa.Array:
    return pa.array([None if _key(v) is None else list(v) for v in values], type=ARROW_TYPE)


# --- search side ---------------------------------------------------------------------------

class AccessIndex:
    """Row positions per group, built once per loaded snapshot; ``mask(groups)`` costs O(rows)."""

    def __init__(self, column: Sequence[Any] | None) -> None:
        self.available = column is not None
        values = list(column) if column is not None else []
        self.size = len(values)
        self.public = np.zeros(self.size, dtype=bool)
        members: dict[str, list[int]] = {}
        for pos, value in enumerate(values):
            key = _key(value)
            if key is None:
                continue  # unknown: visible to no filtered caller
            if not key:
                self.public[pos] = True
            for group in key:
                members.setdefault(group, []).append(pos)
        self.members = {g: np.asarray(p, dtype=np.int64) for g, p in members.items()}
        #: every row public: a filter would change nothing, so searches skip it
        self.all_public = self.available and bool(self.public.all())

    def mask(self, groups: tuple[str, ...], snapshot_id: str = "") -> np.ndarray:
        """Rows visible to a caller in ``groups``: public ones, and those naming one of its groups."""
        if not self.available:
            raise AccessControlError(
                f"index snapshot {snapshot_id} was built before document access control (its rows carry no "
                "allowed_groups), so it cannot be searched with groups; rebuild the index (`ragops bundle run "
                "ingest_job`, or its index_sync task) and log the chain model again to serve a snapshot with them")
        visible = self.public.copy()
        for group in groups:
            positions = self.members.get(group)
            if positions is not None:
                visible[positions] = True
        return visible
