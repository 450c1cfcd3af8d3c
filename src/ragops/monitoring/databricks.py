"""A Databricks serving endpoint's inference table → ``inference_log`` rows, so the monitor job reads
one schema whether the gateway or Model Serving answered.

Two payload tables exist (columns as documented by Databricks, checked 2026-12):

* **AI Gateway-enabled** (``<catalog>.<schema>.<prefix>_payload``, what :mod:`ragops.serving.deploy`
  configures): ``databricks_request_id``, ``client_request_id``, ``request_date``, ``request_time``
  (timestamp), ``status_code``, ``sampling_fraction``, ``execution_duration_ms``, ``request`` and
  ``response`` (JSON strings, null when over the logging size limit, then ``logging_error_codes``
  says why), ``served_entity_id``, ``requester``;
* **legacy** (custom-model endpoints before AI Gateway): ``timestamp_ms`` and ``date`` instead of
  ``request_time`` / ``request_date``, ``execution_time_ms`` instead of ``execution_duration_ms``, and
  ``request_metadata`` (a map: ``endpoint_name``, ``model_name``, ``model_version``).

One row maps through the gateway's own reader, :func:`ragops.serving.gateway.journal.
from_databricks_payload` (question, answer, sources, usage, time to first token: the same code the
gateway's importer runs), after the differences above are evened out: the legacy column names,
``request_metadata``, the pyfunc's single-answer response (``{"predictions": {...}}``: MLflow's scoring
server wraps a chat request's one answer object without a list) and ``dataframe_split`` requests.
Status follows the gateway's vocabulary: ``ok`` below 400, ``refused`` for 4xx, ``timeout`` for 504,
``error`` otherwise.

No row is dropped. A row whose request or response is not JSON, a 200 whose response holds no answer,
or a row without a status code is kept with status ``error`` and the problem in ``error``; a row
without ``databricks_request_id`` gets the client's id or a content hash (``unidentified-…``). Only a
table with no time column at all is refused (nothing could place its rows in a window).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from ragops.config import Settings
from ragops.monitoring.catalog import MonitoringError

log = logging.getLogger(__name__)

TABLE = "inference_log"
#: Payload rows can land in the inference table this long after the request (Databricks logs them
#: asynchronously): each sync re-reads this much before the newest row it already has.
LATE_ARRIVAL = pd.Timedelta(hours=1)
_TIME_COLUMNS = ("request_time", "timestamp_ms", "request_date", "date")


def _missing(value: Any) -> bool:
    if value is None:
        return True
    try:
        return bool(pd.isna(value)) if pd.api.types.is_scalar(value) else False
    except (TypeError, ValueError):
        return False


def _metadata(value: Any) -> dict[str, str]:
    """``request_metadata`` as a dict: a dict from Spark, a list of (key, value) pairs from Arrow."""
    if _missing(value):
        return {}
    if isinstance(value, Mapping):
        return {str(k): str(v) for k, v in value.items() if not _missing(v)}
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        return {str(k): str(v) for k, v in value if not _missing(v)}
    return {}


def _parse(raw: Any, what: str, problems: list[str]) -> Any:
    """A JSON body (already decoded when the reader gave a dict); a body that is not JSON is named in
    ``problems`` and read as absent."""
    from ragops.serving.gateway.journal import _json_or_none

    if _missing(raw):
        return None
    parsed = _json_or_none(raw)
    if parsed is None:
        problems.append(f"{what} is not JSON ({str(raw)[:80]!r})")
    return parsed


def _even_request(request: Any) -> Any:
    """A ``dataframe_split`` or ``instances`` request → ``dataframe_records`` (what the reader knows)."""
    if not isinstance(request, dict):
        return request
    split = request.get("dataframe_split")
    if isinstance(split, dict) and isinstance(split.get("columns"), list) and isinstance(split.get("data"), list):
        rows = [r for r in split["data"] if isinstance(r, list)]
        return {**request, "dataframe_records": [dict(zip(split["columns"], r, strict=False)) for r in rows]}
    if isinstance(request.get("instances"), list):
        return {**request, "dataframe_records": request["instances"]}
    return request


def _even_response(response: Any) -> Any:
    """The pyfunc's one answer object (``{"predictions": {...}}``) → a one-item predictions list."""
    if isinstance(response, dict) and isinstance(response.get("predictions"), dict):
        return {**response, "predictions": [response["predictions"]]}
    return response


def _has_answer(response: Any) -> bool:
    if not isinstance(response, dict):
        return False
    choices, predictions = response.get("choices"), response.get("predictions")
    return (isinstance(choices, list) and bool(choices)) or (isinstance(predictions, list) and bool(predictions))


def _fallback_id(row: Mapping[str, Any]) -> str:
    text = json.dumps({k: v for k, v in row.items() if not _missing(v)}, sort_keys=True, default=str)
    return "unidentified-" + hashlib.sha1(text.encode()).hexdigest()[:16]


def _clean(row: Mapping[str, Any]) -> dict[str, Any]:
    """A pandas record with NaN/NaT scalars as None (the reader tests ``is None``)."""
    return {k: (None if _missing(v) else v) for k, v in row.items()}


def map_row(row: Mapping[str, Any], *, endpoint: str = "") -> dict[str, Any]:
    """One inference-table row → one ``inference_log`` row (a dict; see :func:`from_inference_table`)."""
    from ragops.serving.gateway.journal import from_databricks_payload

    row = _clean(row)
    problems: list[str] = []
    meta = _metadata(row.get("request_metadata"))
    even = dict(row)
    if even.get("execution_duration_ms") is None and even.get("execution_time_ms") is not None:
        even["execution_duration_ms"] = even["execution_time_ms"]
    if even.get("request_time") is None and even.get("timestamp_ms") is None:
        day = even.get("request_date") or even.get("date")
        if day is None:
            raise MonitoringError(f"an inference table row has no time ({', '.join(_TIME_COLUMNS)} all missing); "
                                  f"its columns: {sorted(row)}. Is this a serving endpoint's payload table?")
        even["request_time"] = pd.Timestamp(day)
        problems.append("no request time; placed at the start of its request date")
    if not even.get("databricks_request_id"):
        even["databricks_request_id"] = even.get("client_request_id") or _fallback_id(row)
        problems.append("no databricks_request_id")
    request = _even_request(_parse(row.get("request"), "request", problems))
    response = _even_response(_parse(row.get("response"), "response", problems))
    even["request"], even["response"] = request, response
    status_code = even.get("status_code")
    if status_code is None:
        problems.append("no status_code")
    elif int(status_code) < 400 and response is not None and not _has_answer(response):
        problems.append("the response holds no answer (neither chat choices nor predictions)")

    out = from_databricks_payload(even, endpoint=endpoint or meta.get("endpoint_name") or None)
    if meta.get("model_name"):
        out["model_name"] = meta["model_name"]
    if meta.get("model_version"):
        out["model_version"] = meta["model_version"]
        if not out.get("model_uri") and out.get("model_name"):
            out["model_uri"] = f"models:/{out['model_name']}/{meta['model_version']}"
    if status_code is None:
        out["http_status"] = None
    if problems:
        out["error"] = "; ".join(([out["error"]] if out.get("error") else []) + problems)
        if out["status"] == "ok":
            out["status"] = "error"
    return out


def from_inference_table(df: pd.DataFrame, *, endpoint: str = "") -> pd.DataFrame:
    """Rows of a serving endpoint's inference table → a frame in the exact ``inference_log`` schema
    (``validate("inference_log", out)`` passes), one row per request. ``endpoint`` names the route
    (default: ``request_metadata.endpoint_name``, else ``databricks``). A request logged twice keeps
    its last row (the table's key is the request id)."""
    from ragops.lakehouse.schemas import empty_frame
    from ragops.serving.gateway.journal import _dedupe, rows_to_frame

    if df.empty:
        return empty_frame(TABLE)
    mapped = _dedupe([map_row(r, endpoint=endpoint) for r in df.to_dict("records")])
    return rows_to_frame(mapped)


def endpoint_of(table: str) -> str:
    """``main.ragops.rag_chain_endpoint_payload`` → ``rag_chain_endpoint`` (the table prefix, which
    :func:`ragops.serving.gateway.databricks.ai_gateway_settings` sets from the endpoint)."""
    name = table.removeprefix("delta:").rstrip("/").replace("\\", "/").split("/")[-1].split(".")[-1]
    return name.removesuffix("_payload") or name


def _read_payload(lh, table: str, since: pd.Timestamp | None) -> pd.DataFrame:
    """The payload rows at or after ``since``: a Unity Catalog table through Spark, or ``delta:<path>``."""
    if table.startswith("delta:"):
        from deltalake import DeltaTable

        df = DeltaTable(str(Path(table.removeprefix("delta:")))).to_pandas()
        if since is not None and not df.empty:
            if "request_time" in df.columns:
                df = df[pd.to_datetime(df["request_time"], utc=True) >= since]
            elif "timestamp_ms" in df.columns:
                df = df[df["timestamp_ms"] >= int(since.timestamp() * 1000)]
        return df.reset_index(drop=True)
    spark = getattr(lh, "spark", None)
    if spark is None:
        raise MonitoringError(f"monitor_inference_table={table!r} is a Unity Catalog table, which only the spark "
                              "engine reads; run the monitor job on Databricks (engine=spark), or give a local "
                              "copy as delta:<path>")
    columns = spark.table(table).columns
    where = ""
    if since is not None:
        if "request_time" in columns:
            # the zone in the literal: Spark reads a bare one in the session's time zone
            where = f" WHERE request_time >= TIMESTAMP '{since.strftime('%Y-%m-%d %H:%M:%S')}UTC'"
        elif "timestamp_ms" in columns:
            where = f" WHERE timestamp_ms >= {int(since.timestamp() * 1000)}"
    # Through Arrow: timestamps keep their zone (toPandas would hand over naive session-time values),
    # and request_metadata arrives as (key, value) pairs.
    return spark.sql(f"SELECT * FROM {table}{where}").toArrow().to_pandas()


def sync_inference_table(lh, settings: Settings) -> int:
    """Copy the inference table's new rows (``monitor_inference_table``) into ``inference_log``; the
    number of rows written. Reads from the newest row already copied for this endpoint, less
    :data:`LATE_ARRIVAL`, and writes only request ids not yet there, so a re-run writes nothing."""
    table = settings.monitoring.inference_table
    if not table:
        return 0
    endpoint = endpoint_of(table)
    lh.ensure_table(TABLE)
    have = lh.read(TABLE, ["timestamp"], where={"endpoint": [endpoint]})
    newest = pd.to_datetime(have["timestamp"], utc=True).max() if len(have) else None
    since = None if newest is None or pd.isna(newest) else newest - LATE_ARRIVAL
    payload = _read_payload(lh, table, since)
    if payload.empty:
        return 0
    mapped = from_inference_table(payload, endpoint=endpoint)
    known = lh.read(TABLE, ["request_id"], where={"request_id": mapped["request_id"].tolist()})
    new = mapped[~mapped["request_id"].isin(set(known["request_id"]))]
    if new.empty:
        return 0
    lh.upsert(TABLE, new.reset_index(drop=True))
    log.info("inference table %s: %d new row(s) into %s (endpoint %s)", table, len(new), TABLE, endpoint)
    return len(new)


__all__ = ["endpoint_of", "from_inference_table", "map_row", "sync_inference_table"]
