"""Immutable index snapshots and the atomic pointer to the one that serves.

Layout under ``settings.index_root``::

    snapshots/<snapshot_id>/manifest.json   what it was built from (table, Delta version, model …)
                           /rows.parquet    one row per chunk: faiss id, ids, text, source, allowed
                                            groups (see :mod:`ragops.index.access`)
                           /vectors.faiss   the FAISS index
                           /bm25/           the keyword index
    CURRENT                                 the snapshot_id that serves (replaced atomically)

A sync writes a new snapshot into a temporary folder, renames it into place, then swaps
``CURRENT`` with ``os.replace``. A crash at any point leaves the previous snapshot serving;
leftover temporary folders are removed by the next sync.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ragops.config import IndexConfig
from ragops.errors import RagopsError
from ragops.index import access
from ragops.index.keyword import KeywordIndex
from ragops.index.vector import VectorIndex

log = logging.getLogger(__name__)

ROW_COLUMNS = ["faiss_id", "chunk_id", "doc_id", "content_hash", "title", "section", "source_uri", "text",
               access.COLUMN]


class SnapshotNotFoundError(RagopsError, FileNotFoundError):
    pass


@dataclass
class Manifest:
    snapshot_id: str
    created_at: str
    source_table: str
    source_version: int
    model: str
    dimension: int
    config_hash: str
    index_config: dict[str, Any]
    counts: dict[str, int]
    sync_mode: str  # full | change_feed | hash_diff
    previous_snapshot: str | None = None
    git_commit: str = ""
    ragops_version: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    #: the document groups the rows carry: raw_documents table and version read, counts, group
    #: names (empty in snapshots built before access control)
    access_control: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Snapshot:
    path: Path
    manifest: Manifest
    rows: pd.DataFrame
    vectors: VectorIndex
    keywords: KeywordIndex


def new_snapshot_id(source_version: int) -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    return f"v{source_version:06d}-{stamp}-{uuid.uuid4().hex[:6]}"


class SnapshotStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.snapshots = self.root / "snapshots"
        self.pointer = self.root / "CURRENT"

    def current_id(self) -> str | None:
        try:
            sid = self.pointer.read_text().strip()
        except FileNotFoundError:
            return None
        return sid or None

    def manifest(self, snapshot_id: str | None = None) -> Manifest | None:
        sid = snapshot_id or self.current_id()
        if sid is None:
            return None
        data = json.loads((self.snapshots / sid / "manifest.json").read_text())
        return Manifest(**data)

    def read_rows(self, snapshot_id: str, columns: list[str]) -> pd.DataFrame:
        """Some columns of a snapshot's rows, without loading its indexes; a column the snapshot
        predates is left out."""
        path = self.snapshots / snapshot_id / "rows.parquet"
        present = set(pq.read_schema(path).names)
        return pd.read_parquet(path, columns=[c for c in columns if c in present])

    def list(self) -> list[Manifest]:
        if not self.snapshots.exists():
            return []
        out = []
        for p in sorted(self.snapshots.iterdir()):
            if (p / "manifest.json").exists() and not p.name.startswith("."):
                out.append(Manifest(**json.loads((p / "manifest.json").read_text())))
        return out

    def load(self, snapshot_id: str | None = None, config: IndexConfig | None = None,
             path: Path | None = None) -> Snapshot:
        """Load a snapshot by id (default: the current one), or from an explicit folder (a copy
        packaged with a model)."""
        sid = snapshot_id or self.current_id()
        if sid is None and path is None:
            raise SnapshotNotFoundError(
                f"no index snapshot under {self.root}; run `ragops bundle run ingest_job` first"
            )
        path = Path(path) if path is not None else self.snapshots / sid
        if not (path / "manifest.json").exists():
            raise SnapshotNotFoundError(f"index snapshot {sid} not found under {self.snapshots}")
        manifest = Manifest(**json.loads((path / "manifest.json").read_text()))
        config = IndexConfig(**{**asdict(config or IndexConfig()), **manifest.index_config})
        rows = pd.read_parquet(path / "rows.parquet")
        vectors = VectorIndex.load(path / "vectors.faiss", config)
        keywords = KeywordIndex.load(path / "bm25", config, len(rows))
        return Snapshot(path, manifest, rows, vectors, keywords)

    def publish(self, manifest: Manifest, rows: pd.DataFrame, vectors: VectorIndex, keywords: KeywordIndex,
                before_switch=None) -> Path:
        """Write a complete snapshot, then atomically make it current."""
        self.snapshots.mkdir(parents=True, exist_ok=True)
        tmp = self.snapshots / f".tmp-{manifest.snapshot_id}"
        tmp.mkdir()
        # The groups column gets its type explicitly: all-public rows would otherwise be list<null>.
        table = pa.Table.from_pandas(rows[ROW_COLUMNS[:-1]], preserve_index=False)
        pq.write_table(table.append_column(access.COLUMN, access.to_arrow(rows[access.COLUMN])), tmp / "rows.parquet")
        vectors.save(tmp / "vectors.faiss")
        keywords.save(tmp / "bm25")
        (tmp / "manifest.json").write_text(json.dumps(manifest.to_dict(), indent=2, sort_keys=True))
        final = self.snapshots / manifest.snapshot_id
        os.replace(tmp, final)
        if before_switch is not None:
            before_switch()
        pointer_tmp = self.root / f".CURRENT.{uuid.uuid4().hex}"
        pointer_tmp.write_text(manifest.snapshot_id)
        os.replace(pointer_tmp, self.pointer)
        log.info("published index snapshot %s (%s)", manifest.snapshot_id, final)
        return final

    def prune(self, keep: int) -> list[str]:
        """Remove leftovers of crashed syncs and all but the newest ``keep`` snapshots (never CURRENT)."""
        if not self.snapshots.exists():
            return []
        current = self.current_id()
        removed = []
        for p in self.snapshots.iterdir():
            if p.name.startswith(".tmp-"):
                shutil.rmtree(p, ignore_errors=True)
                removed.append(p.name)
        done = sorted((p for p in self.snapshots.iterdir() if (p / "manifest.json").exists()), key=lambda p: p.name)
        for p in done[: max(0, len(done) - keep)]:
            if p.name != current:
                shutil.rmtree(p, ignore_errors=True)
                removed.append(p.name)
        for p in self.root.glob(".CURRENT.*"):
            p.unlink(missing_ok=True)
        return removed
