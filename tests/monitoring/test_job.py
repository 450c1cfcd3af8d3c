"""The monitor job end to end, run hourly over synthetic traffic with problems injected one window at a
time — a latency spike, an error burst, drifted queries — on top of a stale index (a document ingested
and embedded but not synced) and a failed bundle job: each is detected and alerted, clears when it
stops, a quiet window raises nothing, and a second run over the same rows writes nothing new.

Real everything: Delta tables under tmp_path, the sample pipeline (ingest → chunk → embed → index), the
real embedder for drift, the real alert rules parser and a webhook receiver on 127.0.0.1.
"""

from __future__ import annotations

import json
import shutil
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pandas as pd
import pytest

from ragops.config import Settings, SettingsError
from tests.conftest import SAMPLE, copy_corpus, run_pipeline

START = pd.Timestamp("2026-06-01 06:00", tz="UTC")
HOUR = pd.Timedelta(hours=1)
#: A sample-corpus document that is not in the small corpus the index is built from.
LATE_DOCUMENT = "alerting.md"

# What users of the sample corpus ask (the reference and the quiet traffic) ...
_ASKS = ["Which port does the {} listen on?", "How do I configure {}?", "What is the retention period of {}?",
         "Why does {} fail after an upgrade?", "How long does support take to answer about {}?",
         "Where are the logs of {} written?", "Can {} run behind a proxy?", "What changed in {} in release 4.0?"]
_THINGS = ["the collector", "the OTLP receiver", "the ingest service", "trace storage", "the metrics pipeline",
           "disk usage alerts", "the agent", "log retention", "the gRPC endpoint", "TLS for the collector",
           "the query service", "the dashboard", "sampling", "the support SLA", "the exporter"]
# ... and what drifted traffic asks instead (another corpus altogether).
_DRIFT = ["How many minutes should I {} {}?", "What wine goes with {} {}?", "Can I freeze {} {}?"]
_FOOD = [("boil", "pasta"), ("roast", "chicken"), ("bake", "sourdough bread"), ("grill", "salmon"),
         ("steam", "broccoli"), ("fry", "eggs"), ("braise", "short ribs"), ("poach", "pears")]

ALERTS_YML = """
page:
  - {metric: job_failed:*, above: 0.5}
  - {metric: latency_p95_ms, above: 5000, min_count: 20}
  - {metric: error_rate, above: 0.2, min_count: 20}
warn:
  - {metric: drift_detected, above: 0.5}
  - {metric: unsearchable_documents, above: 0}
"""


def questions(kind: str, n: int, seed: int) -> list[str]:
    import random

    rng = random.Random(seed)
    if kind == "reference":
        return [rng.choice(_ASKS).format(rng.choice(_THINGS)) for _ in range(n)]
    return [rng.choice(_DRIFT).format(*rng.choice(_FOOD)) for _ in range(n)]


class Receiver:
    """A webhook receiver on 127.0.0.1 that records the JSON bodies it is sent."""

    def __init__(self) -> None:
        received = self.received = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def write_failed_run(runs_dir: Path) -> None:
    run = runs_dir / "ingest_job" / "abc123"
    run.mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({
        "job": "ingest_job", "target": "local", "run_id": "abc123", "parameters": {}, "seconds": 12.5,
        "tasks": [{"task_key": "ingest", "status": "succeeded", "seconds": 3.0, "summary": None, "error": "",
                   "output_notebook": ""},
                  {"task_key": "embed", "status": "failed", "seconds": 9.5, "summary": None,
                   "error": "EmbeddingError: model not found", "output_notebook": ""}]}))


def versions(lh) -> dict[str, int | None]:
    return {t: lh.version(t) for t in ("monitoring_metrics", "alerts", "monitoring_runs", "eval_sets")}


def hour_of_traffic(window: int, *, seed: int, problems=(), n: int = 120) -> pd.DataFrame:
    from ragops.monitoring.simulate import synthetic_log

    return synthetic_log(n, start=START + window * HOUR, window_seconds=3600, windows=1, seed=seed,
                         questions=questions("reference", 400, seed), problems=list(problems))


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_hourly_runs_detect_alert_and_clear_each_injected_problem(tmp_path):
    from ragops.evaluation.eval_sets.store import read_eval_set, register_eval_set
    from ragops.lakehouse import open_lakehouse
    from ragops.monitoring.job import run_monitor
    from ragops.monitoring.simulate import DriftedQueries, ErrorBurst, LatencySpike, synthetic_feedback

    corpus = copy_corpus(tmp_path / "corpus")
    alerts = tmp_path / "alerts.yml"
    alerts.write_text(ALERTS_YML)
    runs_dir = tmp_path / "runs"
    write_failed_run(runs_dir)
    with Receiver() as hook:
        settings = Settings.from_variables({
            "root": str(tmp_path / "state"), "source_path": str(corpus), "monitor_alerts": str(alerts),
            "monitor_webhook": hook.url, "monitor_jobs_root": str(runs_dir), "monitor_groundedness_sample": "5",
            "monitor_prices": "*=0.002"})
        run_pipeline(settings)
        # a stale index: one more document ingested and embedded, the index not synced
        shutil.copy(SAMPLE / "guides" / LATE_DOCUMENT, corpus / "guides" / LATE_DOCUMENT)
        from ragops.chunking import run_chunking
        from ragops.embedding.embed import run_embedding
        from ragops.ingest import run_ingest

        with open_lakehouse(settings) as lh:
            run_ingest(lh, settings)
            run_chunking(lh, settings)
            run_embedding(lh, settings)
            reference = pd.DataFrame({"question_id": [f"r{i}" for i in range(300)],
                                      "question": questions("reference", 300, seed=99)})
            register_eval_set(lh, "sample", reference)

            problems = {2: [LatencySpike(0, 20.0)], 3: [ErrorBurst(0, 0.5)],
                        4: [DriftedQueries(0, questions("drift", 200, seed=5), 0.5)]}
            runs = []
            for window in range(6):
                traffic = hour_of_traffic(window, seed=window, problems=problems.get(window, ()))
                lh.upsert("inference_log", traffic)
                if window == 1:
                    lh.upsert("feedback", synthetic_feedback(traffic, share=0.2, up_rate=0.5, seed=1,
                                                             corrected_share=0.3))
                runs.append(run_monitor(lh, settings, now=START + (window + 1) * HOUR + pd.Timedelta(minutes=5)))

            fired = {(i, a["metric"]) for i, r in enumerate(runs) for a in r.fired}
            cleared = {(i, a["metric"]) for i, r in enumerate(runs) for a in r.cleared}
            # the failed job and the stale index are there from the first run on, and stay
            assert (0, "job_failed:ingest_job") in fired and (0, "unsearchable_documents") in fired
            assert runs[0].paging and runs[0].freshness["unsearchable_documents"] >= 1
            # quiet hours raise nothing about traffic
            traffic_metrics = {"latency_p95_ms", "error_rate", "drift_detected"}
            assert not {m for i, m in fired if i in (0, 1) and m in traffic_metrics}
            # each injected problem fires in its hour and clears the hour after
            assert (2, "latency_p95_ms") in fired and (3, "latency_p95_ms") in cleared
            assert (3, "error_rate") in fired and (4, "error_rate") in cleared
            assert (4, "drift_detected") in fired and (5, "drift_detected") in cleared
            assert not {m for i, m in fired if i == 5 and m in traffic_metrics}
            drifted = [d for d in runs[4].drift if d["window_start"] == str(START + 4 * HOUR)]
            assert drifted and drifted[0]["drifted"]

            table = lh.read("alerts")
            latency = table[table["metric"] == "latency_p95_ms"]
            assert len(latency) == 1 and latency.iloc[0]["status"] == "cleared"
            assert latency.iloc[0]["fired_at"] < latency.iloc[0]["cleared_at"]
            assert set(table[table["status"] == "firing"]["metric"]) == {"job_failed:ingest_job",
                                                                          "unsearchable_documents"}
            # the webhook heard every firing and clearing
            sent = [a for body in hook.received for a in body.get("fired", [])]
            assert {"latency_p95_ms", "error_rate", "drift_detected"} <= {a["metric"] for a in sent}
            assert any(body.get("cleared") for body in hook.received)

            # metrics of the spike hour: per route and model version, from the rows of that hour only
            m = lh.read("monitoring_metrics")
            spike = m[(m["window_start"] == START + 2 * HOUR) & (m["metric"] == "latency_p95_ms")]
            calm = m[(m["window_start"] == START + 1 * HOUR) & (m["metric"] == "latency_p95_ms")]
            assert spike["value"].min() > 5 * calm["value"].max()
            assert set(m["metric"]) >= {"requests", "error_rate", "latency_p50_ms", "cost_usd", "thumbs_up_rate",
                                        "drift_auc_reference", "drift_detected", "index_lag_versions",
                                        "job_failed:ingest_job"}

            # the loop back: rejected answers wait for review in their eval set
            candidates = read_eval_set(lh, settings.monitoring.feedback_eval_set)
            assert len(candidates) >= 1
            assert all("pending_review" in list(t) for t in candidates.frame["tags"])
            assert set(candidates.frame["origin"]) == {"feedback"}
            corrected = candidates.frame[[("corrected" in list(t)) for t in candidates.frame["tags"]]]
            assert len(corrected) and all(len(a) == 1 for a in corrected["expected_answers"])

            # a second run over the same rows writes nothing new
            before = versions(lh)
            again = run_monitor(lh, settings, now=START + 6 * HOUR + pd.Timedelta(minutes=5))
            assert again.mode == "unchanged" and again.metrics_written == 0 and not again.fired
            assert versions(lh) == before
            assert Path(again.report).is_file()


def test_a_quiet_day_raises_nothing_and_rerunning_writes_nothing(tmp_path):
    from ragops.lakehouse import open_lakehouse
    from ragops.monitoring.job import run_monitor

    alerts = tmp_path / "alerts.yml"
    alerts.write_text(ALERTS_YML)
    settings = Settings.from_variables({"root": str(tmp_path / "state"), "monitor_alerts": str(alerts),
                                        "monitor_jobs_root": str(tmp_path / "no-runs"), "monitor_drift_sample": "0"})
    with open_lakehouse(settings) as lh:
        lh.upsert("inference_log", pd.concat([hour_of_traffic(w, seed=w) for w in range(3)], ignore_index=True))
        now = START + 3 * HOUR + pd.Timedelta(minutes=5)
        first = run_monitor(lh, settings, now=now, report=False)
        assert first.mode == "full" and first.rows_read == 360 and first.metrics_written > 0
        assert not first.fired and not first.firing
        before = versions(lh)
        second = run_monitor(lh, settings, now=now, report=False)
        assert second.mode == "unchanged" and second.metrics_written == 0 and not second.recorded
        assert versions(lh) == before
        # new traffic is read incrementally: only its rows
        lh.upsert("inference_log", hour_of_traffic(3, seed=3, n=40))
        third = run_monitor(lh, settings, now=now + HOUR, report=False)
        assert third.mode == "incremental" and third.rows_read == 40


def test_a_broken_alert_file_fails_the_run_before_anything_is_written(tmp_path):
    from ragops.lakehouse import open_lakehouse
    from ragops.monitoring.alerts import AlertRulesError
    from ragops.monitoring.job import run_monitor

    bad = tmp_path / "alerts.yml"
    bad.write_text("page:\n  - {metric: latency_p95, above: 10}\n")
    settings = Settings.from_variables({"root": str(tmp_path / "state"), "monitor_alerts": str(bad)})
    with open_lakehouse(settings) as lh:
        lh.upsert("inference_log", hour_of_traffic(0, seed=0, n=30))
        with pytest.raises(AlertRulesError, match="latency_p95"):
            run_monitor(lh, settings, report=False)
        assert not lh.exists("monitoring_metrics") or lh.read("monitoring_metrics").empty


@pytest.mark.parametrize(("variable", "value", "message"), [
    ("monitor_window", "soon", "duration"),
    ("monitor_window", "-1h", "positive"),
    ("monitor_prices", "rag_chain:0.002", "route=price"),
    ("monitor_prices", "rag_chain=-1", "route=price"),
    ("monitor_drift_sample", "-5", "0 or more"),
])
def test_monitor_settings_name_what_is_wrong(variable, value, message):
    with pytest.raises(SettingsError, match=message):
        Settings.from_variables({variable: value})


@pytest.mark.slow
def test_bundle_run_monitor_job_fails_while_a_page_alert_fires_and_passes_once_it_clears(tmp_path):
    """``ragops bundle run monitor_job`` as a user runs it (a real CLI process): a failed bundle job pages,
    so the run fails with the alert named; once that job's latest run succeeded, the alert clears."""
    import os
    import subprocess
    import sys

    from ragops.lakehouse import open_lakehouse
    from tests.conftest import REPO

    alerts = tmp_path / "alerts.yml"
    alerts.write_text(ALERTS_YML)
    runs_dir = tmp_path / "runs"
    write_failed_run(runs_dir)
    root = tmp_path / "state"
    with open_lakehouse(Settings.from_variables({"root": str(root)})) as lh:
        lh.upsert("inference_log", hour_of_traffic(0, seed=0, n=60))

    def monitor_job() -> subprocess.CompletedProcess:
        ragops = str(Path(sys.executable).with_name("ragops"))
        return subprocess.run([ragops, "bundle", "run", "monitor_job", "--var", f"root={root}",
                               "--var", f"monitor_alerts={alerts}", "--var", f"monitor_jobs_root={runs_dir}",
                               "--var", "monitor_drift_sample=0", "--json"],
                              cwd=REPO, capture_output=True, text=True, timeout=300,
                              env={**os.environ, "RAGOPS_PROGRESS": "0"})

    failing = monitor_job()
    assert failing.returncode != 0
    task = json.loads(failing.stdout.strip().splitlines()[-1])["tasks"][0]
    assert task["status"] == "failed" and "page alert" in task["error"] and "job_failed" in task["error"]

    # the ingest job ran again and succeeded: the next monitor run clears the page and passes
    record = runs_dir / "ingest_job" / "abc123" / "run.json"
    run = json.loads(record.read_text())
    for t in run["tasks"]:
        t["status"], t["error"] = "succeeded", ""
    (runs_dir / "ingest_job" / "def456").mkdir()
    (runs_dir / "ingest_job" / "def456" / "run.json").write_text(json.dumps({**run, "run_id": "def456"}))
    passing = monitor_job()
    assert passing.returncode == 0, passing.stderr[-2000:]
    with open_lakehouse(Settings.from_variables({"root": str(root)})) as lh:
        incidents = lh.read("alerts")
    job_alert = incidents[incidents["metric"] == "job_failed:ingest_job"]
    assert list(job_alert["status"]) == ["cleared"] and job_alert["cleared_at"].notna().all()
