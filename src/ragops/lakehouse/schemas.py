"""Every lakehouse table, declared once: Arrow schema, merge keys, change-data-feed flag.

Both engines create tables from these declarations (the Spark engine translates them to DDL),
and :func:`validate` checks batches against them before anything is written — delta-rs casts
leniently ('123' into int64 is accepted), so type errors must be caught here, not by storage.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import pyarrow as pa

from ragops.errors import RagopsError

TS = pa.timestamp("us", tz="UTC")


@dataclass(frozen=True)
class TableSpec:
    name: str
    schema: pa.Schema
    keys: tuple[str, ...]
    change_data_feed: bool = False
    description: str = ""

    @property
    def columns(self) -> list[str]:
        return self.schema.names


def _spec(name: str, keys: tuple[str, ...], fields: list[pa.Field], cdf: bool = False, doc: str = "") -> TableSpec:
    return TableSpec(name, pa.schema(fields), keys, cdf, doc)


RAW_DOCUMENTS = _spec(
    "raw_documents",
    ("doc_id",),
    [
        pa.field("doc_id", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("source_uri", pa.string(), nullable=False),
        pa.field("format", pa.string()),
        pa.field("title", pa.string()),
        pa.field("text", pa.large_string()),
        pa.field("content_hash", pa.string(), nullable=False),
        pa.field("size_bytes", pa.int64()),
        pa.field("metadata", pa.string()),  # JSON object
        pa.field("ingested_at", TS),
    ],
    cdf=True,
    doc="One row per source document, text extracted; content_hash drives incremental processing.",
)

REJECTED_DOCUMENTS = _spec(
    "rejected_documents",
    ("source_uri",),
    [
        pa.field("source_uri", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("format", pa.string()),
        pa.field("reason_code", pa.string(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("size_bytes", pa.int64()),
        pa.field("rejected_at", TS),
    ],
    doc="Inputs that could not be ingested, with a reason a person can act on.",
)

CHUNKS = _spec(
    "chunks",
    ("chunk_id",),
    [
        pa.field("chunk_id", pa.string(), nullable=False),
        pa.field("doc_id", pa.string(), nullable=False),
        pa.field("chunk_index", pa.int32(), nullable=False),
        pa.field("text", pa.large_string()),
        pa.field("content_hash", pa.string(), nullable=False),
        pa.field("n_tokens", pa.int32()),
        pa.field("start_char", pa.int64()),
        pa.field("end_char", pa.int64()),
        pa.field("title", pa.string()),
        pa.field("source_uri", pa.string()),
        pa.field("section", pa.string()),
        pa.field("doc_content_hash", pa.string(), nullable=False),
        pa.field("chunk_config_hash", pa.string(), nullable=False),
        pa.field("created_at", TS),
    ],
    cdf=True,
    doc="Chunks of documents; chunk_id = doc_id + chunking-config hash + position.",
)

EMBEDDINGS = _spec(
    "embeddings",
    ("chunk_id",),
    [
        pa.field("chunk_id", pa.string(), nullable=False),
        pa.field("doc_id", pa.string(), nullable=False),
        pa.field("content_hash", pa.string(), nullable=False),
        pa.field("text", pa.large_string()),
        pa.field("title", pa.string()),
        pa.field("source_uri", pa.string()),
        pa.field("section", pa.string()),
        pa.field("model", pa.string(), nullable=False),
        pa.field("dimension", pa.int32(), nullable=False),
        pa.field("vector", pa.list_(pa.float32()), nullable=False),
        pa.field("embedded_at", TS),
    ],
    cdf=True,
    doc="One vector per chunk with everything the index needs; its change feed drives index sync.",
)

EVAL_SETS = _spec(
    "eval_sets",
    ("eval_set", "version", "question_id"),
    [
        pa.field("eval_set", pa.string(), nullable=False),
        pa.field("version", pa.int32(), nullable=False),
        pa.field("question_id", pa.string(), nullable=False),
        pa.field("question", pa.string(), nullable=False),
        pa.field("expected_answers", pa.list_(pa.string())),
        pa.field("expected_doc_ids", pa.list_(pa.string())),
        pa.field("tags", pa.list_(pa.string())),
        pa.field("origin", pa.string()),
        pa.field("created_at", TS),
    ],
    doc="Versioned evaluation questions with expected answers and sources.",
)

EVAL_RESULTS = _spec(
    "eval_results",
    ("run_id", "question_id"),
    [
        pa.field("run_id", pa.string(), nullable=False),  # the MLflow run of the evaluation
        pa.field("question_id", pa.string(), nullable=False),
        pa.field("eval_set", pa.string(), nullable=False),
        pa.field("eval_set_version", pa.int32(), nullable=False),
        pa.field("eval_sets_table_version", pa.int64()),  # Delta version read (time travel on re-runs)
        pa.field("model_uri", pa.string()),
        pa.field("model_version", pa.string()),
        pa.field("index_snapshot", pa.string()),
        pa.field("index_source_version", pa.int64()),
        pa.field("prompt_version", pa.string()),
        pa.field("chain_config_hash", pa.string()),
        pa.field("question", pa.string()),
        pa.field("answer", pa.string()),
        pa.field("retrieved_doc_ids", pa.list_(pa.string())),
        pa.field("scores", pa.string()),  # JSON {metric: value | null (not applicable)}
        pa.field("failures", pa.string()),  # JSON {metric: error message} — never averaged in
        pa.field("trace_id", pa.string()),
        pa.field("created_at", TS),
    ],
    doc="Per-question evaluation results with the versions they came from (eval set, model, index, prompt).",
)

FEEDBACK = _spec(
    "feedback",
    ("feedback_id",),
    [
        # A stable hash of (request_id, key_name): one row per request and caller, the latest wins.
        pa.field("feedback_id", pa.string(), nullable=False),
        pa.field("request_id", pa.string(), nullable=False),
        pa.field("key_name", pa.string()),  # the API key's name (never the key)
        pa.field("rating", pa.int32()),  # up = 1, down = -1
        pa.field("comment", pa.string()),
        pa.field("corrected_answer", pa.string()),
        pa.field("user_id", pa.string()),
        pa.field("created_at", TS),
    ],
    cdf=True,  # the monitor job reads only new feedback
    doc="User feedback on served answers, joined to inference_log by request_id.",
)

INFERENCE_LOG = _spec(
    "inference_log",
    # A shadow answer shares its request's id (so the two compare by a join) and is a row of its own.
    ("request_id", "shadow"),
    [
        pa.field("request_id", pa.string(), nullable=False),
        pa.field("shadow", pa.bool_(), nullable=False),  # the shadow target's answer: logged, never returned
        pa.field("timestamp", TS, nullable=False),
        pa.field("endpoint", pa.string()),  # the gateway, or the Databricks serving endpoint, that answered
        pa.field("key_name", pa.string()),  # the API key's name (never the key)
        pa.field("route", pa.string()),  # what the client sent as "model"
        pa.field("target", pa.string()),  # the route's target that answered: champion, challenger, ...
        pa.field("model_name", pa.string()),
        pa.field("model_uri", pa.string()),
        pa.field("model_version", pa.string()),
        pa.field("question", pa.string()),
        pa.field("answer", pa.string()),
        pa.field("sources", pa.string()),  # JSON list of {doc_id, source_uri, chunk_id, score}
        pa.field("chunk_ids", pa.list_(pa.string())),
        pa.field("status", pa.string()),  # ok | error | timeout | refused | fallback
        pa.field("http_status", pa.int32()),
        pa.field("error", pa.string()),
        pa.field("latency_ms", pa.float64()),
        pa.field("ttft_ms", pa.float64()),  # time to first token (streamed answers)
        pa.field("prompt_tokens", pa.int32()),
        pa.field("completion_tokens", pa.int32()),
        pa.field("lineage", pa.string()),  # JSON: index manifest, prompt version, config hash
        pa.field("access_groups", pa.list_(pa.string())),  # the document filter that applied; null = none
        pa.field("guardrails", pa.string()),  # JSON list of guardrail outcomes
        pa.field("truncated", pa.bool_()),  # a field was cut to the log's size limit
    ],
    cdf=True,  # the monitor job reads only rows it has not seen (ragops.monitoring)
    doc="Every request the serving gateway answered (or refused).",
)

# Fine-tuning examples (ragops.finetune.datasets). One build = one build_id: every row of a build
# shares it, re-running with the same sources and settings rewrites the same keys, and a training
# run records (build_id, table version) as its dataset version.
FINETUNE_SFT = _spec(
    "finetune_sft",
    ("build_id", "example_id"),
    [
        pa.field("build_id", pa.string(), nullable=False),
        pa.field("example_id", pa.string(), nullable=False),
        pa.field("split", pa.string(), nullable=False),  # train | validation | holdout (never trained on)
        pa.field("question_id", pa.string()),
        pa.field("question", pa.string(), nullable=False),
        pa.field("split_group", pa.string(), nullable=False),  # what the split is by: a document, an article
        pa.field("origin", pa.string(), nullable=False),  # eval_set:<name>@<version> | feedback
        pa.field("kind", pa.string(), nullable=False),  # answer | dont_know | upvoted | corrected
        pa.field("prompt", pa.large_string(), nullable=False),  # JSON [{role, content}]: the chain's own messages
        pa.field("completion", pa.string(), nullable=False),  # the assistant's answer to learn
        pa.field("context_doc_ids", pa.list_(pa.string())),  # documents the retrieved context came from
        pa.field("sources", pa.string()),  # JSON: table versions, index snapshot, prompt version it was built from
        pa.field("built_at", TS),
    ],
    doc="Supervised fine-tuning examples in the chain's chat format, split leak-free by question and source.",
)

FINETUNE_DPO = _spec(
    "finetune_dpo",
    ("build_id", "pair_id"),
    [
        pa.field("build_id", pa.string(), nullable=False),
        pa.field("pair_id", pa.string(), nullable=False),
        pa.field("split", pa.string(), nullable=False),
        pa.field("question_id", pa.string()),
        pa.field("question", pa.string(), nullable=False),
        pa.field("split_group", pa.string(), nullable=False),
        pa.field("origin", pa.string(), nullable=False),
        pa.field("kind", pa.string(), nullable=False),  # feedback | distractor | verbose | dont_know | hallucination
        pa.field("prompt", pa.large_string(), nullable=False),
        pa.field("chosen", pa.string(), nullable=False),
        pa.field("rejected", pa.string(), nullable=False),
        pa.field("sources", pa.string()),
        pa.field("built_at", TS),
    ],
    doc="Preference pairs (chosen / rejected answers to the same chain prompt) for DPO.",
)

# Monitoring (ragops.monitoring). One row per window, route, model version and metric; route and
# model_version are "" for what belongs to no route (drift, index freshness, pipeline health).
MONITORING_METRICS = _spec(
    "monitoring_metrics",
    ("window_start", "route", "model_version", "metric"),
    [
        pa.field("window_start", TS, nullable=False),
        pa.field("window_end", TS, nullable=False),
        pa.field("route", pa.string(), nullable=False),
        pa.field("model_version", pa.string(), nullable=False),
        pa.field("metric", pa.string(), nullable=False),  # e.g. latency_p95_ms, error_rate, drift_auc_reference
        pa.field("value", pa.float64()),  # null: not defined in this window (no feedback, too few queries)
        pa.field("count", pa.int64()),  # the observations behind the value (requests, ratings, queries)
        pa.field("state", pa.string()),  # JSON: the mergeable aggregate the value came from (incremental runs)
        pa.field("otel_name", pa.string()),  # the OpenTelemetry GenAI name where one exists
        pa.field("source_version", pa.int64()),  # inference_log version the window was computed up to
        pa.field("computed_at", TS),
    ],
    doc="Windowed serving metrics per route and model version, plus drift, freshness and pipeline health.",
)

ALERTS = _spec(
    "alerts",
    ("alert_id",),
    [
        # One row per incident: a hash of (rule, route, model_version, fired_at); clearing updates it.
        pa.field("alert_id", pa.string(), nullable=False),
        pa.field("rule", pa.string(), nullable=False),
        pa.field("tier", pa.string(), nullable=False),  # page | warn | info
        pa.field("metric", pa.string(), nullable=False),
        pa.field("route", pa.string(), nullable=False),
        pa.field("model_version", pa.string(), nullable=False),
        pa.field("status", pa.string(), nullable=False),  # firing | cleared
        pa.field("condition", pa.string()),  # e.g. "latency_p95_ms > 2000"
        pa.field("value", pa.float64()),  # the value that fired it
        pa.field("last_value", pa.float64()),  # the latest value seen (the one that cleared it)
        pa.field("threshold", pa.float64()),
        pa.field("message", pa.string()),
        pa.field("window_start", TS),  # the window that fired it
        pa.field("fired_at", TS, nullable=False),
        pa.field("cleared_at", TS),
        pa.field("notified", pa.string()),  # webhook outcome: JSON {fired: ..., cleared: ...}
    ],
    doc="Alerts the monitor job raised, and when each cleared.",
)

MONITORING_RUNS = _spec(
    "monitoring_runs",
    ("run_id",),
    [
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("started_at", TS, nullable=False),
        pa.field("seconds", pa.float64()),
        pa.field("mode", pa.string()),  # full | incremental | unchanged
        pa.field("inference_log_version", pa.int64()),  # read up to (the next run starts after it)
        pa.field("feedback_version", pa.int64()),
        pa.field("rows_read", pa.int64()),
        pa.field("windows", pa.int64()),  # windows recomputed
        pa.field("metrics_written", pa.int64()),
        pa.field("alerts_firing", pa.int64()),
        pa.field("summary", pa.string()),  # JSON: drift, freshness, pipeline health, feedback candidates
    ],
    doc="Each monitor job run: what it read (the watermark of the next run) and what it found.",
)

TABLES: dict[str, TableSpec] = {
    t.name: t
    for t in (RAW_DOCUMENTS, REJECTED_DOCUMENTS, CHUNKS, EMBEDDINGS, EVAL_SETS, EVAL_RESULTS, FEEDBACK, INFERENCE_LOG,
              FINETUNE_SFT, FINETUNE_DPO, MONITORING_METRICS, ALERTS, MONITORING_RUNS)
}


def spec(name: str) -> TableSpec:
    try:
        return TABLES[name]
    except KeyError:
        raise KeyError(f"unknown table {name!r}; known tables: {', '.join(TABLES)}") from None


def schema_of(output: str | pa.Schema) -> pa.Schema:
    """A table name or an Arrow schema → the Arrow schema a batch transform must produce."""
    return output if isinstance(output, pa.Schema) else spec(output).schema


class SchemaError(RagopsError, ValueError):
    """A batch does not match its table's declared schema."""


def _check_values(table: str, name: str, arrow_type: pa.DataType, series: pd.Series) -> None:
    """Reject values that delta-rs would silently cast (e.g. '123' into int64)."""
    non_null = series.dropna() if series.dtype != object else series[series.notna()]
    if non_null.empty:
        return
    kind = None
    if pa.types.is_integer(arrow_type):
        kind = "integer"
        ok = pd.api.types.is_integer_dtype(series.dtype) or non_null.map(
            lambda x: isinstance(x, int) and not isinstance(x, bool)
        ).all()
    elif pa.types.is_floating(arrow_type):
        kind = "number"
        ok = pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_bool_dtype(series.dtype)
    elif pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
        kind = "string"
        ok = pd.api.types.is_string_dtype(series.dtype) and non_null.map(lambda x: isinstance(x, str)).all()
    elif pa.types.is_list(arrow_type):
        kind = "list"
        ok = non_null.map(lambda x: hasattr(x, "__len__") and not isinstance(x, (str, bytes, dict))).all()
    elif pa.types.is_timestamp(arrow_type):
        kind = "timestamp"
        ok = pd.api.types.is_datetime64_any_dtype(series.dtype)
    else:
        ok = True
    if not ok:
        bad = non_null.iloc[0]
        raise SchemaError(
            f"table {table!r}: column {name!r} expects {kind} values ({arrow_type}), "
            f"got {type(bad).__name__} {bad!r:.60} (dtype {series.dtype})"
        )


def validate(table: str, df: pd.DataFrame) -> pa.Table:
    """Check ``df`` against the declared schema and return an Arrow table in that exact schema.

    Raises :class:`SchemaError` naming the table, column and offending value.
    """
    ts = spec(table)
    missing = [c for c in ts.columns if c not in df.columns]
    extra = [c for c in df.columns if c not in ts.columns]
    if missing or extra:
        raise SchemaError(
            f"table {table!r}: columns do not match the declared schema"
            + (f"; missing {missing}" if missing else "")
            + (f"; unexpected {extra}" if extra else "")
        )
    for f in ts.schema:
        col = df[f.name]
        if not f.nullable and col.isna().any():
            row = int(col.isna().to_numpy().nonzero()[0][0])
            raise SchemaError(f"table {table!r}: column {f.name!r} must not be null (row {row})")
        _check_values(table, f.name, f.type, col)
    try:
        return pa.Table.from_pandas(df[ts.columns], schema=ts.schema, preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise SchemaError(f"table {table!r}: {exc}") from exc


def utcnow() -> pd.Timestamp:
    """The timestamp every ``*_at`` column is written with (UTC, microseconds)."""
    return pd.Timestamp.now(tz="UTC").floor("us")


def empty_frame(table: str) -> pd.DataFrame:
    return spec(table).schema.empty_table().to_pandas()
