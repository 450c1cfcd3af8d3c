"""Ingest stage: a folder / glob / file / Delta table of documents → ``raw_documents``.

Incremental and idempotent: a document is written only when it is new or its content hash
changed; documents whose file is gone are deleted (downstream stages then drop their chunks,
embeddings and index entries). Inputs that cannot be read go to ``rejected_documents`` with a
reason; the run carries on, and a file that *was* ingested but is now broken keeps its last
good version (bad input never deletes what was already stored).

A document whose text is the same but whose metadata changed (its ``allowed_groups`` above all,
see :mod:`ragops.ingest.access`) is rewritten with the same content hash: chunking and embedding
then leave it alone, and the next index sync picks up the new groups without re-embedding.
"""

from __future__ import annotations

import glob
import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd
import pyarrow as pa

from ragops.config import IngestConfig, Settings
from ragops.errors import RagopsError
from ragops.ingest import access
from ragops.ingest.loaders import LoadError, LoadResult, Rejection, drop_short, load_bytes, records_from_table
from ragops.lakehouse import Lakehouse
from ragops.lakehouse.schemas import RAW_DOCUMENTS, utcnow

log = logging.getLogger(__name__)

#: What the (distributed) loading step returns per input: a document row, or a rejection row.
LOAD_SCHEMA = pa.schema(
    [pa.field(f.name, f.type, nullable=True) for f in RAW_DOCUMENTS.schema]
    + [pa.field("origin_rel", pa.string()), pa.field("reason_code", pa.string()), pa.field("reason", pa.string())]
)
FILE_LIST_COLUMNS = ["path", "rel", "size_bytes"]


class SourceError(RagopsError, ValueError):
    """The configured source does not exist or matches nothing."""


@dataclass
class IngestSummary:
    source: str
    files: int = 0
    documents: int = 0
    new: int = 0
    updated: int = 0
    #: same text, new metadata (e.g. changed allowed_groups): rewritten, not re-chunked
    metadata_updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    rejected: int = 0
    rejected_by_reason: dict[str, int] = field(default_factory=dict)
    raw_documents_version: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)


# --- discovering inputs --------------------------------------------------------------------

def _is_glob(source: str) -> bool:
    return any(ch in source for ch in "*?[")


def list_source_files(source: str) -> tuple[Path, pd.DataFrame]:
    """Files under a folder, matching a glob, or one file → (root, frame of path/rel/size)."""
    if _is_glob(source):
        root = Path(source.split("*")[0].split("?")[0].split("[")[0])
        root = root if root.is_dir() else root.parent
        paths = [Path(p) for p in glob.glob(source, recursive=True) if Path(p).is_file()]
    else:
        src = Path(source)
        if not src.exists():
            raise SourceError(f"source_path {source} does not exist; pass --var source_path=DIR")
        if src.is_file():
            root, paths = src.parent, [src]
        else:
            root = src
            paths = [
                p
                for p in src.rglob("*")
                if p.is_file() and not any(part.startswith(".") for part in p.relative_to(src).parts)
            ]
    if not paths:
        raise SourceError(f"source_path {source} matches no files")
    rows = [(str(p.resolve()), p.resolve().relative_to(root.resolve()).as_posix(), p.stat().st_size) for p in sorted(paths)]
    return root.resolve(), pd.DataFrame(rows, columns=FILE_LIST_COLUMNS)


# --- the pure batch transform --------------------------------------------------------------

def _result_rows(result: LoadResult, source: str, size: int, origin_rel: str) -> list[dict]:
    now = utcnow()
    rows = []
    for d in result.documents:
        rows.append(
            {
                "doc_id": d.doc_id,
                "source": source,
                "source_uri": d.source_uri,
                "format": d.format,
                "title": d.title,
                "text": d.text,
                "content_hash": d.content_hash,
                "size_bytes": size if len(result.documents) == 1 else len(d.text.encode()),
                "metadata": json.dumps(d.metadata, sort_keys=True, default=str),
                "ingested_at": now,
                "origin_rel": origin_rel,
                "reason_code": None,
                "reason": None,
            }
        )
    for r in result.rejections:
        rows.append(
            {
                **{c: None for c in RAW_DOCUMENTS.columns},
                "source": source,
                "source_uri": r.source_uri,
                "format": r.format,
                "size_bytes": size,
                "ingested_at": now,
                "origin_rel": origin_rel,
                "reason_code": r.reason_code,
                "reason": r.reason,
            }
        )
    return rows


def _read_sidecar(path: str, rel: str, max_bytes: int) -> list[str] | None:
    """The groups named by the document's ``.acl.json`` sidecar; None without one."""
    sidecar = Path(access.sidecar_of(path))
    if not sidecar.is_file():
        return None
    name = access.sidecar_of(rel)
    if sidecar.stat().st_size > max_bytes:
        raise LoadError(access.BAD_GROUPS, f"{name}: over the limit of {max_bytes:,} bytes")
    try:
        data = sidecar.read_bytes()
    except OSError as exc:
        raise LoadError(access.BAD_GROUPS, f"{name}: unreadable ({exc})") from exc
    return access.parse_sidecar(data, name)


def load_files(batch: pd.DataFrame, *, source: str, config: IngestConfig) -> pd.DataFrame:
    """Read and parse a batch of files (columns path, rel, size_bytes) → LOAD_SCHEMA rows."""
    cols = (config.id_column, config.title_column, config.text_column)
    rows: list[dict] = []
    for path, rel, size in batch[FILE_LIST_COLUMNS].itertuples(index=False):
        fmt = Path(rel).suffix.lstrip(".")
        if access.is_sidecar(rel):  # read with its document, never a document itself
            if not Path(access.document_of(path)).is_file():
                orphan = Rejection(rel, fmt, access.ORPHAN_SIDECAR,
                                   f"{rel}: an access-control sidecar without its document "
                                   f"{access.document_of(rel)} (misspelt name?)")
                rows += _result_rows(LoadResult(rejections=[orphan]), source, int(size), rel)
            continue
        try:
            groups = _read_sidecar(path, rel, config.max_bytes)
        except LoadError as exc:
            # The whole file is rejected (and its stored documents kept as they were): loading it
            # without its groups would make restricted documents public.
            result = LoadResult(rejections=[Rejection(rel, fmt, exc.reason_code, exc.reason)])
            rows += _result_rows(result, source, int(size), rel)
            continue
        if size > config.max_bytes:  # do not even read it
            data = b"x" * (config.max_bytes + 1)
        else:
            try:
                data = Path(path).read_bytes()
            except OSError as exc:
                result = LoadResult(rejections=[Rejection(rel, fmt, "unreadable", str(exc))])
                rows += _result_rows(result, source, int(size), rel)
                continue
        result = load_bytes(data, rel, max_bytes=config.max_bytes, columns=cols, min_chars=config.min_chars,
                            allowed_groups=groups)
        rows += _result_rows(result, source, int(size), rel)
    return pd.DataFrame(rows, columns=LOAD_SCHEMA.names)


# --- the stage -----------------------------------------------------------------------------

def _load_delta_source(source: str, config: IngestConfig) -> pd.DataFrame:
    from deltalake import DeltaTable

    path = source.removeprefix("delta:")
    try:
        table = DeltaTable(path).to_pyarrow_table()
    except Exception as exc:
        raise SourceError(f"source_path {source}: not a readable Delta table ({exc})") from exc
    rel = Path(path).name
    cols = (config.id_column, config.title_column, config.text_column)
    try:
        result = drop_short(records_from_table(table.to_pylist(), table.column_names, rel, "delta", cols),
                            config.min_chars)
    except LoadError as exc:
        result = LoadResult(rejections=[Rejection(rel, "delta", exc.reason_code, exc.reason)])
    return pd.DataFrame(_result_rows(result, source, 0, rel), columns=LOAD_SCHEMA.names)


def run_ingest(lh: Lakehouse, settings: Settings) -> IngestSummary:
    """Bring ``raw_documents`` / ``rejected_documents`` in line with the source."""
    source = settings.source_path
    summary = IngestSummary(source=source)
    lh.ensure_tables(["raw_documents", "rejected_documents"])

    if source.startswith("delta:"):
        loaded = _load_delta_source(source, settings.ingest)
        present_rels = set(loaded["origin_rel"].dropna())
        summary.files = 1
    else:
        _, files = list_source_files(source)
        summary.files = int((~files["rel"].map(access.is_sidecar)).sum())
        present_rels = set(files["rel"])
        config = settings.ingest
        loaded = lh.map_batches(
            files,
            lambda b: load_files(b, source=source, config=config),
            LOAD_SCHEMA,
            batch_rows=16,
            desc="ingest: load files",
        )

    docs = loaded[loaded["reason_code"].isna()].copy()
    rejects = loaded[loaded["reason_code"].notna()].copy()
    # A file with any rejection (a broken file, a bad JSONL line) keeps its previously stored
    # documents: absence from this load is not evidence that they were removed.
    damaged_rels = set(rejects["origin_rel"])

    existing = lh.read("raw_documents", ["doc_id", "content_hash", "source_uri", "metadata"],
                       where={"source": [source]})
    existing_hash = dict(zip(existing["doc_id"], existing["content_hash"], strict=True))
    existing_meta = dict(zip(existing["doc_id"], existing["metadata"], strict=True))

    docs = docs.drop_duplicates("doc_id", keep="first")
    is_new = ~docs["doc_id"].isin(existing_hash.keys())
    is_changed = ~is_new & (docs["doc_id"].map(existing_hash) != docs["content_hash"])
    # Same text, other metadata (allowed_groups changed, say): the row is rewritten with the same
    # content hash, so chunks and embeddings stay and only the index picks up the change.
    is_meta_changed = ~is_new & ~is_changed & (docs["doc_id"].map(existing_meta) != docs["metadata"])
    to_write = docs[is_new | is_changed | is_meta_changed][RAW_DOCUMENTS.columns]
    summary.documents = len(docs)
    summary.new, summary.updated = int(is_new.sum()), int(is_changed.sum())
    summary.metadata_updated = int(is_meta_changed.sum())
    summary.unchanged = len(docs) - summary.new - summary.updated - summary.metadata_updated

    current_ids = set(docs["doc_id"])

    def origin_of(doc_id: str) -> str:
        return doc_id.split("#", 1)[0]

    gone = [
        d
        for d in existing["doc_id"]
        if d not in current_ids and (origin_of(d) not in present_rels or origin_of(d) not in damaged_rels)
    ]
    result = lh.upsert("raw_documents", to_write)
    deleted = lh.delete("raw_documents", "doc_id", gone)
    summary.deleted = len(gone)

    # rejected_documents mirrors the current state of this source's failures.
    rej_rows = rejects.drop_duplicates("source_uri", keep="last")
    rej_rows = rej_rows.assign(rejected_at=rej_rows["ingested_at"])[
        ["source_uri", "source", "format", "reason_code", "reason", "size_bytes", "rejected_at"]
    ]
    old_rej = lh.read("rejected_documents", ["source_uri", "reason_code", "reason"], where={"source": [source]})
    old_key = {(u, c, r) for u, c, r in old_rej.itertuples(index=False)}
    changed_rej = rej_rows[
        [(u, c, r) not in old_key for u, c, r in rej_rows[["source_uri", "reason_code", "reason"]].itertuples(index=False)]
    ]
    lh.upsert("rejected_documents", changed_rej)
    lh.delete("rejected_documents", "source_uri", sorted(set(old_rej["source_uri"]) - set(rej_rows["source_uri"])))
    summary.rejected = len(rej_rows)
    summary.rejected_by_reason = rej_rows["reason_code"].value_counts().to_dict()
    for row in rej_rows.itertuples(index=False):
        log.warning("rejected %s: [%s] %s", row.source_uri, row.reason_code, row.reason)
    summary.raw_documents_version = deleted.version or result.version or lh.version("raw_documents")
    log.info(
        "ingest: %d files → %d documents (%d new, %d updated, %d metadata only, %d unchanged, %d deleted), "
        "%d rejected",
        summary.files, summary.documents, summary.new, summary.updated, summary.metadata_updated,
        summary.unchanged, summary.deleted, summary.rejected,
    )
    return summary


__all__ = ["IngestSummary", "SourceError", "list_source_files", "load_files", "run_ingest"]
