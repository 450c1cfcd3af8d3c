"""Every monitoring metric, declared once: its name, unit, what it means, which direction is bad,
and the OpenTelemetry GenAI semantic-convention name where one exists.

Metrics that come per label (an HTTP status, a guardrail check, a bundle job) are written as
``<family>:<label>`` (``error_rate:500``, ``guardrail_block_rate:pii``, ``job_failed:ingest_job``);
:func:`family` strips the label. Alert rules, the dashboard and the tests name metrics from here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pandas as pd

from ragops.errors import RagopsError

#: The table every metric row lives in (``ragops.lakehouse.schemas.MONITORING_METRICS``).
METRICS_TABLE = "monitoring_metrics"


class MonitoringError(RagopsError, RuntimeError):
    """The monitor job cannot do what it was asked; the message says what to fix."""


@dataclass(frozen=True)
class Metric:
    name: str
    unit: str
    help: str
    #: "high" when a high value is the problem (latency), "low" when a low one is (thumbs-up rate).
    bad: str = "high"
    otel_name: str = ""


_METRICS = [
    # traffic (ragops.monitoring.traffic), per route and model version
    Metric("requests", "requests", "Requests answered or refused in the window (shadow answers excluded).", "low",
           "gen_ai.client.operation.duration"),
    Metric("error_rate", "share", "Share of requests whose status is not ok (error, timeout, refused, fallback)."),
    Metric("latency_p50_ms", "ms", "Median request latency.", "high", "gen_ai.client.operation.duration"),
    Metric("latency_p95_ms", "ms", "95th percentile request latency.", "high", "gen_ai.client.operation.duration"),
    Metric("latency_p99_ms", "ms", "99th percentile request latency.", "high", "gen_ai.client.operation.duration"),
    Metric("ttft_p50_ms", "ms", "Median time to first token (streamed answers).", "high",
           "gen_ai.server.time_to_first_token"),
    Metric("ttft_p95_ms", "ms", "95th percentile time to first token.", "high", "gen_ai.server.time_to_first_token"),
    Metric("tokens_per_s", "tokens/s", "Completion tokens per second of request time (mean over requests).", "low",
           "gen_ai.server.time_per_output_token"),
    Metric("prompt_tokens", "tokens", "Prompt tokens used in the window.", "high", "gen_ai.client.token.usage"),
    Metric("completion_tokens", "tokens", "Completion tokens used in the window.", "high", "gen_ai.client.token.usage"),
    Metric("cost_usd", "USD", "Estimated cost: tokens / 1000 × the route's price (monitor_prices)."),
    Metric("feedback_count", "ratings", "Ratings given in the window to answers of this route and version.", "low"),
    Metric("thumbs_up_rate", "share", "Share of the window's ratings that are up.", "low"),
    Metric("guardrail_block_rate", "share", "Share of requests a guardrail check blocked or refused (per check)."),
    Metric("retrieval_score_p10", "score", "10th percentile of the top retrieved source's score.", "low"),
    Metric("retrieval_score_p50", "score", "Median of the top retrieved source's score.", "low"),
    Metric("retrieval_score_mean", "score", "Mean of the top retrieved source's score.", "low"),
    Metric("groundedness", "share", "Mean groundedness of a sample of answers (the evaluation's code scorer).",
           "low"),
    Metric("groundedness_judge", "share",
           "Mean groundedness verdict of the evaluation's LLM judge (judge_backend) on the same sample; only when a "
           "judge is configured.", "low"),
    Metric("dont_know_rate", "share", "Share of answers that say the context does not contain the answer."),
    # query drift (ragops.monitoring.drift); route "" = all traffic
    Metric("drift_auc_reference", "AUC",
           "Classifier two-sample test: cross-validated ROC AUC telling the window's queries from the reference "
           "eval set's (0.5 = indistinguishable)."),
    Metric("drift_detected", "flag",
           "1 when drift_auc_reference is beyond the noise of the window's sample size and above the minimum "
           "effect (ragops.monitoring.drift.detect_drift), else 0: what to alert on."),
    Metric("drift_auc_previous", "AUC", "The same AUC against the previous window's queries."),
    Metric("drift_outlier_share", "share",
           "Share of the window's queries farther from the reference than 95% of reference questions are."),
    # index freshness and pipeline health (ragops.monitoring.health); route ""
    Metric("index_lag_versions", "versions",
           "embeddings table versions committed after the one the serving index snapshot was built from."),
    Metric("index_lag_s", "s", "Seconds since the first embeddings commit the serving snapshot does not have."),
    Metric("unsearchable_documents", "documents", "Documents ingested but not in the serving index snapshot."),
    Metric("job_failed", "runs", "1 when the latest run of the bundle job (label) failed, else 0."),
    Metric("job_duration_s", "s", "Duration of the latest run of the bundle job (label).", "high"),
    Metric("job_age_s", "s", "Seconds since the latest run of the bundle job (label) started.", "high"),
    Metric("rejected_documents", "documents", "Documents rejected at ingestion in the window (per reason code)."),
]
METRICS: dict[str, Metric] = {m.name: m for m in _METRICS if m.help}


def family(metric: str) -> str:
    """``error_rate:500`` → ``error_rate``."""
    return metric.split(":", 1)[0]


def describe(metric: str) -> Metric:
    try:
        return METRICS[family(metric)]
    except KeyError:
        raise MonitoringError(f"unknown monitoring metric {metric!r}; known: {', '.join(METRICS)}") from None


def otel_name(metric: str) -> str | None:
    return METRICS[family(metric)].otel_name or None if family(metric) in METRICS else None


def metric_row(window_start: pd.Timestamp, window_end: pd.Timestamp, metric: str, value: float | None,
               count: int | None = None, *, route: str = "", model_version: str = "",
               state: dict[str, Any] | None = None, source_version: int | None = None) -> dict[str, Any]:
    """One ``monitoring_metrics`` row (``computed_at`` is set when written)."""
    describe(metric)  # a name not in the catalog is a bug: fail where it is made
    return {
        "window_start": pd.Timestamp(window_start), "window_end": pd.Timestamp(window_end),
        "route": route or "", "model_version": model_version or "", "metric": metric,
        "value": None if value is None or pd.isna(value) else float(value),
        "count": None if count is None else int(count),
        "state": None if state is None else json.dumps(state, separators=(",", ":"), sort_keys=True),
        "otel_name": otel_name(metric), "source_version": source_version, "computed_at": None,
    }


def metrics_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Rows from :func:`metric_row` → a frame in the ``monitoring_metrics`` schema (computed_at = now)."""
    from ragops.lakehouse.schemas import empty_frame, utcnow

    if not rows:
        return empty_frame("monitoring_metrics")
    df = pd.DataFrame(rows)
    now = utcnow()
    df["computed_at"] = now
    for col in ("window_start", "window_end", "computed_at"):
        df[col] = pd.to_datetime(df[col], utc=True).dt.floor("us")
    df["count"] = df["count"].astype("Int64")
    df["source_version"] = df["source_version"].astype("Int64")
    df["value"] = df["value"].astype("float64")
    return df[list(empty_frame("monitoring_metrics").columns)]


def read_metrics(lh, window_starts=None, columns=None) -> pd.DataFrame:
    """Stored ``monitoring_metrics`` rows of the windows starting at ``window_starts`` (all windows when
    None), only ``columns`` when given; an empty frame when the table does not exist yet."""
    from ragops.lakehouse.schemas import empty_frame

    if (window_starts is not None and not len(window_starts)) or not lh.exists(METRICS_TABLE):
        empty = empty_frame(METRICS_TABLE)
        return empty[list(columns)] if columns else empty
    where = None if window_starts is None else {"window_start": sorted(window_starts)}
    return lh.read(METRICS_TABLE, list(columns) if columns else None, where=where)


def window_bounds(ts: pd.Timestamp | pd.Series, window_seconds: int):
    """The start of the window a timestamp falls in (windows align to the epoch, UTC)."""
    return (ts.dt if isinstance(ts, pd.Series) else ts).floor(f"{int(window_seconds)}s")
