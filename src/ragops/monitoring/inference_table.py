"""Databricks Model Serving writes what an endpoint answered to its *inference table* (a Delta table
in Unity Catalog), not to our ``inference_log``. When ``monitor_inference_table`` names it, each
monitor run first copies the rows that are new since the last copy into ``inference_log``, mapped by
:func:`ragops.monitoring.databricks.from_inference_table`, so everything downstream reads one schema.

The copy is idempotent (an upsert by ``request_id``) and incremental: its watermark is the newest
``timestamp`` already copied from that table (rows carry ``endpoint = inference_table:<name>``).
It needs the Spark engine: the inference table exists only in the workspace.
"""

from __future__ import annotations

import logging

import pandas as pd

from ragops.config import Settings
from ragops.monitoring.catalog import MonitoringError

log = logging.getLogger("ragops.monitoring")


def endpoint_label(table: str) -> str:
    return f"inference_table:{table}"


def watermark(lh, label: str) -> pd.Timestamp | None:
    """The newest timestamp already copied from the inference table (None before the first copy)."""
    if not lh.exists("inference_log"):
        return None
    seen = lh.read("inference_log", ["timestamp"], where={"endpoint": [label]})
    return None if seen.empty else pd.Timestamp(seen["timestamp"].max())


def sync_inference_table(lh, settings: Settings) -> int:
    """Copy the inference table's new rows into ``inference_log``; returns how many were copied."""
    from ragops.monitoring.databricks import from_inference_table

    table = settings.monitoring.inference_table
    if getattr(lh, "engine", "") != "spark":
        raise MonitoringError(f"monitor_inference_table={table!r} needs engine=spark (the serving endpoint's inference "
                              "table lives in the workspace); locally the gateway writes inference_log itself")
    label = endpoint_label(table)
    since = watermark(lh, label)
    frame = lh.spark.table(table)
    if since is not None:
        frame = frame.where(frame["timestamp_ms"] > int(since.value // 1_000_000))
    rows = frame.toPandas()
    if rows.empty:
        return 0
    mapped = from_inference_table(rows, endpoint=label)
    lh.upsert("inference_log", mapped.drop_duplicates(["request_id", "shadow"], keep="last"))
    log.info("monitor: copied %d row(s) of %s into inference_log", len(mapped), table)
    return len(mapped)
