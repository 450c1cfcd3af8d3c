"""The Lakehouse interface both engines implement.

Pipeline stages never talk to storage directly: they are pure batch transforms
(``pandas.DataFrame`` in, ``pandas.DataFrame`` out), and a Lakehouse decides how to run them —
in-process over bounded batches (local, delta-rs) or with ``mapInPandas`` across a cluster
(Spark). Writes go through :meth:`Lakehouse.upsert` / :meth:`Lakehouse.delete`, which are no-ops
on empty input so that re-running a job over unchanged input creates no new table versions.
"""

from __future__ import annotations

import logging
import random
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import pandas as pd
import pyarrow as pa

from ragops.config import Settings
from ragops.errors import RagopsError

log = logging.getLogger(__name__)

BatchFn = Callable[[pd.DataFrame], pd.DataFrame]
R = TypeVar("R")

#: Attempts at a commit that keeps conflicting with another writer before giving up.
MAX_COMMIT_RETRIES = 8


class LakehouseError(RagopsError, RuntimeError):
    """A storage operation failed; the message names the table and what to do."""


class TableNotFoundError(LakehouseError):
    pass


class ChangeFeedUnavailable(LakehouseError):
    """The engine (or this table version range) has no change data feed; callers fall back."""


@dataclass(frozen=True)
class WriteResult:
    table: str
    rows: int
    version: int | None  # table version after the write; None when nothing was written

    @property
    def wrote(self) -> bool:
        return self.rows > 0


def retry_commits(what: str, op: Callable[[], R], conflict: Callable[[Exception], bool],
                  describe: Callable[[Exception], str] = str) -> R:
    """Run a table commit, retrying with jittered back-off while ``conflict(exc)`` says another
    writer got there first (both engines' optimistic concurrency); other errors pass through."""
    for attempt in range(1, MAX_COMMIT_RETRIES + 1):
        try:
            return op()
        except Exception as exc:
            if not conflict(exc):
                raise
            if attempt == MAX_COMMIT_RETRIES:
                raise LakehouseError(
                    f"{what}: gave up after {attempt} commit conflicts ({describe(exc)}); another writer keeps "
                    "changing this table — run the jobs that write it one at a time"
                ) from exc
            delay = min(2.0, 0.05 * 2**attempt) * (0.5 + random.random())
            log.warning("%s: commit conflict (attempt %d), retrying in %.2fs", what, attempt, delay)
            time.sleep(delay)
    raise AssertionError("unreachable")


class Lakehouse(ABC):
    """Tables by logical name (``raw_documents``, ``chunks`` …) for one :class:`Settings` target."""

    engine: str = "abstract"
    supports_change_feed: bool = True

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    # --- table lifecycle -------------------------------------------------------------------
    @abstractmethod
    def ensure_table(self, name: str) -> None:
        """Create the table from its declared schema if it does not exist (CDF on where declared)."""

    def ensure_tables(self, names: Iterable[str] | None = None) -> None:
        from ragops.lakehouse.schemas import TABLES

        for name in names or TABLES:
            self.ensure_table(name)

    @abstractmethod
    def exists(self, name: str) -> bool: ...

    @abstractmethod
    def location(self, name: str) -> str:
        """Human-readable location: a path for local tables, ``catalog.schema.table`` on Spark."""

    # --- reads -----------------------------------------------------------------------------
    @abstractmethod
    def version(self, name: str) -> int | None:
        """Current version, or None if the table does not exist."""

    @abstractmethod
    def read(
        self,
        name: str,
        columns: Sequence[str] | None = None,
        *,
        version: int | None = None,
        timestamp: datetime | str | None = None,
        where: Mapping[str, Sequence[Any]] | None = None,
    ) -> pd.DataFrame:
        """Read a table (optionally as of a version or timestamp), optionally only rows whose
        ``column`` value is in the given list."""

    @abstractmethod
    def changes(self, name: str, since_version: int, until_version: int | None = None) -> pd.DataFrame:
        """Change data feed rows committed after ``since_version`` (exclusive), with
        ``_change_type`` (insert, update_preimage, update_postimage, delete) and ``_commit_version``.

        Raises :class:`ChangeFeedUnavailable` when the engine or table cannot provide it."""

    @abstractmethod
    def history(self, name: str, limit: int | None = None) -> list[dict[str, Any]]:
        """Commits, newest first: version, timestamp, operation, metrics."""

    # --- writes ----------------------------------------------------------------------------
    @abstractmethod
    def append(self, name: str, df: pd.DataFrame) -> WriteResult: ...

    @abstractmethod
    def upsert(self, name: str, df: pd.DataFrame) -> WriteResult:
        """Merge rows by the table's declared keys (update matched, insert new). Empty → no commit."""

    @abstractmethod
    def delete(self, name: str, column: str, values: Sequence[Any]) -> WriteResult:
        """Delete rows whose ``column`` is in ``values``. Empty → no commit."""

    # --- compute ---------------------------------------------------------------------------
    @abstractmethod
    def map_batches(
        self, df: pd.DataFrame, fn: BatchFn, output: str | pa.Schema, *, batch_rows: int = 64, desc: str = ""
    ) -> pd.DataFrame:
        """Apply a pure batch transform to a driver-side frame and collect the result, whose
        columns are ``output`` (a table name or an Arrow schema) (local: in-process; Spark: ``mapInPandas``)."""

    @abstractmethod
    def transform_table(
        self,
        source: str,
        fn: BatchFn,
        output_table: str,
        *,
        where: Mapping[str, Sequence[Any]],
        columns: Sequence[str] | None = None,
        batch_rows: int = 256,
        desc: str = "",
    ) -> WriteResult:
        """Run ``fn`` over the rows of ``source`` selected by ``where`` and upsert its output into
        ``output_table`` without collecting it on the driver (Spark) or in one piece (local)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release engine resources (a Spark session)."""

    def __enter__(self) -> Lakehouse:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def describe_tables(lh: Lakehouse) -> pd.DataFrame:
    """Every declared table with its current version, row count and location (None if missing)."""
    from ragops.lakehouse.schemas import TABLES

    rows = []
    for name, ts in TABLES.items():
        exists = lh.exists(name)
        rows.append({
            "table": name,
            "version": lh.version(name) if exists else None,
            "rows": len(lh.read(name, [ts.keys[0]])) if exists else 0,
            "change_data_feed": ts.change_data_feed,
            "location": lh.location(name),
            "description": ts.description,
        })
    return pd.DataFrame(rows)

