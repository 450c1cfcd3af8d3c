"""The monitor job: one run folds what is new in production into ``monitoring_metrics``, raises and
clears ``alerts``, sends down-voted and corrected answers back to evaluation, and renders the dashboard.

Order of a run (:func:`run_monitor`):

1. **Watermark**: the last ``monitoring_runs`` row says up to which ``inference_log`` and
   ``feedback`` versions the previous run read. On Databricks with ``monitor_inference_table`` set,
   the serving endpoint's new inference-table rows are first mapped into ``inference_log``
   (:mod:`.databricks`), so everything below reads one schema.
2. **Traffic** (:mod:`.traffic`): only the rows committed after the watermark (change feed), merged
   into the stored aggregates of the windows they fall in.
3. **Drift** (:mod:`.drift`): for each window that got new queries, its most recent queries
   (``monitor_drift_sample``; the sample is kept in the metric's state, so an incremental run does not
   re-read the log) against the reference eval set's questions and the previous window's.
4. **Health** (:mod:`.health`): index freshness, the latest run of each bundle job, rejected
   documents — in the current window. Values that only grow with the clock (``job_age_s``,
   ``index_lag_s``) are judged every run but stored only when the run stores something else, so a
   second run over the same inputs writes nothing.
5. **Alerts** (:mod:`.alerts`): the rules of ``monitor_alerts`` over the windows just computed and
   the ones before them; fired and cleared incidents go to ``alerts`` and the webhook.
6. **The loop back**: down-voted and corrected answers become the eval set ``monitor_feedback_eval_set``
   (origin ``feedback``, tagged ``pending_review``): a new version only when they changed.
7. **Run record and dashboard**: a ``monitoring_runs`` row (when anything changed) and
   ``<root>/reports/monitor/monitor.html``.

The task (:mod:`ragops.jobs.monitor`) exits non-zero while a ``page``-tier alert is firing.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ragops.config import Settings
from ragops.lakehouse.schemas import utcnow
from ragops.monitoring.catalog import METRICS_TABLE, family, metrics_frame, read_metrics, window_bounds

log = logging.getLogger("ragops.monitoring")

ALERTS_TABLE, RUNS_TABLE = "alerts", "monitoring_runs"
#: Metrics whose value moves with the wall clock alone (judged every run, stored only alongside other writes).
CLOCK_METRICS = ("job_age_s", "index_lag_s")
#: The drift metric whose state keeps the window's query sample.
DRIFT_SAMPLE_METRIC = "drift_auc_reference"


@dataclass
class MonitorRun:
    run_id: str
    started_at: str
    mode: str = "unchanged"  # full | incremental | unchanged
    rows_read: int = 0
    windows: list[str] = field(default_factory=list)
    metrics_written: int = 0
    log_version: int | None = None
    feedback_version: int | None = None
    drift: list[dict[str, Any]] = field(default_factory=list)
    freshness: dict[str, Any] | None = None
    pipeline: list[dict[str, Any]] = field(default_factory=list)
    fired: list[dict[str, Any]] = field(default_factory=list)
    cleared: list[dict[str, Any]] = field(default_factory=list)
    firing: list[dict[str, Any]] = field(default_factory=list)
    feedback_candidates: dict[str, Any] | None = None
    report: str | None = None
    recorded: bool = False
    seconds: float = 0.0

    @property
    def paging(self) -> list[dict[str, Any]]:
        return [a for a in self.firing if a.get("tier") == "page"]

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self), default=str)) | {"paging": len(self.paging)}

    def format(self) -> str:
        """What a person reads in the task output."""
        lines = [f"monitor run {self.run_id}: {self.mode}, {self.rows_read} new rows read, "
                 f"{len(self.windows)} window(s) recomputed, {self.metrics_written} metric rows written "
                 f"(inference_log v{self.log_version}, feedback v{self.feedback_version}) in {self.seconds:.1f}s"]
        for d in self.drift:
            lines.append(f"  drift {d.get('window_start')}: AUC {d.get('statistic', float('nan')):.3f} "
                         f"(threshold {d.get('threshold', float('nan')):.3f}) → "
                         f"{'DRIFTED' if d.get('drifted') else 'ok'} over {d.get('n_current')} queries")
        if self.freshness:
            f = self.freshness
            lines.append(f"  index freshness: {f.get('lag_versions')} embeddings version(s) behind the serving "
                         f"snapshot ({f.get('serving')}), {f.get('unsearchable_documents')} document(s) not searchable")
        failed = [j for j in self.pipeline if j.get("status") == "failed"]
        if self.pipeline:
            lines.append(f"  pipeline: {len(self.pipeline)} job(s), {len(failed)} failed"
                         + (f" ({', '.join(j['job'] for j in failed)})" if failed else ""))
        for kind, rows in (("fired", self.fired), ("cleared", self.cleared)):
            for a in rows:
                lines.append(f"  alert {kind}: [{a.get('tier')}] {a.get('rule')} {a.get('route') or ''} "
                             f"{a.get('condition') or ''} (value {a.get('value') if kind == 'fired' else a.get('last_value')})")
        lines.append(f"  alerts firing: {len(self.firing)} ({len(self.paging)} page)")
        if self.feedback_candidates:
            c = self.feedback_candidates
            lines.append(f"  feedback → eval set {c['eval_set']} v{c['version']}: {c['questions']} candidate(s) "
                         f"pending review{' (new version)' if c.get('created') else ''}")
        if self.report:
            lines.append(f"  dashboard: {self.report}")
        return "\n".join(lines)


# --- watermark ----------------------------------------------------------------------------------

def last_run(lh) -> dict[str, Any] | None:
    """The latest ``monitoring_runs`` row (the watermark of the next run), or None."""
    if not lh.exists(RUNS_TABLE):
        return None
    runs = lh.read(RUNS_TABLE)
    if runs.empty:
        return None
    row = runs.sort_values(["started_at", "inference_log_version"], na_position="first").iloc[-1].to_dict()
    return {k: (None if _missing(v) else v) for k, v in row.items()}


def _missing(value: Any) -> bool:
    try:
        return value is None or bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _int(value: Any) -> int | None:
    return None if _missing(value) else int(value)


# --- stored metrics -----------------------------------------------------------------------------

def _stored(lh, window_starts: list[pd.Timestamp], metrics: list[str] | None = None) -> pd.DataFrame:
    """Stored ``monitoring_metrics`` rows of the given windows (optionally only some metrics)."""
    frame = read_metrics(lh, window_starts)
    if metrics is not None and not frame.empty:
        frame = frame[frame["metric"].isin(metrics)]
    return frame


def _same(new: pd.DataFrame, stored: pd.DataFrame) -> pd.Series:
    """For each row of ``new``: does ``stored`` hold the same value and count under the same key?"""
    if new.empty or stored.empty:
        return pd.Series(False, index=new.index)
    keys = ["window_start", "route", "model_version", "metric"]
    merged = new[keys + ["value", "count"]].merge(stored[keys + ["value", "count"]], on=keys, how="left",
                                                  suffixes=("", "_old"), indicator=True)
    value_same = (merged["value"] == merged["value_old"]) | (merged["value"].isna() & merged["value_old"].isna())
    count_same = (merged["count"].astype("float64") == merged["count_old"].astype("float64")) | (
        merged["count"].isna() & merged["count_old"].isna())
    same = (merged["_merge"] == "both") & value_same & count_same
    return pd.Series(same.to_numpy(), index=new.index)


def _concat(*frames: pd.DataFrame) -> pd.DataFrame:
    """Metric frames stacked, their timestamps one dtype again (an empty frame's unit differs)."""
    parts = [f for f in frames if f is not None and not f.empty]
    if not parts:
        return metrics_frame([])
    out = pd.concat(parts, ignore_index=True)
    for col in ("window_start", "window_end", "computed_at"):
        out[col] = pd.to_datetime(out[col], utc=True)
    return out


# --- drift --------------------------------------------------------------------------------------

def _drift_rows(lh, settings: Settings, questions: pd.DataFrame, window_s: int) -> tuple[list[dict], list[dict]]:
    """Drift rows for every window with new queries; the window's query sample rides in the state."""
    from ragops.monitoring.drift import drift_metrics

    cfg = settings.monitoring
    if questions is None or questions.empty or cfg.drift_sample == 0:
        return [], []
    q = questions.dropna(subset=["question"])
    q = q[q["question"].astype(str).str.strip() != ""]
    if q.empty:
        return [], []
    q = q.assign(window_start=window_bounds(pd.to_datetime(q["timestamp"], utc=True), window_s))
    windows = sorted(q["window_start"].unique())
    width = pd.Timedelta(seconds=window_s)
    previous_starts = [pd.Timestamp(w) - width for w in windows]
    stored = _stored(lh, sorted({*map(pd.Timestamp, windows), *previous_starts}), [DRIFT_SAMPLE_METRIC])
    samples: dict[pd.Timestamp, list[str]] = {}
    for rec in stored.to_dict("records"):
        state = json.loads(rec["state"]) if isinstance(rec.get("state"), str) else {}
        samples[pd.Timestamp(rec["window_start"])] = list(state.get("questions") or [])
    rows, results = [], []
    for w in windows:
        w = pd.Timestamp(w)
        new = q[q["window_start"] == w].sort_values("timestamp")["question"].astype(str).tolist()
        sample = (samples.get(w, []) + new)[-cfg.drift_sample:]
        samples[w] = sample
        produced = drift_metrics(lh, settings, window_start=w, window_end=w + width, current=sample,
                                 previous=samples.get(w - width, []))
        for row in produced:
            if row["metric"] == DRIFT_SAMPLE_METRIC:
                state = json.loads(row["state"]) if row.get("state") else {}
                results.append({"window_start": str(w), **state})
                state["questions"] = sample
                row["state"] = json.dumps(state, separators=(",", ":"), sort_keys=True)
        rows.extend(produced)
    return rows, results


# --- health -------------------------------------------------------------------------------------

def _health_rows(lh, settings: Settings, now: pd.Timestamp, window_s: int, runs_dir: Path | None):
    from ragops.monitoring.health import (
        freshness_metrics,
        index_freshness,
        pipeline_health,
        pipeline_metrics,
        rejected_metrics,
    )

    start = window_bounds(now, window_s)
    end = start + pd.Timedelta(seconds=window_s)
    freshness = index_freshness(lh, settings, now=now)
    jobs = pipeline_health(settings, runs_dir=runs_dir)
    rows = [*freshness_metrics(freshness, window_start=start, window_end=end),
            *pipeline_metrics(jobs, window_start=start, window_end=end, now=now),
            *rejected_metrics(lh, window_start=start, window_end=end)]
    return rows, freshness.to_dict(), [j.to_dict() for j in jobs]


# --- the loop back ------------------------------------------------------------------------------

def feedback_candidates(lh, settings: Settings) -> dict[str, Any] | None:
    """Down-voted and corrected answers → the eval set ``monitor_feedback_eval_set``, pending review.

    A corrected answer becomes the expected answer; a down-vote without a correction has none yet (a
    reviewer writes it). Registered only when the candidates changed (content hash), so re-runs add
    no version. None when there is nothing to send back."""
    from ragops.evaluation.eval_sets.sources import rated_requests
    from ragops.evaluation.eval_sets.store import register_eval_set

    rows = []
    for r in rated_requests(lh):
        if not r.rejected:
            continue
        rows.append({
            "question_id": f"fb-{r.request_id}", "question": r.question,
            "expected_answers": [r.corrected] if r.corrected else [], "expected_doc_ids": [],
            "tags": ["feedback", "pending_review", "corrected" if r.corrected else "downvoted"],
        })
    if not rows:
        return None
    name = settings.monitoring.feedback_eval_set
    version = register_eval_set(lh, name, pd.DataFrame(rows), origin="feedback")
    return {"eval_set": name, "version": version.version, "questions": version.rows,
            "created": version.created}


# --- the run ------------------------------------------------------------------------------------

def run_monitor(lh, settings: Settings, *, now: pd.Timestamp | None = None, runs_dir: Path | None = None,
                report: bool = True) -> MonitorRun:
    """One monitor run (see the module docstring). ``now`` fixes the clock (tests); ``runs_dir`` is
    where the local bundle runner's run records are (default: ``monitor_jobs_root``, else
    ``<cwd>/.ragops/runs``)."""
    from ragops.monitoring.alerts import load_alert_rules, sync_alerts
    from ragops.monitoring.traffic import update_traffic

    t0 = time.perf_counter()
    now = pd.Timestamp(now) if now is not None else utcnow()
    now = now.tz_localize("UTC") if now.tzinfo is None else now.tz_convert("UTC")
    run = MonitorRun(run_id=uuid.uuid4().hex[:12], started_at=now.isoformat())
    window_s = settings.monitoring.window_seconds
    rules = load_alert_rules(settings.monitoring.alerts)  # a broken rules file fails before any write
    lh.ensure_tables([METRICS_TABLE, ALERTS_TABLE, RUNS_TABLE])
    previous = last_run(lh) or {}

    if settings.monitoring.inference_table:
        from ragops.monitoring.databricks import sync_inference_table

        copied = sync_inference_table(lh, settings)
        log.info("monitor: %d new row(s) from the inference table %s", copied, settings.monitoring.inference_table)

    update = update_traffic(lh, settings, since_log_version=_int(previous.get("inference_log_version")),
                            since_feedback_version=_int(previous.get("feedback_version")))
    run.mode, run.rows_read = update.mode, update.rows_read
    run.log_version, run.feedback_version = update.log_version, update.feedback_version
    run.windows = [str(w) for w in update.windows]
    log.info("monitor: %s, %d row(s) read, %d window(s)", update.mode, update.rows_read, len(update.windows))

    drift_rows, run.drift = _drift_rows(lh, settings, update.questions, window_s)
    health_rows, run.freshness, run.pipeline = _health_rows(lh, settings, now, window_s, runs_dir)

    new = _concat(update.metrics, metrics_frame(drift_rows))
    health = metrics_frame(health_rows)
    if not health.empty:
        clock = health["metric"].map(family).isin(CLOCK_METRICS)
        stored_health = _stored(lh, sorted(set(health["window_start"])))
        new = _concat(new, health[~clock & ~_same(health, stored_health)])
        if not new.empty:  # stored alongside other writes only
            new = _concat(new, health[clock])
    if not new.empty:
        new = new.drop_duplicates(["window_start", "route", "model_version", "metric"], keep="last")
        lh.upsert(METRICS_TABLE, new)
    run.metrics_written = len(new)

    # Alerts judge the latest windows against their predecessors (for_windows) and the health rows of now.
    lookback = rules.lookback
    judged_windows = sorted({pd.Timestamp(w) for w in new["window_start"]} if not new.empty else set())
    earlier = sorted({w - pd.Timedelta(seconds=window_s * i) for w in judged_windows for i in range(1, lookback)})
    judged = _concat(_stored(lh, [w for w in earlier if w not in judged_windows]), new, health)
    judged = judged.drop_duplicates(["window_start", "route", "model_version", "metric"], keep="last")
    changes = sync_alerts(lh, settings, judged, now=now, rules=rules)
    run.fired, run.cleared, run.firing = changes.fired, changes.cleared, changes.firing

    if update.mode != "unchanged":
        run.feedback_candidates = feedback_candidates(lh, settings)

    run.seconds = round(time.perf_counter() - t0, 2)
    if run.metrics_written or run.fired or run.cleared or update.mode != "unchanged":
        summary = {"drift": run.drift[-1] if run.drift else None, "drift_windows": run.drift,
                   "freshness": run.freshness, "pipeline": run.pipeline,
                   "alerts": {"fired": len(run.fired), "cleared": len(run.cleared), "firing": len(run.firing),
                              "paging": len(run.paging)},
                   "feedback_candidates": run.feedback_candidates}
        lh.upsert(RUNS_TABLE, pd.DataFrame([{
            "run_id": run.run_id, "started_at": now.floor("us"), "seconds": run.seconds, "mode": run.mode,
            "inference_log_version": update.log_version, "feedback_version": update.feedback_version,
            "rows_read": int(update.rows_read), "windows": len(update.windows),
            "metrics_written": int(run.metrics_written), "alerts_firing": len(run.firing),
            "summary": json.dumps(summary, default=str, separators=(",", ":")),
        }]).astype({"inference_log_version": "Int64", "feedback_version": "Int64"}))
        run.recorded = True
    if report:
        from ragops.monitoring.report import write_report

        run.report = str(write_report(lh, settings, settings.root / "reports" / "monitor"))
    run.seconds = round(time.perf_counter() - t0, 2)
    return run


__all__ = ["MonitorRun", "feedback_candidates", "last_run", "run_monitor"]
