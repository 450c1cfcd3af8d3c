"""Document access control at ingest: where a document's ``allowed_groups`` come from, and how
they are checked.

A document is visible to everyone unless it names the groups that may see it. The groups come
from, most specific first:

1. the document itself: a ``allowed_groups`` field of a JSON / JSONL record, a column of a CSV,
   Parquet or Delta row, or a Markdown front-matter key;
2. a sidecar file next to the document, named after it plus ``.acl.json``
   (``guides/retention.md`` → ``guides/retention.md.acl.json``) holding
   ``{"allowed_groups": ["eng", "support"]}``; for a structured file it applies to each of its
   records that names no groups of its own.

An absent, null or empty value names no groups: the next source applies, and with none the
document is public. The checked groups land in the document's metadata (``raw_documents.metadata``
JSON, key ``allowed_groups``: a sorted list of distinct names), omitted when public, so documents
without access control keep exactly the metadata they had before.

A value that is not a list of group names (a number, a bare string in JSON, an empty name) or a
sidecar that cannot be read rejects the document (reason ``bad_allowed_groups``) instead of making
it public: a typo must never widen access. A rejected document keeps its previously stored
version, and with it the groups it had. A sidecar whose document does not exist is rejected too
(``orphan_sidecar``) — usually a misspelt name that would otherwise leave the document public.
Sidecars are never ingested as documents themselves.
"""

from __future__ import annotations

import json
from pathlib import PurePosixPath
from typing import Any

from ragops.ingest.loaders import LoadError

#: The metadata key (and record field / column) holding a document's groups.
ALLOWED_GROUPS = "allowed_groups"
#: What a sidecar's name adds to its document's name.
SIDECAR_SUFFIX = ".acl.json"
BAD_GROUPS = "bad_allowed_groups"
ORPHAN_SIDECAR = "orphan_sidecar"
#: Formats whose cells can only hold text: there a string is a JSON list or comma-separated names.
TEXT_CELL_FORMATS = frozenset({"csv", "parquet", "delta"})


def is_sidecar(rel: str) -> bool:
    # Case-sensitive like the look-up next to the document: "x.md.ACL.json" is no sidecar (it is
    # then loaded, and rejected, as a JSON document, rather than silently skipped).
    return rel.endswith(SIDECAR_SUFFIX) and len(PurePosixPath(rel).name) > len(SIDECAR_SUFFIX)


def sidecar_of(rel: str) -> str:
    return rel + SIDECAR_SUFFIX


def document_of(sidecar_rel: str) -> str:
    return sidecar_rel[: -len(SIDECAR_SUFFIX)]


def normalize_groups(value: Any, where: str, *, text_cell: bool = False) -> list[str]:
    """A checked, sorted list of distinct group names; ``[]`` for "names no groups".

    ``text_cell`` (CSV / Parquet / Delta string cells) also accepts ``'["eng", "ops"]'`` and
    ``"eng, ops"``. Raises :class:`LoadError` (``bad_allowed_groups``) naming ``where``.
    """
    if value is None:
        return []
    if isinstance(value, str):
        if not text_cell:
            raise LoadError(BAD_GROUPS, f"{where}: allowed_groups must be a list of group names such as "
                                        f'["eng"], got the string {value!r}')
        text = value.strip()
        if not text:
            return []
        if text.startswith("["):
            try:
                value = json.loads(text)
            except json.JSONDecodeError as exc:
                raise LoadError(BAD_GROUPS, f"{where}: allowed_groups {text!r} is not a valid JSON list "
                                            f"({exc.msg})") from exc
        else:
            value = text.split(",")
    if hasattr(value, "tolist") and not isinstance(value, (list, tuple)):  # a numpy array from a table
        value = value.tolist()
    if not isinstance(value, (list, tuple)):
        raise LoadError(BAD_GROUPS, f"{where}: allowed_groups must be a list of group names such as "
                                    f'["eng"], got {type(value).__name__} {value!r:.60}')
    names = []
    for i, name in enumerate(value):
        if not isinstance(name, str):
            raise LoadError(BAD_GROUPS, f"{where}: allowed_groups[{i}] is {type(name).__name__} {name!r:.60}, "
                                        "not a group name (a string)")
        if not name.strip():
            raise LoadError(BAD_GROUPS, f"{where}: allowed_groups[{i}] is an empty group name")
        names.append(name.strip())
    return sorted(set(names))


def take_groups(meta: dict[str, Any], where: str, *, text_cell: bool = False) -> None:
    """Check ``meta['allowed_groups']`` in place: normalized when it names groups, removed when not."""
    if ALLOWED_GROUPS not in meta:
        return
    groups = normalize_groups(meta.pop(ALLOWED_GROUPS), where, text_cell=text_cell)
    if groups:
        meta[ALLOWED_GROUPS] = groups


def parse_sidecar(data: bytes, sidecar_rel: str) -> list[str]:
    """The groups a sidecar names. Raises :class:`LoadError` (``bad_allowed_groups``) naming the file."""
    try:
        obj = json.loads(data.decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise LoadError(BAD_GROUPS, f"{sidecar_rel}: not UTF-8 text ({exc.reason})") from exc
    except json.JSONDecodeError as exc:
        raise LoadError(BAD_GROUPS, f"{sidecar_rel}: invalid JSON at line {exc.lineno} column {exc.colno}: "
                                    f"{exc.msg}") from exc
    if not isinstance(obj, dict):
        raise LoadError(BAD_GROUPS, f'{sidecar_rel}: expected an object like {{"allowed_groups": ["eng"]}}, '
                                    f"got {type(obj).__name__}")
    unknown = sorted(set(obj) - {ALLOWED_GROUPS})
    if unknown:  # a misspelt key would otherwise leave the document public
        raise LoadError(BAD_GROUPS, f"{sidecar_rel}: unknown key(s) {unknown}; the only key is '{ALLOWED_GROUPS}'")
    if ALLOWED_GROUPS not in obj:
        raise LoadError(BAD_GROUPS, f"{sidecar_rel}: no '{ALLOWED_GROUPS}' key")
    return normalize_groups(obj[ALLOWED_GROUPS], sidecar_rel)


def groups_of_metadata(metadata: str | dict[str, Any] | None) -> tuple[str, ...] | None:
    """A stored document's groups from its ``raw_documents.metadata``: ``()`` for public, ``None``
    when the stored value is not a valid list (written before ingest checked it): unknown, so
    the index shows the document only to callers without an access filter."""
    if metadata is None:
        return ()
    if isinstance(metadata, str):
        if ALLOWED_GROUPS not in metadata:  # skips parsing the JSON of (nearly) every public document
            return ()
        try:
            metadata = json.loads(metadata)
        except json.JSONDecodeError:
            return None
    if not isinstance(metadata, dict):
        return None
    try:
        return tuple(normalize_groups(metadata.get(ALLOWED_GROUPS), "metadata"))
    except LoadError:
        return None


__all__ = [
    "ALLOWED_GROUPS", "BAD_GROUPS", "ORPHAN_SIDECAR", "SIDECAR_SUFFIX", "document_of", "groups_of_metadata",
    "is_sidecar", "normalize_groups", "parse_sidecar", "sidecar_of", "take_groups",
]
