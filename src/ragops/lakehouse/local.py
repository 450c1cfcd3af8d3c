"""The embedded engine: Delta tables on local disk through delta-rs (``deltalake``).

Tables live under ``<root>/lakehouse/<catalog>/<schema>/<table>``. Work runs in-process over
bounded batches. delta-rs facts this module works around:
- concurrent MERGEs on one table can raise ``CommitFailedError`` → retried with back-off;
- casts are lenient → every batch is validated against the declared schema first;
- a process forked after deltalake is used can panic → never fork (no multiprocessing 'fork').
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
from deltalake import DeltaTable
from deltalake.exceptions import CommitFailedError
from deltalake.exceptions import TableNotFoundError as DeltaTableNotFound

from ragops.config import Settings
from ragops.lakehouse.base import (
    BatchFn,
    ChangeFeedUnavailable,
    Lakehouse,
    LakehouseError,
    TableNotFoundError,
    WriteResult,
    retry_commits,
)
from ragops.lakehouse.schemas import schema_of, spec, validate
from ragops.progress import progress

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Output rows buffered before one commit in :meth:`LocalLakehouse.transform_table` (bounds memory).
COMMIT_EVERY_ROWS = 20_000


def _with_retry(what: str, op: Callable[[], T]) -> T:
    return retry_commits(what, op, lambda exc: isinstance(exc, CommitFailedError))


def _filter_batch(batch: pa.RecordBatch | pa.Table, where: Mapping[str, Sequence[Any]] | None):
    """Keep rows whose ``column`` is in the given values. Applied after the scan rather than pushed
    down: delta-rs may write string columns as string_view, whose statistics Arrow cannot compare
    with plain strings during pushdown."""
    for column, values in (where or {}).items():
        col = batch.column(column)
        value_set = pa.array(list(values)).cast(col.type) if len(values) else pa.array([], col.type)
        batch = batch.filter(pc.is_in(col, value_set=value_set))
    return batch


class LocalLakehouse(Lakehouse):
    engine = "local"
    supports_change_feed = True

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)

    # --- helpers ---------------------------------------------------------------------------
    def _path(self, name: str) -> Path:
        spec(name)  # unknown names fail early with the list of known tables
        return self.settings.table_path(name)

    def _table(self, name: str, version: int | None = None) -> DeltaTable:
        path = self._path(name)
        try:
            return DeltaTable(str(path), version=version)
        except DeltaTableNotFound as exc:
            raise TableNotFoundError(
                f"table {name!r} does not exist at {path}; run the ingest job first "
                "(`ragops bundle run ingest_job`)"
            ) from exc
        except Exception as exc:  # version out of range and similar
            raise LakehouseError(f"table {name!r} at {path}: {exc}") from exc

    def location(self, name: str) -> str:
        return str(self._path(name))

    # --- lifecycle -------------------------------------------------------------------------
    def exists(self, name: str) -> bool:
        return DeltaTable.is_deltatable(str(self._path(name)))

    def ensure_table(self, name: str) -> None:
        if self.exists(name):
            return
        ts = spec(name)
        path = self._path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        config = {"delta.enableChangeDataFeed": "true"} if ts.change_data_feed else None
        DeltaTable.create(
            str(path), ts.schema, mode="ignore", name=name, description=ts.description, configuration=config
        )
        log.info("created table %s at %s", name, path)

    # --- reads -----------------------------------------------------------------------------
    def version(self, name: str) -> int | None:
        if not self.exists(name):
            return None
        return self._table(name).version()

    def read(
        self,
        name: str,
        columns: Sequence[str] | None = None,
        *,
        version: int | None = None,
        timestamp: datetime | str | None = None,
        where: Mapping[str, Sequence[Any]] | None = None,
    ) -> pd.DataFrame:
        dt = self._table(name, version=version)
        if timestamp is not None:
            dt.load_as_version(timestamp if isinstance(timestamp, datetime) else datetime.fromisoformat(timestamp))
        wanted = list(columns) if columns else None
        if where and wanted:
            wanted += [c for c in where if c not in wanted]
        table = _filter_batch(dt.to_pyarrow_dataset().to_table(columns=wanted), where)
        return table.select(list(columns)).to_pandas() if columns else table.to_pandas()

    def iter_batches(
        self,
        name: str,
        columns: Sequence[str] | None = None,
        *,
        where: Mapping[str, Sequence[Any]] | None = None,
        batch_rows: int = 256,
    ):
        """Stream a table in bounded record batches (pandas frames)."""
        dataset: ds.Dataset = self._table(name).to_pyarrow_dataset()
        wanted = list(columns) if columns else None
        if where and wanted:
            wanted += [c for c in where if c not in wanted]
        pending: list[pa.RecordBatch] = []
        n = 0
        for batch in dataset.scanner(columns=wanted, batch_size=max(batch_rows, 1024)).to_batches():
            batch = _filter_batch(batch, where)
            if batch.num_rows:
                pending.append(batch)
                n += batch.num_rows
            while n >= batch_rows:
                table = pa.Table.from_batches(pending)
                yield self._select(table.slice(0, batch_rows), columns)
                rest = table.slice(batch_rows)
                pending, n = rest.to_batches(), rest.num_rows
        if n:
            yield self._select(pa.Table.from_batches(pending), columns)

    @staticmethod
    def _select(table: pa.Table, columns: Sequence[str] | None) -> pd.DataFrame:
        return (table.select(list(columns)) if columns else table).to_pandas()

    def changes(self, name: str, since_version: int, until_version: int | None = None) -> pd.DataFrame:
        dt = self._table(name)
        if dt.metadata().configuration.get("delta.enableChangeDataFeed") != "true":
            # delta-rs would silently return no rows here: that must not look like "no changes".
            raise ChangeFeedUnavailable(f"table {name!r} does not have delta.enableChangeDataFeed = true")
        current = dt.version()
        if since_version >= current:
            return pd.DataFrame(columns=[*spec(name).columns, "_change_type", "_commit_version"])
        try:
            reader = dt.load_cdf(starting_version=since_version + 1, ending_version=until_version)
            table = pa.RecordBatchReader.from_stream(reader).read_all()
        except Exception as exc:
            raise ChangeFeedUnavailable(
                f"table {name!r}: no change data feed for versions {since_version + 1}..{current} ({exc})"
            ) from exc
        return table.to_pandas()

    def history(self, name: str, limit: int | None = None) -> list[dict[str, Any]]:
        return list(self._table(name).history(limit))

    # --- writes ----------------------------------------------------------------------------
    def append(self, name: str, df: pd.DataFrame) -> WriteResult:
        if df.empty:
            return WriteResult(name, 0, None)
        from deltalake import write_deltalake

        self.ensure_table(name)
        data = validate(name, df)
        _with_retry(f"append to {name}", lambda: write_deltalake(str(self._path(name)), data, mode="append"))
        return WriteResult(name, len(df), self.version(name))

    def upsert(self, name: str, df: pd.DataFrame) -> WriteResult:
        if df.empty:
            return WriteResult(name, 0, None)
        self.ensure_table(name)
        keys = spec(name).keys
        if df.duplicated(list(keys)).any():
            dup = df[df.duplicated(list(keys), keep=False)][list(keys)].head(3).to_dict("records")
            raise LakehouseError(f"upsert into {name!r}: duplicate keys in the batch, e.g. {dup}")
        data = validate(name, df)
        predicate = " AND ".join(f"t.{k} = s.{k}" for k in keys)

        def op() -> None:
            (
                self._table(name)
                .merge(data, predicate=predicate, source_alias="s", target_alias="t")
                .when_matched_update_all()
                .when_not_matched_insert_all()
                .execute()
            )

        _with_retry(f"merge into {name}", op)
        return WriteResult(name, len(df), self.version(name))

    def delete(self, name: str, column: str, values: Sequence[Any]) -> WriteResult:
        values = list(dict.fromkeys(values))
        if not values or not self.exists(name):
            return WriteResult(name, 0, None)
        field = spec(name).schema.field(column)
        keys = pa.table({column: pa.array(values, type=field.type)})

        def op() -> None:
            (
                self._table(name)
                .merge(keys, predicate=f"t.{column} = s.{column}", source_alias="s", target_alias="t")
                .when_matched_delete()
                .execute()
            )

        _with_retry(f"delete from {name}", op)
        return WriteResult(name, len(values), self.version(name))

    # --- compute ---------------------------------------------------------------------------
    def map_batches(
        self, df: pd.DataFrame, fn: BatchFn, output: str | pa.Schema, *, batch_rows: int = 64, desc: str = ""
    ) -> pd.DataFrame:
        columns = schema_of(output).names
        outputs = []
        with progress(total=len(df), desc=desc or "map batches", unit="row") as bar:
            for start in range(0, len(df), batch_rows):
                batch = df.iloc[start : start + batch_rows]
                outputs.append(fn(batch.reset_index(drop=True)))
                bar.update(len(batch))
        if not outputs:
            return pd.DataFrame(columns=columns)
        out = pd.concat(outputs, ignore_index=True)
        return out[columns] if not out.empty else pd.DataFrame(columns=columns)

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
        if not any(len(v) for v in where.values()):
            return WriteResult(output_table, 0, None)
        total_in = max(len(v) for v in where.values())
        buffered: list[pd.DataFrame] = []
        n_buffered = rows = 0
        version = None
        with progress(total=total_in, desc=desc or f"{source} → {output_table}", unit="row") as bar:
            for batch in self.iter_batches(source, columns, where=where, batch_rows=batch_rows):
                out = fn(batch)
                bar.update(len(batch))
                if out.empty:
                    continue
                buffered.append(out)
                n_buffered += len(out)
                if n_buffered >= COMMIT_EVERY_ROWS:
                    result = self.upsert(output_table, pd.concat(buffered, ignore_index=True))
                    rows, version, buffered, n_buffered = rows + result.rows, result.version, [], 0
        if buffered:
            result = self.upsert(output_table, pd.concat(buffered, ignore_index=True))
            rows, version = rows + result.rows, result.version
        return WriteResult(output_table, rows, version)
