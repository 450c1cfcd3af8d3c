"""The monitoring dashboard: one self-contained HTML page (no CDN, no script, under 2 MB).

Why one file: it must open from a laptop's disk, from a job's artifacts and inside the gateway
(``/monitor``, in a sandboxed frame) alike, with nothing to fetch. The plots are inline SVG drawn by
:mod:`.plots`; the only style is one constant ``<style>`` block (:data:`REPORT_CSS`), so the
gateway's Content-Security-Policy can allow exactly it by hash (:data:`REPORT_STYLE_HASH`) instead of
``'unsafe-inline'``, and no element carries a ``style=`` attribute.

Two steps, so the notebook and the gateway can reuse either half:

* :func:`build_report` reads the tables (``monitoring_metrics``, ``alerts``, ``monitoring_runs``,
  ``embeddings``, ``inference_log``) into a :class:`ReportData`, with the version of each table it
  read (the page's lineage line), and projects a sample of corpus and recent query embeddings to 2-D
  (:func:`ragops.monitoring.drift.embed_queries` / ``project_2d``);
* :func:`render_html` turns that into the page; :func:`figures` gives the same SVGs one by one.

Model quality sits right next to index freshness on purpose: a drop in groundedness or in the
retrieval score often *is* a stale index (documents ingested but not searchable yet), and no
monitoring product we know of shows the two side by side.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ragops.errors import RagopsError
from ragops.monitoring.catalog import METRICS, MonitoringError, describe, read_metrics
from ragops.monitoring.plots import Series, format_value, line_chart, scatter_chart

log = logging.getLogger(__name__)

#: The tables the report reads; their versions are printed under the title.
TABLES = ("monitoring_metrics", "alerts", "monitoring_runs", "embeddings", "inference_log")
REPORT_FILE = "monitor.html"
#: The page's size limit (the issue's): render_html warns above it.
MAX_BYTES = 2 * 1024 * 1024
CORPUS_SAMPLE, QUERY_SAMPLE = 1000, 300
#: What to run when there is nothing to show.
NEXT_STEP = "ragops bundle run monitor_job"

REPORT_CSS = """
:root { color-scheme: light; }
* { box-sizing: border-box; }
body { margin: 0; background: #f6f7f9; color: #1d2330; line-height: 1.4;
  font: 14px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; }
header.top { background: #1d2330; color: #fff; padding: 14px 24px 12px; }
header.top h1 { margin: 0 0 4px; font-size: 20px; font-weight: 650; }
header.top .where { color: #cfd6e4; font-size: 13px; }
header.top .lineage { color: #9aa6bc; font-size: 12px; margin-top: 3px; }
header.top code { color: #e8ecf3; }
main { max-width: 1260px; margin: 0 auto; padding: 8px 20px 40px; }
section { margin: 22px 0 0; }
h2 { font-size: 17px; margin: 0 0 2px; }
h3 { font-size: 14px; margin: 0 0 6px; color: #38404f; }
p.how { margin: 0 0 10px; color: #5a6275; font-size: 13px; }
.charts { display: grid; grid-template-columns: repeat(auto-fill, minmax(370px, 1fr)); gap: 12px; }
.pair { display: grid; grid-template-columns: 1fr 1fr; gap: 16px; }
.pair .charts { grid-template-columns: repeat(auto-fill, minmax(280px, 1fr)); }
.pair > div { background: #eef1f6; border-radius: 8px; padding: 10px; }
.card { background: #fff; border: 1px solid #d8dce3; border-radius: 6px; padding: 6px; overflow: hidden; }
svg.chart { display: block; width: 100%; height: auto; }
.tiles { display: grid; grid-template-columns: repeat(auto-fill, minmax(122px, 1fr)); gap: 10px; margin-top: 14px; }
.tile { background: #fff; border: 1px solid #d8dce3; border-radius: 6px; padding: 8px 12px; }
.tile .k { color: #5a6275; font-size: 12px; }
.tile .v { font-size: 22px; font-weight: 650; font-variant-numeric: tabular-nums; }
.tile .s { color: #5a6275; font-size: 11px; }
.tile.bad { border-color: #e3a29c; background: #fdf1ef; }
.tile.bad .v { color: #a8231c; }
.tile.good .v { color: #176d3a; }
table.t { width: 100%; border-collapse: collapse; background: #fff; font-size: 13px; }
table.t th, table.t td { border: 1px solid #d8dce3; padding: 4px 8px; text-align: left; vertical-align: top; }
table.t th { background: #eef1f5; font-size: 12px; font-weight: 600; }
table.t td.n { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
table.t td.w { white-space: nowrap; }
.badge { display: inline-block; padding: 0 6px; border-radius: 3px; font-size: 12px; font-weight: 600; }
.firing, .failed { background: #fdecea; color: #a8231c; }
.cleared, .succeeded, .ok { background: #e1f3e7; color: #176d3a; }
.running, .warn { background: #fff4d6; color: #7a5200; }
.page { background: #a8231c; color: #fff; }
.info { background: #e8edf5; color: #38404f; }
.note { background: #fff8e1; border: 1px solid #ecd27f; border-radius: 4px; padding: 6px 10px; color: #5a4500;
  font-size: 13px; margin: 6px 0; }
.empty { background: #fff; border: 1px dashed #9aa2b1; border-radius: 8px; padding: 18px 22px; margin-top: 18px; }
.empty ol { margin: 6px 0 0; padding-left: 22px; }
.empty li { margin: 6px 0; }
code, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 12.5px; }
.muted { color: #5a6275; }
dl.kv { display: grid; grid-template-columns: max-content 1fr; gap: 2px 14px; margin: 0; background: #fff;
  border: 1px solid #d8dce3; border-radius: 6px; padding: 8px 12px; font-size: 13px; }
dl.kv dt { color: #5a6275; }
dl.kv dd { margin: 0; font-variant-numeric: tabular-nums; word-break: break-all; }
.duo { display: grid; grid-template-columns: 2fr 1fr; gap: 16px; align-items: start; }
.duo .charts { grid-template-columns: repeat(auto-fill, minmax(330px, 1fr)); }
.kv-card { padding: 10px 12px; }
table.t + .charts { margin-top: 12px; }
.kv-card dl.kv { border: none; padding: 0; }
.projection { margin-top: 12px; }
footer { color: #5a6275; font-size: 12px; margin-top: 28px; }
@media (max-width: 900px) { .pair, .duo { grid-template-columns: 1fr; } }
"""
#: The CSP source that allows exactly the report's one ``<style>`` block (the gateway's /monitor uses it).
REPORT_STYLE_HASH = "'sha256-" + base64.b64encode(hashlib.sha256(REPORT_CSS.encode("utf-8")).digest()).decode() + "'"


# --- the data -----------------------------------------------------------------------------------

@dataclass
class Projection:
    """Corpus and query embeddings in 2-D (``project_2d``'s output), with what each point is."""

    corpus_xy: np.ndarray
    queries_xy: np.ndarray
    corpus_labels: list[str]
    questions: list[str]


@dataclass
class ReportData:
    """Everything the page shows, read once (``render_html`` reads no table)."""

    root: str
    location: str  # catalog.schema
    generated_at: pd.Timestamp
    window: pd.Timedelta
    table_versions: dict[str, int | None]
    #: monitoring_metrics rows of the last ``max_windows`` windows, plus ``family`` and ``label`` columns
    metrics: pd.DataFrame
    alerts: pd.DataFrame
    run: dict[str, Any] | None = None  # the latest monitoring_runs row, summary parsed
    runs: int = 0
    #: alert thresholds per metric name, drawn as a line on that metric's chart
    thresholds: dict[str, tuple[float, str]] = field(default_factory=dict)
    projection: Projection | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return self.metrics.empty

    @property
    def summary(self) -> dict[str, Any]:
        return (self.run or {}).get("summary") or {}


def _version(lh, name: str) -> int | None:
    return lh.version(name) if lh.exists(name) else None


def _read_metrics(lh, max_windows: int) -> pd.DataFrame:
    cols = ["window_start", "window_end", "route", "model_version", "metric", "value", "count"]
    # the window starts first (one narrow column), then only the last max_windows windows in full
    starts = read_metrics(lh, columns=["window_start"])["window_start"]
    keep = sorted(pd.to_datetime(starts, utc=True).unique())[-max_windows:]
    frame = read_metrics(lh, keep, cols)
    if frame.empty:
        return frame.assign(family=pd.Series(dtype=str), label=pd.Series(dtype=str))
    frame["window_start"] = pd.to_datetime(frame["window_start"], utc=True)
    frame["window_end"] = pd.to_datetime(frame["window_end"], utc=True)
    parts = frame["metric"].str.split(":", n=1, expand=True)
    frame["family"] = parts[0]
    frame["label"] = parts[1].fillna("") if parts.shape[1] > 1 else ""
    frame["route"] = frame["route"].fillna("")
    frame["model_version"] = frame["model_version"].fillna("")
    return frame.sort_values(["window_start", "route", "model_version", "metric"]).reset_index(drop=True)


def _read_alerts(lh, limit: int = 40) -> pd.DataFrame:
    from ragops.lakehouse.schemas import empty_frame

    if not lh.exists("alerts"):
        return empty_frame("alerts")
    alerts = lh.read("alerts")
    if alerts.empty:
        return alerts
    alerts = alerts.assign(_firing=(alerts["status"] == "firing").astype(int))
    alerts = alerts.sort_values(["_firing", "fired_at"], ascending=[False, False])
    firing = alerts[alerts["_firing"] == 1]
    return pd.concat([firing, alerts[alerts["_firing"] == 0].head(max(limit - len(firing), 0))]).drop(
        columns="_firing").reset_index(drop=True)


def _read_run(lh) -> tuple[dict[str, Any] | None, int]:
    if not lh.exists("monitoring_runs"):
        return None, 0
    runs = lh.read("monitoring_runs")
    if runs.empty:
        return None, 0
    row = runs.sort_values("started_at").iloc[-1].to_dict()
    try:
        row["summary"] = json.loads(row.get("summary") or "{}") or {}
    except (TypeError, ValueError):
        row["summary"] = {}
    return row, len(runs)


def _thresholds(settings, summary: dict[str, Any], notes: list[str]) -> dict[str, tuple[float, str]]:
    """Alert rules with one fixed threshold per metric (any route) → a line on that metric's chart."""
    out: dict[str, tuple[float, str]] = {}
    try:
        from ragops.monitoring.alerts import load_alert_rules
    except ImportError:
        return out
    try:
        rules = load_alert_rules(settings.monitoring.alerts)
    except MonitoringError as exc:
        notes.append(f"Alert thresholds are not drawn: {exc}")
        rules = None
    for rule in (rules.rules if rules else ()):
        if rule.route:  # a line per route would be one per series: only any-route rules are drawn
            continue
        label = f"{rule.tier} {'>' if rule.op == 'above' else '<'}"
        if rule.metric not in out or rule.tier == "page":
            out[rule.metric] = (rule.threshold, label)
    drift = summary.get("drift") or {}
    if isinstance(drift, dict) and isinstance(drift.get("threshold"), (int, float)):
        out["drift_auc_reference"] = (float(drift["threshold"]), "drifted >")
    return out


def _sample_corpus(lh, n: int, seed: int = 0) -> tuple[np.ndarray, list[str]]:
    """A fixed-seed sample of the embeddings table's vectors: ids first, then only those rows."""
    ids = lh.read("embeddings", ["chunk_id"])["chunk_id"].tolist()
    if not ids:
        return np.zeros((0, 0), dtype=np.float32), []
    rng = np.random.default_rng(seed)
    chosen = sorted(rng.choice(len(ids), size=min(n, len(ids)), replace=False).tolist())
    rows = lh.read("embeddings", ["chunk_id", "title", "source_uri", "vector"], where={"chunk_id": [ids[i] for i in chosen]})
    vectors = np.vstack([np.asarray(v, dtype=np.float32) for v in rows["vector"]])
    labels = [str(t or s or c) for t, s, c in zip(rows["title"], rows["source_uri"], rows["chunk_id"], strict=True)]
    return vectors, labels


def _recent_questions(lh, n: int) -> list[str]:
    from ragops.serving.gateway.journal import newest_requests

    rows = newest_requests(lh, n, ["question"])
    return [q for q in rows["question"].dropna().astype(str) if q.strip()]


def _projection(lh, settings, notes: list[str]) -> Projection | None:
    from ragops.monitoring.drift import embed_queries, project_2d

    if not lh.exists("embeddings") or not lh.exists("inference_log"):
        notes.append("No projection: it needs the embeddings table (ragops bundle run ingest_job) and queries in "
                     "inference_log (traffic through the gateway).")
        return None
    corpus, labels = _sample_corpus(lh, CORPUS_SAMPLE)
    questions = _recent_questions(lh, QUERY_SAMPLE)
    if not len(corpus) or not questions:
        notes.append(f"No projection: {len(corpus)} corpus vectors and {len(questions)} recent queries.")
        return None
    try:
        queries = np.asarray(embed_queries(settings, questions), dtype=np.float32)
    except RagopsError as exc:
        notes.append(f"No projection: the queries could not be embedded ({exc}).")
        return None
    if queries.ndim != 2 or queries.shape[1] != corpus.shape[1]:
        notes.append(f"No projection: the corpus vectors have {corpus.shape[1]} dimensions and the query embedder "
                     f"gives {queries.shape[-1]}; re-embed the corpus with the current embedding_model.")
        return None
    try:
        corpus_xy, queries_xy = project_2d(corpus, queries)
    except MonitoringError as exc:
        notes.append(f"No projection: {exc}")
        return None
    return Projection(np.asarray(corpus_xy), np.asarray(queries_xy), labels, questions)


def build_report(lh, settings, *, max_windows: int = 48, project_queries: bool = True) -> ReportData:
    """Read what the dashboard shows: the last ``max_windows`` metric windows, recent alerts (firing
    first), the latest monitor run's summary, and (``project_queries``) the embedding projection."""
    versions = {name: _version(lh, name) for name in TABLES}
    notes: list[str] = []
    run, runs = _read_run(lh)
    data = ReportData(
        root=str(settings.root), location=f"{settings.catalog}.{settings.schema}",
        generated_at=pd.Timestamp.now(tz="UTC").floor("s"),
        window=pd.Timedelta(seconds=settings.monitoring.window_seconds), table_versions=versions,
        metrics=_read_metrics(lh, max_windows), alerts=_read_alerts(lh), run=run, runs=runs, notes=notes,
    )
    data.thresholds = _thresholds(settings, data.summary, notes)
    if data.empty:
        return data
    if project_queries:
        data.projection = _projection(lh, settings, notes)
    else:
        notes.append("The 2-D projection of embeddings was not computed (project_queries=False).")
    return data


# --- charts ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Chart:
    """One plot: metric families drawn together (the second and later ones dashed, named by suffix)."""

    key: str
    title: str
    families: tuple[str, ...]
    suffixes: tuple[str, ...] = ()
    labelled: bool = False  # one series per label (error_rate:<status>, guardrail_block_rate:<check>)
    y_range: tuple[float, float] | None = None


SECTIONS: tuple[tuple[str, str, str, tuple[Chart, ...]], ...] = (
    ("traffic", "Traffic and latency",
     "Requests, errors and speed per route and model version, one point per window; a line that jumps up "
     "(latency, errors) or drops (requests, tokens/s) is the change to look at. Hover a window for its values.",
     (Chart("requests", "Requests per window", ("requests",)),
      Chart("error_rate", "Error rate (any status but ok)", ("error_rate",)),
      Chart("error_rate_by_status", "Error rate by status", ("error_rate",), labelled=True),
      Chart("latency_p50_ms", "Latency p50", ("latency_p50_ms",)),
      Chart("latency_p95_ms", "Latency p95", ("latency_p95_ms",)),
      Chart("latency_p99_ms", "Latency p99", ("latency_p99_ms",)),
      Chart("ttft", "Time to first token", ("ttft_p50_ms", "ttft_p95_ms"), ("p50", "p95")),
      Chart("tokens_per_s", "Completion tokens per second", ("tokens_per_s",)))),
    ("usage", "Token usage and cost",
     "Tokens used per window (completion dashed) and the estimated cost from monitor_prices (price per 1k tokens "
     "per route); cost is absent when no price is set.",
     (Chart("tokens", "Tokens per window", ("prompt_tokens", "completion_tokens"), ("prompt", "completion")),
      Chart("cost_usd", "Estimated cost per window", ("cost_usd",)))),
    ("guardrails", "Guardrails",
     "Share of requests each guardrail check blocked or refused; a rise is either an attack or a check that "
     "has become too strict for real traffic.",
     (Chart("guardrail_block_rate", "Block rate by check", ("guardrail_block_rate",), labelled=True),)),
)
QUALITY = (
    Chart("groundedness", "Groundedness (sampled answers)", ("groundedness", "groundedness_judge"), ("", "judge"),
          y_range=(0, 1)),
    Chart("thumbs_up_rate", "Thumbs-up rate", ("thumbs_up_rate",), y_range=(0, 1)),
    Chart("feedback_count", "Feedback volume (ratings)", ("feedback_count",)),
    Chart("dont_know_rate", "\u201cI don't know\u201d share", ("dont_know_rate",)),
    Chart("retrieval_score", "Retrieval score of the top source", ("retrieval_score_p50", "retrieval_score_p10"),
          ("p50", "p10")),
)
FRESHNESS = (
    Chart("index_lag_versions", "Index lag (embeddings versions)", ("index_lag_versions",)),
    Chart("index_lag_s", "Index lag (time)", ("index_lag_s",)),
    Chart("unsearchable_documents", "Documents not searchable yet", ("unsearchable_documents",)),
)
DRIFT = (
    Chart("drift_auc", "Drift: classifier ROC AUC",
          ("drift_auc_reference", "drift_auc_previous"), ("vs reference", "vs previous"), y_range=(0.4, 1.0)),
    Chart("drift_outlier_share", "Queries far from the reference set", ("drift_outlier_share",)),
)
PIPELINE = (
    Chart("job_duration_s", "Job duration (latest run)", ("job_duration_s",), labelled=True),
    Chart("rejected_documents", "Rejected documents by reason", ("rejected_documents",), labelled=True),
)


def _where(route: str, version: str) -> str:
    if not route:
        return "all traffic"
    if not version:
        return route
    return f"{route} v{version}" if version[:1].isdigit() else f"{route} {version}"


def _series(data: ReportData, chart: Chart) -> list[Series]:
    frame = data.metrics[data.metrics["family"].isin(chart.families)]
    frame = frame[(frame["label"] != "") if chart.labelled else (frame["label"] == "")]
    if frame.empty:
        return []
    windows = sorted(data.metrics["window_start"].unique())
    combos = frame[["route", "model_version"]].drop_duplicates()
    several = len(combos) > 1
    out = []
    for fam_i, fam in enumerate(chart.families):
        sub = frame[frame["family"] == fam]
        for (route, version, label), rows in sub.groupby(["route", "model_version", "label"], sort=True):
            parts = []
            if chart.labelled:
                parts.append(label)
            if chart.suffixes:
                parts.append(chart.suffixes[fam_i])
            if several or not parts:
                parts.insert(0, _where(route, version))
            values = rows.set_index("window_start")["value"]
            group = " · ".join(p for p in (label, _where(route, version)) if p)
            out.append(Series(" · ".join(parts), windows, [values.get(w) for w in windows], group=group))
    if chart.labelled:  # the labels that matter most first: the rest may not be drawn
        out.sort(key=lambda s: -max((v for v in s.y if v is not None and not pd.isna(v)), default=0))
    return out


def _chart_svg(data: ReportData, chart: Chart, width: int = 380) -> str | None:
    series = [s for s in _series(data, chart) if any(v is not None and not pd.isna(v) for v in s.y)]
    if not series:  # no card for a metric without a value in these windows
        return None
    unit = METRICS[chart.families[0]].unit
    threshold = data.thresholds.get(chart.families[0] + (":*" if chart.labelled else ""))
    dashed = [s.name for s in series for suf in chart.suffixes[1:] if s.name.endswith(suf)]
    return line_chart(series, title=chart.title, unit=unit, threshold=threshold[0] if threshold else None,
                      threshold_label=threshold[1] if threshold else "", y_range=chart.y_range,
                      window=data.window, width=width, dashed=dashed)


def _projection_svg(data: ReportData) -> str | None:
    p = data.projection
    if p is None:
        return None
    return scatter_chart([("corpus chunks (sample)", p.corpus_xy, p.corpus_labels),
                          ("recent queries", p.queries_xy, p.questions)],
                         title="Corpus vs recent queries, 2-D projection of their embeddings")


def figures(data: ReportData) -> dict[str, str]:
    """Every SVG the page shows, by chart key (what notebook 08 displays with ``IPython.display.SVG``)."""
    out: dict[str, str] = {}
    for _, _, _, charts in SECTIONS:
        for c in charts:
            if (svg := _chart_svg(data, c)) is not None:
                out[c.key] = svg
    for c in (*QUALITY, *FRESHNESS):
        if (svg := _chart_svg(data, c, width=290)) is not None:
            out[c.key] = svg
    for c in (*DRIFT, *PIPELINE):
        if (svg := _chart_svg(data, c)) is not None:
            out[c.key] = svg
    if (svg := _projection_svg(data)) is not None:
        out["projection"] = svg
    return out


# --- tables ---------------------------------------------------------------------------------------

def _ts(value: Any) -> str:
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return "–"
    try:
        return pd.Timestamp(value).tz_convert("UTC").strftime("%Y-%m-%d %H:%M")
    except (ValueError, TypeError):
        try:
            return pd.Timestamp(value).tz_localize("UTC").strftime("%Y-%m-%d %H:%M")
        except (ValueError, TypeError):
            return str(value)


def _unit(metric: str) -> str:
    try:
        return describe(metric).unit
    except MonitoringError:
        return ""


def _table(headers: Sequence[str], rows: Sequence[Sequence[tuple[str, str]]]) -> str:
    """Rows of (cell html, css class) → a table; cell html is already escaped."""
    head = "".join(f"<th scope=\"col\">{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f'<td class="{c}">{v}</td>' if c else f"<td>{v}</td>" for v, c in r) + "</tr>"
                   for r in rows)
    return f'<table class="t"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _badge(text: str, cls: str | None = None) -> str:
    return f'<span class="badge {escape(cls or text)}">{escape(text)}</span>'


def _missing(value: Any) -> bool:
    return value is None or (not isinstance(value, (str, list, dict)) and pd.isna(value))


def _alerts_html(data: ReportData) -> str:
    if data.alerts.empty:
        return '<p class="muted">No alerts recorded: every rule in the alert rules file held in every window judged.</p>'
    rows = []
    for a in data.alerts.to_dict("records"):
        unit = _unit(a["metric"])
        value = format_value(None if _missing(a.get("value")) else a["value"], unit)
        last = format_value(None if _missing(a.get("last_value")) else a["last_value"], unit)
        rows.append([
            (_badge(a["status"]), "w"), (_badge(a["tier"]), "w"), (escape(a["rule"]), ""),
            (escape(_where(a["route"], a["model_version"])) if a["route"] else "–", "w"),
            (f'<span class="mono">{escape(a.get("condition") or "")}</span>', ""),
            (f"{escape(value)} → {escape(last)}", "n"),
            (escape(_ts(a.get("fired_at"))), "w"), (escape(_ts(a.get("cleared_at"))), "w"),
            (escape(a.get("message") or ""), ""),
        ])
    return _table(("Status", "Tier", "Rule", "Where", "Condition", "Value fired → latest", "Fired (UTC)",
                   "Cleared (UTC)", "Message"), rows)


_KEY_ALIASES = {
    "job": ("job", "name", "job_name"),
    "last_run": ("started_at", "last_run", "start_time", "started"),
    "status": ("status", "state", "result"),
    "duration": ("duration_s", "seconds", "duration"),
    "failed": ("failed_tasks", "failed"),
}


def _pick(record: dict[str, Any], what: str) -> Any:
    return next((record[k] for k in _KEY_ALIASES[what] if k in record and not _missing(record[k])), None)


def _pipeline_rows(data: ReportData) -> list[dict[str, Any]]:
    """The latest run's pipeline list; without one, the job_* metrics of the newest window."""
    jobs = data.summary.get("pipeline")
    if isinstance(jobs, list) and jobs:
        return [j for j in jobs if isinstance(j, dict)]
    m = data.metrics[data.metrics["family"].isin(("job_failed", "job_duration_s", "job_age_s"))]
    if m.empty:
        return []
    latest = m[m["window_start"] == m["window_start"].max()]
    out = []
    for job, rows in latest.groupby("label"):
        vals = dict(zip(rows["family"], rows["value"], strict=True))
        age = vals.get("job_age_s")
        out.append({"job": job, "status": "failed" if vals.get("job_failed") else "succeeded",
                    "duration_s": vals.get("job_duration_s"),
                    "started_at": None if _missing(age) else data.generated_at - pd.Timedelta(seconds=float(age))})
    return out


def _pipeline_html(data: ReportData) -> str:
    jobs = _pipeline_rows(data)
    if not jobs:
        return ('<p class="muted">No bundle job runs found (the local runner records them under '
                "<code>.ragops/runs</code>; run a job with <code>ragops bundle run JOB</code>).</p>")
    rows = []
    for j in sorted(jobs, key=lambda j: (str(_pick(j, "status")) != "failed", str(_pick(j, "job")))):
        status = str(_pick(j, "status") or "unknown")
        failed = _pick(j, "failed")
        if isinstance(failed, list):
            failed_text = ", ".join(str(f.get("task", f) if isinstance(f, dict) else f) for f in failed) or "–"
        else:
            failed_text = "–" if _missing(failed) or failed in (0, "") else str(failed)
        duration = _pick(j, "duration")
        rows.append([(escape(str(_pick(j, "job") or "?")), "mono"), (escape(_ts(_pick(j, "last_run"))), "w"),
                     (_badge(status, {"success": "succeeded", "error": "failed"}.get(status, status)), "w"),
                     (escape(format_value(None if _missing(duration) else float(duration), "s")), "n"),
                     (escape(failed_text), "")])
    return _table(("Job", "Last run (UTC)", "Status", "Duration", "Failed tasks"), rows)


def _kv_html(values: dict[str, Any] | None, skip: Sequence[str] = ()) -> str:
    if not isinstance(values, dict) or not values:
        return ""
    items = []
    for key, value in values.items():
        if key in skip or _missing(value) or (isinstance(value, (list, dict))
                                              and (not value or len(json.dumps(value, default=str)) > 200)):
            continue
        if isinstance(value, (int, float)) and not isinstance(value, bool) and key.endswith(("_s", "_seconds")):
            text = format_value(float(value), "s")
        elif isinstance(value, float):
            text = f"{value:.4g}"
        elif isinstance(value, (list, dict)):
            text = json.dumps(value, default=str)
        else:
            text = str(value)
        items.append(f"<dt>{escape(key.replace('_', ' '))}</dt><dd>{escape(text)}</dd>")
    return f'<dl class="kv">{"".join(items)}</dl>' if items else ""


# --- the page -------------------------------------------------------------------------------------

def _latest(data: ReportData, fam: str, how: str = "sum", weight: str | None = None) -> tuple[float | None, Any]:
    m = data.metrics[(data.metrics["metric"] == fam) & data.metrics["value"].notna()]
    if m.empty:
        return None, None
    w = m["window_start"].max()
    rows = m[m["window_start"] == w]
    if how == "sum":
        return float(rows["value"].sum()), w
    if how == "max":
        return float(rows["value"].max()), w
    counts = rows["count"].astype("float64").fillna(0) if weight is None else rows["count"].astype("float64")
    if counts.fillna(0).sum() > 0:
        return float((rows["value"] * counts.fillna(0)).sum() / counts.fillna(0).sum()), w
    return float(rows["value"].mean()), w


def _tiles_html(data: ReportData) -> str:
    def tile(name: str, value: float | None, unit: str, window: Any, bad: bool | None = None) -> str:
        cls = "" if bad is None or value is None else " bad" if bad else " good"
        sub = pd.Timestamp(window).strftime("%m-%d %H:%M UTC") if window is not None else "no data"
        return (f'<div class="tile{cls}"><div class="k">{escape(name)}</div>'
                f'<div class="v">{escape(format_value(value, unit))}</div><div class="s">{escape(sub)}</div></div>')

    def over(metric: str, value: float | None) -> bool | None:
        t = data.thresholds.get(metric)
        if t is None or value is None:
            return None
        return value > t[0] if ">" in t[1] else value < t[0]

    firing = int((data.alerts["status"] == "firing").sum()) if not data.alerts.empty else 0
    paging = int(((data.alerts["status"] == "firing") & (data.alerts["tier"] == "page")).sum()) if firing else 0
    req, w_req = _latest(data, "requests")
    err, w_err = _latest(data, "error_rate", "mean")
    p95, w_p95 = _latest(data, "latency_p95_ms", "max")
    up, w_up = _latest(data, "thumbs_up_rate", "mean")
    ground, w_g = _latest(data, "groundedness", "mean")
    auc, w_auc = _latest(data, "drift_auc_reference", "max")
    lag, w_lag = _latest(data, "index_lag_versions", "max")
    unsearch, w_un = _latest(data, "unsearchable_documents", "max")
    parts = [
        f'<div class="tile{" bad" if firing else " good"}"><div class="k">Alerts firing</div>'
        f'<div class="v">{firing}</div><div class="s">{paging} paging</div></div>',
        tile("Requests", req, "requests", w_req), tile("Error rate", err, "share", w_err, over("error_rate", err)),
        tile("Latency p95 (worst route)", p95, "ms", w_p95, over("latency_p95_ms", p95)),
        tile("Thumbs-up rate", up, "share", w_up, over("thumbs_up_rate", up)),
        tile("Groundedness", ground, "share", w_g, over("groundedness", ground)),
        tile("Drift AUC vs reference", auc, "AUC", w_auc, over("drift_auc_reference", auc)),
        tile("Index lag (versions)", lag, "versions", w_lag, None if lag is None else lag > 0),
        tile("Unsearchable documents", unsearch, "documents", w_un, None if unsearch is None else unsearch > 0),
    ]
    return f'<div class="tiles">{"".join(parts)}</div>'


def _cards(svgs: Sequence[str | None]) -> str:
    return "".join(f'<div class="card">{s}</div>' for s in svgs if s)


def _section(key: str, title: str, how: str, body: str) -> str:
    return f'<section id="{key}"><h2>{escape(title)}</h2><p class="how">{escape(how)}</p>{body}</section>'


def _header(data: ReportData) -> str:
    versions = " · ".join(f"{name} {'v' + str(v) if v is not None else 'missing'}"
                          for name, v in data.table_versions.items())
    run = data.run or {}
    last = (f" · last monitor run {_ts(run.get('started_at'))} UTC ({run.get('mode')}, {data.runs} runs)"
            if run else "")
    return (f'<header class="top"><h1>ragops monitoring</h1>'
            f'<div class="where">root <code>{escape(data.root)}</code> · {escape(data.location)} · generated '
            f'{escape(data.generated_at.strftime("%Y-%m-%d %H:%M:%S"))} UTC · window {escape(_duration(data.window))}'
            f"{escape(last)}</div>"
            f'<div class="lineage">read: {escape(versions)}</div></header>')


def _duration(td: pd.Timedelta) -> str:
    return format_value(td.total_seconds(), "s")


def _empty_body(data: ReportData) -> str:
    root = escape(data.root)
    log_v = data.table_versions.get("inference_log")
    traffic = ("<code>inference_log</code> has no table yet: serve answers first "
               f"(<code>ragops gateway --var root={root}</code>) and send a few requests."
               if log_v is None else f"<code>inference_log</code> is at version {log_v}: traffic is there.")
    return (f'<div class="empty"><h2>No monitoring data yet</h2>'
            f'<p class="how">The <code>monitoring_metrics</code> table is empty or missing, so there is nothing to '
            "plot. To fill it:</p><ol>"
            f"<li>{traffic}</li>"
            f"<li>Compute the metrics, drift, freshness and alerts: <code>{escape(NEXT_STEP)} --var root={root}</code></li>"
            f"<li>Render this page again: <code>ragops monitor report --var root={root}</code></li></ol></div>")


def render_html(data: ReportData) -> str:
    """The dashboard page (self-contained: inline SVG, one ``<style>``; no script, no external URL)."""
    parts = ["<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">",
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             f"<title>ragops monitoring · {escape(data.location)}</title><style>{REPORT_CSS}</style></head><body>",
             _header(data), "<main>"]
    if data.empty:
        parts.append(_empty_body(data))
        parts.append("</main></body></html>")
        return "".join(parts)
    parts.append(_tiles_html(data))
    parts.append(_section("alerts", "Recent alerts",
                          "Incidents from the alert rules, firing first, then cleared ones, newest first; the value "
                          "that fired each one and the latest value seen.", _alerts_html(data)))
    quality = _cards([_chart_svg(data, c, width=290) for c in QUALITY]) or \
        '<p class="muted">No quality metrics in these windows.</p>'
    freshness_kv = _kv_html(data.summary.get("freshness"))
    fresh = _cards([_chart_svg(data, c, width=290) for c in FRESHNESS])
    fresh_body = (fresh and f'<div class="charts">{fresh}</div>') + (
        f"<h3>Serving index now</h3>{freshness_kv}" if freshness_kv else "")
    parts.append(_section(
        "quality", "Model quality next to index freshness",
        "Left: how good the answers are (groundedness, thumbs-up rate, \u201cI don't know\u201d share, retrieval "
        "score). Right: how far the serving index is behind the embeddings table. A quality drop while the index "
        "lags is a stale index, not a worse model.",
        f'<div class="pair"><div><h3>Model quality</h3><div class="charts">{quality}</div></div>'
        f'<div><h3>Index freshness</h3>{fresh_body or "<p class=muted>No freshness metrics yet.</p>"}</div></div>'))
    rendered = {}
    for key, title, how, charts in SECTIONS:
        cards = _cards([_chart_svg(data, c) for c in charts])
        rendered[key] = _section(key, title, how, f'<div class="charts">{cards}</div>' if cards else
                                 '<p class="muted">No data for these metrics in these windows.</p>')
    parts.append(rendered.pop("traffic"))
    parts.append(f'<div class="duo">{rendered.pop("usage")}{rendered.pop("guardrails")}</div>')
    parts.extend(rendered.values())
    drift = data.summary.get("drift")
    drift_cards = _cards([_chart_svg(data, c) for c in DRIFT])
    drift_kv = _kv_html(drift if isinstance(drift, dict) else None, skip=("questions",))
    projection = _projection_svg(data)
    notes = "".join(f'<p class="note">{escape(n)}</p>' for n in data.notes)
    parts.append(_section(
        "drift", "Query drift",
        "A classifier tries to tell this window's queries from the reference eval set's (and from the previous "
        "window's): ROC AUC 0.5 = indistinguishable, the dashed red line = the drift threshold. Below, queries "
        "(orange) far from every grey corpus point ask about something the corpus does not cover.",
        (f'<div class="charts">{drift_cards}'
         + (f'<div class="card kv-card"><h3>Latest window</h3>{drift_kv}</div>' if drift_kv else "") + "</div>"
         if drift_cards or drift_kv else
         '<p class="muted">No drift statistic yet (windows need monitor_drift_min_queries queries).</p>')
        + (f'<div class="card projection">{projection}</div>' if projection else "") + notes))
    pipeline_cards = _cards([_chart_svg(data, c) for c in PIPELINE])
    parts.append(_section(
        "pipeline", "Pipeline health",
        "The latest run of each bundle job (failed first), and documents the ingestion rejected, by reason.",
        _pipeline_html(data) + (f'<div class="charts">{pipeline_cards}</div>' if pipeline_cards else "")))
    parts.append(f'<footer>{len(data.metrics)} metric rows over {data.metrics["window_start"].nunique()} windows'
                 f" · rendered by ragops.monitoring.report</footer>")
    parts.append("</main></body></html>")
    page = "".join(parts)
    if len(page.encode("utf-8")) > MAX_BYTES:
        log.warning("monitor report is %.1f MB (limit %.0f MB): lower max_windows", len(page) / 1e6, MAX_BYTES / 1e6)
    return page


def save_html(page: str, out_dir: str | Path) -> Path:
    """Write ``<out_dir>/monitor.html`` whole (a reader — a browser, a job's artifact upload — never
    sees half a page); returns its path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / REPORT_FILE
    tmp = path.with_suffix(".html.tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(path)
    return path


def write_report(lh, settings, out_dir: str | Path | None = None, **options: Any) -> Path:
    """Build and write ``<out_dir>/monitor.html`` (default ``<root>/reports/monitor/``); returns its path.
    ``options`` go to :func:`build_report` (``max_windows``, ``project_queries``)."""
    out = Path(out_dir) if out_dir is not None else Path(settings.root) / "reports" / "monitor"
    return save_html(render_html(build_report(lh, settings, **options)), out)


__all__ = ["REPORT_CSS", "REPORT_FILE", "REPORT_STYLE_HASH", "Projection", "ReportData", "build_report", "figures",
           "render_html", "save_html", "write_report"]
