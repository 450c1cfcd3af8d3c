"""The Spark engine: Delta tables through the Spark Connect DataFrame API.

The same code runs on Databricks (a notebook or job session, serverless or classic), against any
Spark Connect server (``--var spark_remote=sc://host:port``), and in the tests against a local
`pysail <https://github.com/lakehq/sail>`_ server. It uses only what Spark Connect offers — SQL,
DataFrames, ``mapInPandas`` — never ``sparkContext``, RDDs or py4j. This is the only module of the
project that imports pyspark.

Tables are addressed in one of two modes:

- ``name``: Unity Catalog / metastore names ``catalog.schema.table`` (on Databricks);
- ``path``: path-based Delta tables ``delta.`<root>/lakehouse/<catalog>/<schema>/<table>```
  (elsewhere; a Sail server has no persistent catalog). The server must see the same file system.

Server facts this module works around (checked against pysail 0.7.2; Databricks has none of them).
Each is one field of :class:`SparkCapabilities`, probed once per server on first use (on a scratch
path table, then removed), logged once, and consulted by the code paths:

- ``create_sql``: ``CREATE TABLE delta.`path``` is refused ("Database not found: delta") → a path
  table is created by appending an empty DataFrame with the declared schema in Delta format;
- ``cdf_tables`` / ``change_feed``: Change Data Feed is refused as a table property ("Table features
  must be specified … ChangeDataFeed"), and a ``readChangeFeed`` read silently returns the plain
  table → tables are created without CDF and :meth:`SparkLakehouse.changes` raises
  :class:`ChangeFeedUnavailable`;
- ``history_sql``: ``DESCRIBE HISTORY`` does not parse → versions and history come from the
  ``_delta_log`` JSON commits of path tables;
- ``checkpoint``: ``cache()`` is a no-op and ``localCheckpoint()`` needs the server setting
  ``execution.checkpoint.path`` (env ``SAIL_EXECUTION__CHECKPOINT__PATH``); a MERGE evaluates its
  source several times (a ``mapInPandas`` source ran 6× per partition) → the output of a batch
  function is materialised (checkpoint, else a staging Delta table) before it is counted and merged;
- concurrent MERGEs fail with "Failed to commit transaction" (Databricks: ``Concurrent…Exception``)
  → retried with back-off.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import re
import shutil
import socket
import sys
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlparse

import numpy as np
import pandas as pd
import pyarrow as pa
from pyspark.errors import AnalysisException, PySparkException, PythonException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

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
from ragops.lakehouse.schemas import SchemaError, TableSpec, schema_of, spec, validate

log = logging.getLogger(__name__)
R = TypeVar("R")

#: ``where`` lists up to this size become ``isin`` literals; longer ones a semi-join with a key DataFrame.
ISIN_MAX_VALUES = 1000
#: Upper bound on the partitions a batch transform is spread over.
MAX_PARTITIONS = 64
TABLE_MODES = ("name", "path")

_CONFLICT = re.compile(
    r"concurrent(append|delete|modification|transaction)|DELTA_CONCURRENT|failed to commit transaction"
    r"|commit ?failed|transaction conflict|metadatachanged|protocolchanged",
    re.IGNORECASE,
)
_CDF_REFUSED = re.compile(r"changedatafeed|change data feed|table features? must be specified", re.IGNORECASE)
_COMMIT_FILE = re.compile(r"^(\d{20})\.json$")
# Helper columns of map_batches: which input batch a row belongs to, its input / output position.
_BATCH, _SEQ, _POS = "__ragops_batch", "__ragops_seq", "__ragops_pos"

@dataclass(frozen=True)
class SparkCapabilities:
    """What a Spark server supports, for the features whose absence this engine works around."""

    create_sql: bool = True  #: ``CREATE TABLE`` on a path table (else: write an empty Delta table)
    cdf_tables: bool = True  #: tables can be created with Change Data Feed
    change_feed: bool = True  #: ``readChangeFeed`` returns change rows (``_change_type``)
    history_sql: bool = True  #: ``DESCRIBE HISTORY`` (else: read the ``_delta_log`` of path tables)
    checkpoint: bool = True  #: ``localCheckpoint()`` (else: stage batch output in a Delta table)

    def describe(self) -> str:
        return ", ".join(f"{f.name}={'yes' if getattr(self, f.name) else 'no'}" for f in dataclasses.fields(self))


#: Capabilities by server (remote URL or session id) and table mode: probed once per process.
_CAPABILITIES: dict[tuple[str, str], SparkCapabilities] = {}

#: Remote sessions by URL. ``builder.getOrCreate()`` would hand back whatever session is active,
#: even one connected to another (or a stopped) server.
_REMOTE_SESSIONS: dict[str, SparkSession] = {}


def disconnect(remote: str | None = None) -> None:
    """Stop the Spark Connect sessions this module opened (to ``remote``, or all). Do it before the
    server goes away: pyspark's exit hook otherwise retries its clean-up calls for minutes."""
    for url in [u for u in _REMOTE_SESSIONS if remote in (None, u)]:
        session = _REMOTE_SESSIONS.pop(url)
        with contextlib.suppress(Exception):
            session.stop()


# --- Arrow → Spark types ----------------------------------------------------------------------
def spark_type(t: pa.DataType) -> T.DataType:
    """The Spark type a declared Arrow type is stored as."""
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return T.StringType()
    simple = {
        pa.int8(): T.ByteType(),
        pa.int16(): T.ShortType(),
        pa.int32(): T.IntegerType(),
        pa.int64(): T.LongType(),
        pa.float32(): T.FloatType(),
        pa.float64(): T.DoubleType(),
        pa.bool_(): T.BooleanType(),
        pa.date32(): T.DateType(),
    }
    if t in simple:
        return simple[t]
    if pa.types.is_timestamp(t):
        return T.TimestampType() if t.tz else T.TimestampNTZType()
    if pa.types.is_binary(t) or pa.types.is_large_binary(t):
        return T.BinaryType()
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return T.ArrayType(spark_type(t.value_type), containsNull=t.value_field.nullable)
    if pa.types.is_struct(t):
        return T.StructType([T.StructField(f.name, spark_type(f.type), f.nullable) for f in t])
    raise LakehouseError(f"no Spark type for Arrow type {t}; declare the column with a supported type")


def spark_schema(schema: pa.Schema) -> T.StructType:
    return T.StructType([T.StructField(f.name, spark_type(f.type), f.nullable) for f in schema])


def _ddl_type(t: T.DataType) -> str:
    if isinstance(t, T.ArrayType):
        return f"ARRAY<{_ddl_type(t.elementType)}>"
    if isinstance(t, T.StructType):
        return "STRUCT<" + ", ".join(f"{_quote(f.name)}: {_ddl_type(f.dataType)}" for f in t) + ">"
    return {
        "bigint": "BIGINT",
        "int": "INT",
        "string": "STRING",
        "float": "FLOAT",
        "double": "DOUBLE",
        "timestamp": "TIMESTAMP",
        "timestamp_ntz": "TIMESTAMP_NTZ",
    }.get(t.simpleString(), t.simpleString().upper())


def ddl_columns(schema: pa.Schema) -> str:
    """``col TYPE [NOT NULL], …`` for ``CREATE TABLE``."""
    return ", ".join(
        f"{_quote(f.name)} {_ddl_type(f.dataType)}{'' if f.nullable else ' NOT NULL'}"
        for f in spark_schema(schema)
    )


def _quote(identifier: str) -> str:
    return "`" + identifier.replace("`", "``") + "`"


def _sql_string(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


# --- helpers ----------------------------------------------------------------------------------
def _on_databricks() -> bool:
    return bool(os.environ.get("DATABRICKS_RUNTIME_VERSION"))


def _is_databricks_url(url: str) -> bool:
    host = urlparse(url.replace("sc://", "http://", 1)).hostname or ""
    return "databricks" in host


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


def _worker_error(exc: PythonException, what: str) -> Exception:
    """A batch function failed on a Spark worker: a :class:`SchemaError` stays one, anything else
    becomes a :class:`LakehouseError` naming the step and the worker's own last error line."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    for ln in reversed(lines):
        m = re.match(r"^(?:[\w.]+\.)?SchemaError: (.*)$", ln)
        if m:
            return SchemaError(m.group(1))
    last = next(
        (ln for ln in reversed(lines) if re.match(r"^[\w.]+(Error|Exception)\b", ln)),
        lines[-1] if lines else "",
    )
    return LakehouseError(f"{what}: the batch function failed on a Spark worker: {last}")


def _local_dir(location: str) -> Path | None:
    parsed = urlparse(location)
    if parsed.scheme in ("", "file"):
        return Path(parsed.path if parsed.scheme else location)
    return None


def _port_open(url: str, timeout: float = 3.0) -> bool:
    parsed = urlparse(url.replace("sc://", "http://", 1).split(";")[0])
    host, port = parsed.hostname, parsed.port or 15002
    if not host:
        return True
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _to_pandas(table: pa.Table) -> pd.DataFrame:
    """Arrow → pandas with timestamps in UTC, as the local engine returns them."""
    for i, field in enumerate(table.schema):
        if pa.types.is_timestamp(field.type) and field.type.tz and field.type.tz != "UTC":
            table = table.set_column(
                i, field.name, table.column(i).cast(pa.timestamp(field.type.unit, tz="UTC"))
            )
    return table.to_pandas()


def _conform(out: pd.DataFrame, schema: pa.Schema, table: str | None, what: str) -> pd.DataFrame:
    """A batch function's output in exactly the declared columns and types (validated when it
    is going into a table, so that a bad value fails here, named, rather than in the MERGE)."""
    if not isinstance(out, pd.DataFrame):
        raise TypeError(
            f"{what}: the batch function returned {type(out).__name__}, expected a pandas DataFrame"
        )
    if out.empty:
        return schema.empty_table().to_pandas()
    if table:  # exactly what an upsert would accept: no missing, no extra columns
        return validate(table, out.reset_index(drop=True)).to_pandas()
    missing = [c for c in schema.names if c not in out.columns]
    if missing:
        raise SchemaError(f"{what}: the batch function's output lacks columns {missing}")
    return pa.Table.from_pandas(out[schema.names], schema=schema, preserve_index=False).to_pandas()


def _map_batches_runner(
    fn: BatchFn, schema: pa.Schema, what: str
) -> Callable[[Iterator[pd.DataFrame]], Iterator[pd.DataFrame]]:
    """``mapInPandas`` function for :meth:`SparkLakehouse.map_batches`: rows arrive sorted by
    (batch, seq) within a partition and every batch lies in one partition, so ``fn`` sees exactly
    the batches the local engine would give it, in input order."""

    def run(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        pending: list[pd.DataFrame] = []
        current = None

        def emit() -> pd.DataFrame:
            batch = pd.concat(pending, ignore_index=True).sort_values(_SEQ)
            out = _conform(fn(batch.drop(columns=[_BATCH, _SEQ]).reset_index(drop=True)), schema, None, what)
            out[_BATCH] = np.int64(current)
            out[_POS] = np.arange(len(out), dtype=np.int64)
            return out

        for frame in frames:
            for batch_id, part in frame.groupby(_BATCH, sort=False):
                if current is not None and batch_id != current:
                    yield emit()
                    pending = []
                current = batch_id
                pending.append(part)
        if pending:
            yield emit()

    return run


def _table_runner(fn: BatchFn, schema: pa.Schema, table: str, batch_rows: int, what: str):
    """``mapInPandas`` function for :meth:`SparkLakehouse.transform_table`: ``fn`` over batches of
    at most ``batch_rows`` rows, its output validated against ``table``'s declared schema."""

    def run(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        pending: list[pd.DataFrame] = []
        n = 0
        for frame in frames:
            pending.append(frame)
            n += len(frame)
            while n >= batch_rows:
                rows = pd.concat(pending, ignore_index=True)
                yield _conform(fn(rows.iloc[:batch_rows].reset_index(drop=True)), schema, table, what)
                rest = rows.iloc[batch_rows:]
                pending, n = [rest], len(rest)
        if n:
            yield _conform(fn(pd.concat(pending, ignore_index=True)), schema, table, what)

    return run


class SparkLakehouse(Lakehouse):
    """Delta tables on a Spark (Connect) server.

    ``spark``: an existing session to use (a notebook's); otherwise one is opened from the
    settings — see :meth:`open_session`. ``table_mode``: ``"name"`` (``catalog.schema.table``) or
    ``"path"`` (``delta.`<path>```); default: ``name`` on Databricks, ``path`` elsewhere (env
    ``RAGOPS_SPARK_TABLE_MODE`` overrides).
    """

    engine = "spark"

    def __init__(
        self, settings: Settings, *, spark: SparkSession | None = None, table_mode: str | None = None,
        capabilities: SparkCapabilities | None = None,
    ) -> None:
        super().__init__(settings)
        self.remote = settings.spark_remote or os.environ.get("SPARK_REMOTE", "")
        mode = (
            table_mode
            or os.environ.get("RAGOPS_SPARK_TABLE_MODE")
            or ("name" if _on_databricks() or _is_databricks_url(self.remote) else "path")
        )
        if mode not in TABLE_MODES:
            raise ValueError(f"table_mode={mode!r} is not one of {', '.join(TABLE_MODES)}")
        self.table_mode = mode
        self._spark = spark
        self._owns_session = False
        self._known: set[str] = set()  # tables seen to exist (this engine never drops one)
        self._capabilities = capabilities  # None: probe the server on first use
        self._schema_ready = False

    # --- session ---------------------------------------------------------------------------
    @property
    def spark(self) -> SparkSession:
        if self._spark is None:
            self._spark, self._owns_session = self.open_session()
        return self._spark

    def open_session(self) -> tuple[SparkSession, bool]:
        """(session, whether this object owns it): Spark Connect if ``spark_remote`` /
        ``SPARK_REMOTE`` is set, the runtime's session on Databricks, else a classic local session
        with Delta (needs the Delta jars, i.e. Maven access)."""
        if self.remote:
            session = _REMOTE_SESSIONS.get(self.remote)
            if session is None or session.is_stopped:
                if not _port_open(self.remote):
                    raise LakehouseError(
                        f"no Spark Connect server answers at {self.remote}; start one (for example "
                        "`python -m pysail spark server --port 50051`) or fix --var spark_remote"
                    )
                session = SparkSession.builder.remote(self.remote).create()
                _REMOTE_SESSIONS[self.remote] = session
            log.info("spark engine: Spark Connect session at %s (%s tables)", self.remote, self.table_mode)
            return session, False
        if _on_databricks():
            return SparkSession.builder.getOrCreate(), False
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        try:
            from delta import configure_spark_with_delta_pip

            builder = (
                SparkSession.builder.master("local[*]")
                .appName("ragops")
                .config("spark.sql.extensions", "io.delta.sql.DeltaSparkSessionExtension")
                .config("spark.sql.catalog.spark_catalog", "org.apache.spark.sql.delta.catalog.DeltaCatalog")
            )
            session = configure_spark_with_delta_pip(builder).getOrCreate()
        except Exception as exc:
            raise LakehouseError(
                "engine=spark found no Spark to run on: no spark_remote is set, this is not a Databricks "
                f"runtime, and a local Spark session with Delta could not start ({_first_line(exc)}; the Delta "
                "jars come from Maven). Set --var spark_remote=sc://host:port (e.g. a local pysail server: "
                "`python -m pysail spark server --port 50051`), run on Databricks, or use engine=local."
            ) from exc
        return session, True

    # --- capabilities ----------------------------------------------------------------------
    @property
    def capabilities(self) -> SparkCapabilities:
        """What this server supports: probed once per server and table mode, then cached."""
        if self._capabilities is None:
            key = (self.remote or f"session-{id(self.spark)}", self.table_mode)
            if key not in _CAPABILITIES:
                _CAPABILITIES[key] = self._probe()
                log.info("spark engine: server capabilities (%s tables): %s", self.table_mode,
                         _CAPABILITIES[key].describe())
            self._capabilities = _CAPABILITIES[key]
        return self._capabilities

    @property
    def supports_change_feed(self) -> bool:  # type: ignore[override] - known only once the server is asked
        caps = self.capabilities
        return caps.cdf_tables and caps.change_feed

    def _probe(self) -> SparkCapabilities:
        """Try each feature once. Named tables (Unity Catalog / a metastore, i.e. Databricks) have
        them all; path tables are probed on a scratch table that is removed afterwards."""
        checkpoint = True
        try:
            self.spark.range(1).localCheckpoint(eager=True)
        except PySparkException as exc:
            log.info("server cannot checkpoint (%s); batch output is staged in a Delta table", _first_line(exc))
            checkpoint = False
        if self.table_mode == "name":
            return SparkCapabilities(checkpoint=checkpoint)
        scratch = self.settings.lakehouse_root / "_probe" / uuid.uuid4().hex[:12]
        scratch.parent.mkdir(parents=True, exist_ok=True)
        target = f"delta.{_quote(str(scratch))}"
        cdf_props = " TBLPROPERTIES ('delta.enableChangeDataFeed' = 'true')"
        create_sql = cdf_tables = True
        try:
            try:
                self.spark.sql(f"CREATE TABLE IF NOT EXISTS {target} (id BIGINT) USING DELTA{cdf_props}")
            except PySparkException as exc:
                if _CDF_REFUSED.search(str(exc)):
                    cdf_tables = False
                    try:
                        self.spark.sql(f"CREATE TABLE IF NOT EXISTS {target} (id BIGINT) USING DELTA")
                    except PySparkException:
                        create_sql = False
                else:
                    log.info("server refuses CREATE TABLE on a path (%s); path tables are created by writing "
                             "an empty Delta table", _first_line(exc))
                    create_sql = False
            if not create_sql:
                empty = self.spark.createDataFrame([], T.StructType([T.StructField("id", T.LongType())]))

                def writer():  # a new one each time: DataFrameWriter.option() changes the writer itself
                    return empty.write.format("delta").mode("append")

                try:
                    writer().option("delta.enableChangeDataFeed", "true").save(str(scratch))
                    cdf_tables = True
                except PySparkException as exc:
                    if not _CDF_REFUSED.search(str(exc)):
                        raise
                    cdf_tables = False
                    writer().save(str(scratch))
            if not cdf_tables:
                log.warning("this Spark server cannot create tables with Change Data Feed; tables are created "
                            "without it, and index sync falls back to a content-hash diff")
            change_feed = False
            if cdf_tables:
                reader = self.spark.read.format("delta").option("readChangeFeed", "true")
                with contextlib.suppress(AnalysisException):
                    cols = reader.option("startingVersion", "0").load(str(scratch)).columns
                    change_feed = "_change_type" in cols
                if not change_feed:
                    log.warning("spark engine: the server ignores readChangeFeed (no _change_type column); "
                                "no change data feed here")
            try:
                self.spark.sql(f"DESCRIBE HISTORY {target} LIMIT 1").collect()
                history_sql = True
            except PySparkException as exc:
                log.info("server has no DESCRIBE HISTORY (%s); reading the _delta_log of path tables instead",
                         _first_line(exc))
                history_sql = False
        except PySparkException as exc:
            raise LakehouseError(
                f"probing the Spark server at {self.remote or 'this session'} with a scratch table at {scratch} "
                f"failed: {_first_line(exc)}"
            ) from exc
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return SparkCapabilities(create_sql=create_sql, cdf_tables=cdf_tables, change_feed=change_feed,
                                 history_sql=history_sql, checkpoint=checkpoint)

    def close(self) -> None:
        if self._spark is not None and self._owns_session:
            self._spark.stop()
        self._spark, self._owns_session = None, False

    # --- naming ----------------------------------------------------------------------------
    def _path(self, name: str) -> Path:
        return self.settings.table_path(name)

    def _full_name(self, name: str) -> str:
        parts = [p for p in (self.settings.catalog, self.settings.schema, name) if p]
        return ".".join(_quote(p) for p in parts)

    def _target(self, name: str) -> str:
        """The table as SQL names it."""
        spec(name)  # unknown names fail early with the list of known tables
        if self.table_mode == "name":
            return self._full_name(name)
        return f"delta.{_quote(str(self._path(name)))}"

    def location(self, name: str) -> str:
        spec(name)
        if self.table_mode == "name":
            return ".".join(p for p in (self.settings.catalog, self.settings.schema, name) if p)
        return str(self._path(name))

    # --- plumbing --------------------------------------------------------------------------
    def _retry(self, what: str, op: Callable[[], R]) -> R:
        def conflict(exc: Exception) -> bool:
            if isinstance(exc, PythonException) or not isinstance(exc, PySparkException):
                return False
            if not _CONFLICT.search(str(exc)):
                raise LakehouseError(f"{what}: {_first_line(exc)}") from exc
            return True

        return retry_commits(what, op, conflict, _first_line)

    @contextlib.contextmanager
    def _view(self, df: DataFrame, label: str) -> Iterator[str]:
        view = f"ragops_{label}_{uuid.uuid4().hex[:12]}"
        df.createOrReplaceTempView(view)
        try:
            yield view
        finally:
            with contextlib.suppress(PySparkException):
                self.spark.catalog.dropTempView(view)

    def _frame(self, data: pa.Table) -> DataFrame:
        return self.spark.createDataFrame(data, schema=spark_schema(data.schema))

    def _reader(
        self, name: str, *, version: int | None = None, timestamp: datetime | str | None = None
    ) -> DataFrame:
        if version is not None and timestamp is not None:
            raise ValueError("read: pass version or timestamp, not both")
        as_of = None
        if timestamp is not None:
            ts = pd.Timestamp(timestamp)
            ts = ts.tz_localize("UTC") if ts.tz is None else ts.tz_convert("UTC")
            as_of = ts.isoformat()  # with its +00:00 offset, whatever the session time zone
        if self.table_mode == "name":
            clause = f" VERSION AS OF {int(version)}" if version is not None else ""
            clause = f" TIMESTAMP AS OF {_sql_string(as_of)}" if as_of else clause
            return self.spark.sql(f"SELECT * FROM {self._target(name)}{clause}")
        reader = self.spark.read.format("delta")
        if version is not None:
            reader = reader.option("versionAsOf", str(int(version)))
        if as_of:
            reader = reader.option("timestampAsOf", as_of)
        return reader.load(str(self._path(name)))

    def _require(self, name: str) -> None:
        if not self.exists(name):
            raise TableNotFoundError(
                f"table {name!r} does not exist at {self.location(name)}; run the ingest job first "
                "(`ragops bundle run ingest_job`)"
            )

    def _where(self, df: DataFrame, types: pa.Schema, where: Mapping[str, Sequence[Any]] | None) -> DataFrame:
        for column, values in (where or {}).items():
            values = list(dict.fromkeys(v.item() if isinstance(v, np.generic) else v for v in values))
            if not values:
                return df.limit(0)
            if len(values) <= ISIN_MAX_VALUES:
                df = df.where(F.col(column).isin(values))
            else:
                arrow_type = types.field(column).type if column in types.names else None
                keys = pa.table({column: pa.array(values, type=arrow_type)})
                df = df.join(self._frame(keys), on=column, how="left_semi")
        return df

    # --- lifecycle -------------------------------------------------------------------------
    def exists(self, name: str) -> bool:
        spec(name)
        if name in self._known:
            return True
        if self.table_mode == "name":
            found = self.spark.catalog.tableExists(self._full_name(name))
        else:
            try:
                self.spark.read.format("delta").load(str(self._path(name))).schema  # noqa: B018 - analysis only
                found = True
            except AnalysisException:
                found = False
        if found:
            self._known.add(name)
        return found

    def ensure_table(self, name: str) -> None:
        if self.exists(name):
            return
        ts = spec(name)
        if self.table_mode == "name" and not self._schema_ready:
            parts = [p for p in (self.settings.catalog, self.settings.schema) if p]
            try:
                self.spark.sql(f"CREATE SCHEMA IF NOT EXISTS {'.'.join(_quote(p) for p in parts)}")
            except PySparkException as exc:  # no CREATE SCHEMA privilege is fine if it exists
                log.warning("could not ensure schema %s: %s", ".".join(parts), _first_line(exc))
            self._schema_ready = True
        else:
            self._path(name).parent.mkdir(parents=True, exist_ok=True)
        self._create(ts)
        self._known.add(name)
        log.info("created table %s at %s", name, self.location(name))

    def _create(self, ts: TableSpec) -> None:
        caps = self.capabilities
        cdf = ts.change_data_feed and caps.cdf_tables
        try:
            if caps.create_sql or self.table_mode == "name":
                props = " TBLPROPERTIES ('delta.enableChangeDataFeed' = 'true')" if cdf else ""
                comment = f" COMMENT {_sql_string(ts.description)}" if ts.description else ""
                self.spark.sql(
                    f"CREATE TABLE IF NOT EXISTS {self._target(ts.name)} ({ddl_columns(ts.schema)}) "
                    f"USING DELTA{comment}{props}"
                )
                return
            writer = self.spark.createDataFrame([], spark_schema(ts.schema)).write.format("delta").mode("append")
            if cdf:
                writer = writer.option("delta.enableChangeDataFeed", "true")
            writer.save(str(self._path(ts.name)))
        except PySparkException as exc:
            raise LakehouseError(
                f"create table {ts.name} at {self.location(ts.name)}: {_first_line(exc)}"
            ) from exc

    # --- reads -----------------------------------------------------------------------------
    def version(self, name: str) -> int | None:
        if not self.exists(name):
            return None
        history = self._history(name, 1)
        return int(history[0]["version"]) if history else None

    def history(self, name: str, limit: int | None = None) -> list[dict[str, Any]]:
        self._require(name)
        return self._history(name, limit)

    def _history(self, name: str, limit: int | None) -> list[dict[str, Any]]:
        if self.capabilities.history_sql or self.table_mode == "name":
            sql = f"DESCRIBE HISTORY {self._target(name)}" + (f" LIMIT {int(limit)}" if limit else "")
            try:
                rows = self.spark.sql(sql).collect()
            except PySparkException as exc:
                raise LakehouseError(f"history of {name} ({self.location(name)}): {_first_line(exc)}") from exc
            return [_history_entry(r.asDict(recursive=True)) for r in rows]
        return self._log_history(name, limit)

    def _log_history(self, name: str, limit: int | None) -> list[dict[str, Any]]:
        """Commits from the table's ``_delta_log`` (path tables on a file system this process sees)."""
        root = _local_dir(str(self._path(name)))
        log_dir = root / "_delta_log" if root else None
        if log_dir is None or not log_dir.is_dir():
            raise LakehouseError(
                f"history of {name}: the server has no DESCRIBE HISTORY and {self.location(name)}/_delta_log "
                "is not readable from here; use a server that shares this file system, or Databricks"
            )
        versions = sorted(
            (int(m.group(1)) for m in map(_COMMIT_FILE.match, os.listdir(log_dir)) if m), reverse=True
        )
        entries = []
        for v in versions[: limit or None]:
            path = log_dir / f"{v:020d}.json"
            info: dict[str, Any] = {}
            with contextlib.suppress(FileNotFoundError):  # removed by log cleanup meanwhile
                for line in path.read_text().splitlines():
                    if '"commitInfo"' in line:
                        info = json.loads(line).get("commitInfo", {})
                        break
            info.setdefault("timestamp", int(path.stat().st_mtime * 1000) if path.exists() else None)
            entries.append(_history_entry({**info, "version": v}))
        return entries

    def read(
        self,
        name: str,
        columns: Sequence[str] | None = None,
        *,
        version: int | None = None,
        timestamp: datetime | str | None = None,
        where: Mapping[str, Sequence[Any]] | None = None,
    ) -> pd.DataFrame:
        self._require(name)
        try:
            df = self._where(
                self._reader(name, version=version, timestamp=timestamp), spec(name).schema, where
            )
            if columns:
                df = df.select(*columns)
            return _to_pandas(df.toArrow())
        except AnalysisException as exc:
            as_of = (
                f" as of version {version}"
                if version is not None
                else f" as of {timestamp}"
                if timestamp
                else ""
            )
            raise LakehouseError(f"read {name}{as_of} ({self.location(name)}): {_first_line(exc)}") from exc

    def changes(self, name: str, since_version: int, until_version: int | None = None) -> pd.DataFrame:
        ts = spec(name)
        caps = self.capabilities
        if not (caps.cdf_tables and caps.change_feed):
            why = "cannot create tables with it" if not caps.cdf_tables else "ignores readChangeFeed"
            raise ChangeFeedUnavailable(
                f"table {name!r}: this Spark server has no change data feed (it {why}; e.g. Sail); use a "
                "full or content-hash comparison instead"
            )
        if not ts.change_data_feed:
            raise ChangeFeedUnavailable(f"table {name!r} is declared without change data feed")
        current = self.version(name)
        if current is None:
            raise TableNotFoundError(f"table {name!r} does not exist at {self.location(name)}")
        if since_version >= current:
            return pd.DataFrame(columns=[*ts.columns, "_change_type", "_commit_version", "_commit_timestamp"])
        reader = (
            self.spark.read.format("delta")
            .option("readChangeFeed", "true")
            .option("startingVersion", str(since_version + 1))
        )
        if until_version is not None:
            reader = reader.option("endingVersion", str(until_version))
        try:
            df = (
                reader.table(self._full_name(name))
                if self.table_mode == "name"
                else reader.load(str(self._path(name)))
            )
            if "_change_type" not in df.columns:  # the probe said yes, yet this read came back plain
                raise ChangeFeedUnavailable(
                    f"table {name!r}: this Spark server ignores readChangeFeed (it returned the table without "
                    "_change_type); no change data feed on this server"
                )
            return _to_pandas(df.toArrow())
        except AnalysisException as exc:
            raise ChangeFeedUnavailable(
                f"table {name!r}: no change data feed for versions {since_version + 1}..{current} "
                f"({_first_line(exc)})"
            ) from exc

    # --- writes ----------------------------------------------------------------------------
    def append(self, name: str, df: pd.DataFrame) -> WriteResult:
        if df.empty:
            return WriteResult(name, 0, None)
        data = validate(name, df)
        self.ensure_table(name)
        frame = self._frame(data)
        if self.table_mode == "name":
            self._retry(
                f"append to {name}",
                lambda: frame.write.format("delta").mode("append").saveAsTable(self._full_name(name)),
            )
        else:
            self._retry(
                f"append to {name}",
                lambda: frame.write.format("delta").mode("append").save(str(self._path(name))),
            )
        return WriteResult(name, len(df), self.version(name))

    def upsert(self, name: str, df: pd.DataFrame) -> WriteResult:
        if df.empty:
            return WriteResult(name, 0, None)
        keys = list(spec(name).keys)
        if df.duplicated(keys).any():
            dup = df[df.duplicated(keys, keep=False)][keys].head(3).to_dict("records")
            raise LakehouseError(f"upsert into {name!r}: duplicate keys in the batch, e.g. {dup}")
        data = validate(name, df)
        self.ensure_table(name)
        self._merge_upsert(name, self._frame(data))
        return WriteResult(name, len(df), self.version(name))

    def _merge_upsert(self, name: str, source: DataFrame) -> None:
        on = " AND ".join(f"t.{_quote(k)} = s.{_quote(k)}" for k in spec(name).keys)
        with self._view(source, "upsert") as view:
            sql = (
                f"MERGE INTO {self._target(name)} t USING {view} s ON {on} "
                "WHEN MATCHED THEN UPDATE SET * WHEN NOT MATCHED THEN INSERT *"
            )
            self._retry(f"merge into {name}", lambda: self.spark.sql(sql).collect())

    def delete(self, name: str, column: str, values: Sequence[Any]) -> WriteResult:
        values = list(dict.fromkeys(v.item() if isinstance(v, np.generic) else v for v in values))
        if not values or not self.exists(name):
            return WriteResult(name, 0, None)
        field = spec(name).schema.field(column)
        keys = self._frame(pa.table({column: pa.array(values, type=field.type)}))
        with self._view(keys, "delete") as view:
            sql = (
                f"MERGE INTO {self._target(name)} t USING {view} s ON t.{_quote(column)} = s.{_quote(column)} "
                "WHEN MATCHED THEN DELETE"
            )
            self._retry(f"delete from {name}", lambda: self.spark.sql(sql).collect())
        return WriteResult(name, len(values), self.version(name))

    # --- compute ---------------------------------------------------------------------------
    def map_batches(
        self, df: pd.DataFrame, fn: BatchFn, output: str | pa.Schema, *, batch_rows: int = 64, desc: str = ""
    ) -> pd.DataFrame:
        schema = schema_of(output)
        what = desc or "map batches"
        if df.empty:
            return pd.DataFrame(columns=schema.names)
        batch_rows = max(1, int(batch_rows))
        frame = df.reset_index(drop=True)
        seq = np.arange(len(frame), dtype=np.int64)
        data = pa.Table.from_pandas(frame, preserve_index=False)
        data = data.append_column(_BATCH, pa.array(seq // batch_rows)).append_column(_SEQ, pa.array(seq))
        # Columns that are all None have Arrow type null, which Spark cannot store: send them as strings.
        for i, f in enumerate(data.schema):
            if pa.types.is_null(f.type):
                data = data.set_column(i, f.name, data.column(i).cast(pa.string()))
        n_batches = math.ceil(len(frame) / batch_rows)
        out_schema = spark_schema(schema).add(_BATCH, T.LongType(), False).add(_POS, T.LongType(), False)
        log.info("%s: %d rows in %d batches via mapInPandas", what, len(frame), n_batches)
        sdf = (
            self.spark.createDataFrame(data)
            .repartition(min(n_batches, MAX_PARTITIONS), _BATCH)
            .sortWithinPartitions(_BATCH, _SEQ)
            .mapInPandas(_map_batches_runner(fn, schema, what), schema=out_schema)
        )
        try:
            result = sdf.toArrow()
        except PythonException as exc:
            raise _worker_error(exc, what) from exc
        result = result.sort_by([(_BATCH, "ascending"), (_POS, "ascending")]).drop_columns([_BATCH, _POS])
        return _to_pandas(result)

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
        what = desc or f"{source} → {output_table}"
        out = spec(output_table)
        self._require(source)
        batch_rows = max(1, int(batch_rows))
        selected = self._where(self._reader(source), spec(source).schema, where)
        if columns:
            selected = selected.select(*columns)
        total_in = max(len(v) for v in where.values())
        partitions = min(math.ceil(total_in / batch_rows), MAX_PARTITIONS)
        if partitions > 1:
            selected = selected.repartition(partitions)
        mapped = selected.mapInPandas(
            _table_runner(fn, out.schema, output_table, batch_rows, what), schema=spark_schema(out.schema)
        )
        log.info("%s: up to %d rows in up to %d partitions via mapInPandas", what, total_in, partitions)
        try:
            with self._materialized(mapped, output_table) as staged:
                rows = staged.count()
                if rows == 0:
                    return WriteResult(output_table, 0, None)
                keys = list(out.keys)
                dup = staged.groupBy(*keys).count().where(F.col("count") > 1).limit(3).collect()
                if dup:
                    sample = [{k: r[k] for k in keys} for r in dup]
                    raise LakehouseError(f"{what}: the batch function produced duplicate keys, e.g. {sample}")
                self.ensure_table(output_table)
                self._merge_upsert(output_table, staged)
        except PythonException as exc:
            raise _worker_error(exc, what) from exc
        return WriteResult(output_table, rows, self.version(output_table))

    @contextlib.contextmanager
    def _materialized(self, df: DataFrame, label: str) -> Iterator[DataFrame]:
        """``df`` computed once: a MERGE (and a count) would otherwise re-run the batch function.
        A local checkpoint where the server has one, else a staging Delta table dropped afterwards."""
        if self.capabilities.checkpoint:
            try:
                checkpointed = df.localCheckpoint(eager=True)
            except PythonException:
                raise
            except PySparkException as exc:
                raise LakehouseError(f"checkpoint of {label} output: {_first_line(exc)}") from exc
            yield checkpointed
            return
        stage = f"_staging_{label}_{uuid.uuid4().hex[:12]}"
        if self.table_mode == "name":
            parts = [p for p in (self.settings.catalog, self.settings.schema, stage) if p]
            table = ".".join(_quote(p) for p in parts)
            self._retry(
                f"stage {label}", lambda: df.write.format("delta").mode("overwrite").saveAsTable(table)
            )
            try:
                yield self.spark.read.table(table)
            finally:
                with contextlib.suppress(PySparkException):
                    self.spark.sql(f"DROP TABLE IF EXISTS {table}")
            return
        path = self.settings.lakehouse_root / "_staging" / stage
        self._retry(f"stage {label}", lambda: df.write.format("delta").mode("overwrite").save(str(path)))
        try:
            yield self.spark.read.format("delta").load(str(path))
        finally:
            shutil.rmtree(path, ignore_errors=True)


def _history_entry(row: Mapping[str, Any]) -> dict[str, Any]:
    """One commit, shaped like delta-rs history: timestamp in epoch milliseconds, numeric metrics as ints."""
    entry = dict(row)
    ts = entry.get("timestamp")
    if isinstance(ts, datetime):
        entry["timestamp"] = int(pd.Timestamp(ts).timestamp() * 1000)
    metrics = entry.get("operationMetrics")
    if isinstance(metrics, Mapping):
        entry["operationMetrics"] = {
            k: int(v) if isinstance(v, str) and v.lstrip("-").isdigit() else v for k, v in metrics.items()
        }
    return entry
