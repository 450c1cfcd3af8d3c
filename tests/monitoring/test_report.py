"""The monitoring dashboard: real Delta tables on tmp_path (metric rows over 12 windows for two routes
with a latency spike and rising drift, alerts firing and cleared, a monitor run's summary) rendered
to one self-contained page; the empty page says what to run; ``ragops monitor report`` writes it;
the gateway serves it behind auth at ``/v1/monitor/report`` and shows it at ``/monitor`` in a real
headless Chromium (the frame loads, the SVG plots render, the console has no error — a CSP
violation would be one). Screenshots: ``tmp_path`` and ``/tmp/monitor-report.png``,
``/tmp/monitor-gateway.png``.
"""

from __future__ import annotations

import contextlib
import json
import re
from functools import partial
from pathlib import Path
from xml.dom import minidom

import httpx
import numpy as np
import pandas as pd
import pytest

from ragops.config import Settings
from ragops.lakehouse import open_lakehouse
from ragops.lakehouse.schemas import empty_frame
from ragops.monitoring.catalog import metric_row, metrics_frame
from ragops.monitoring.report import REPORT_FILE, build_report, figures, render_html, write_report

WINDOWS = 12
START = pd.Timestamp("2026-11-30 08:00", tz="UTC")
ROUTES = (("rag_chain", "3"), ("rag_fast", "1"))
SPIKE = 8  # the window where rag_chain's latency spikes
SECTION_TITLES = ("Recent alerts", "Model quality next to index freshness", "Traffic and latency",
                  "Token usage and cost", "Guardrails", "Query drift", "Pipeline health")


def _row(ws, we, requests: int, route: str, version: str, metric: str, value: float, count: int | None = None):
    return metric_row(ws, we, metric, value, requests if count is None else count, route=route,
                      model_version=version)


def _metric_rows() -> list[dict]:
    rng = np.random.default_rng(7)
    rows = []
    for i in range(WINDOWS):
        ws, we = START + pd.Timedelta(hours=i), START + pd.Timedelta(hours=i + 1)
        for r, (route, version) in enumerate(ROUTES):
            n = int(200 - 60 * r + rng.integers(-20, 20))
            slow = 6.0 if (route == "rag_chain" and i == SPIKE) else 1.0
            base = 420 + 300 * r
            row = partial(_row, ws, we, n, route, version)
            rows += [row("requests", n), row("error_rate", 0.01 + 0.02 * r + (0.15 if slow > 1 else 0)),
                     row("error_rate:timeout", 0.005 + (0.12 if slow > 1 else 0)), row("error_rate:error", 0.01),
                     row("latency_p50_ms", base * slow ** 0.5), row("latency_p95_ms", base * 2.4 * slow),
                     row("latency_p99_ms", base * 3.5 * slow), row("ttft_p50_ms", 120 + 40 * r),
                     row("ttft_p95_ms", 300 + 80 * r), row("tokens_per_s", 38 - 10 * r - (20 if slow > 1 else 0)),
                     row("prompt_tokens", n * 900), row("completion_tokens", n * 120),
                     row("cost_usd", n * 1.02 * 0.002), row("feedback_count", 12 + r, 12 + r),
                     row("thumbs_up_rate", 0.82 - 0.1 * r - (0.3 if slow > 1 else 0), 12 + r),
                     row("guardrail_block_rate:pii", 0.02 + 0.01 * r), row("guardrail_block_rate:injection", 0.005),
                     row("retrieval_score_p10", 0.41 - 0.02 * i / WINDOWS), row("retrieval_score_p50", 0.63),
                     row("retrieval_score_mean", 0.6), row("groundedness", 0.9 - 0.04 * r, 50),
                     row("dont_know_rate", 0.06 + 0.02 * r)]
        drift = 0.52 + (0.3 if i >= WINDOWS - 3 else 0.0) + rng.normal(0, 0.01)
        rows += [metric_row(ws, we, "drift_auc_reference", drift, 400), metric_row(ws, we, "drift_auc_previous", 0.51, 400),
                 metric_row(ws, we, "drift_outlier_share", 0.05 + (0.2 if i >= WINDOWS - 3 else 0), 400),
                 metric_row(ws, we, "index_lag_versions", 0 if i < 9 else i - 8),
                 metric_row(ws, we, "index_lag_s", 0 if i < 9 else 3600 * (i - 8)),
                 metric_row(ws, we, "unsearchable_documents", 0 if i < 9 else 3 * (i - 8)),
                 metric_row(ws, we, "job_failed:ingest_job", 1.0 if i == WINDOWS - 1 else 0.0),
                 metric_row(ws, we, "job_duration_s:ingest_job", 60 + 5 * i),
                 metric_row(ws, we, "rejected_documents:empty", float(i % 3))]
    return rows


def _alert(alert_id: str, rule: str, tier: str, metric: str, status: str, value: float, last: float,
           threshold: float, fired: pd.Timestamp, cleared: pd.Timestamp | None, route: str = "rag_chain") -> dict:
    return {"alert_id": alert_id, "rule": rule, "tier": tier, "metric": metric, "route": route,
            "model_version": "3" if route else "", "status": status, "condition": f"{metric} > {threshold:g}",
            "value": value, "last_value": last, "threshold": threshold,
            "message": f"{metric} = {value:g} > {threshold:g}", "window_start": fired.floor("h"),
            "fired_at": fired, "cleared_at": cleared, "notified": None}


def populate(settings: Settings, *, with_embeddings: bool = True) -> None:
    lh = open_lakehouse(settings)
    lh.ensure_tables(["monitoring_metrics", "alerts", "monitoring_runs"])
    lh.upsert("monitoring_metrics", metrics_frame(_metric_rows()))
    spike = START + pd.Timedelta(hours=SPIKE, minutes=59)
    last = START + pd.Timedelta(hours=WINDOWS, minutes=1)
    alerts = pd.DataFrame([
        _alert("a1", "latency_p95_ms > 2000", "page", "latency_p95_ms", "cleared", 6048, 1008, 2000, spike,
               spike + pd.Timedelta(hours=1)),
        _alert("a2", "drift_auc_reference > 0.7", "warn", "drift_auc_reference", "firing", 0.82, 0.83, 0.7,
               last - pd.Timedelta(hours=3), None, route=""),
        _alert("a3", "job_failed:ingest_job > 0", "page", "job_failed:ingest_job", "firing", 1, 1, 0, last, None,
               route=""),
    ])
    for col in ("window_start", "fired_at", "cleared_at"):
        alerts[col] = pd.to_datetime(alerts[col], utc=True)
    lh.upsert("alerts", alerts)
    summary = {
        "drift": {"window_start": str(last.floor("h")), "statistic": 0.83, "threshold": 0.7, "drifted": True,
                  "n_current": 400, "n_reference": 300},
        "freshness": {"serving": "snap-2026-11-30T17", "embeddings_version": 14, "serving_version": 11,
                      "lag_versions": 3, "lag_s": 10800.0, "unsearchable_documents": 9},
        "pipeline": [{"job": "ingest_job", "started_at": str(last - pd.Timedelta(minutes=20)), "status": "failed",
                      "duration_s": 115.0, "failed_tasks": ["embed"]},
                     {"job": "evaluate_job", "started_at": str(last - pd.Timedelta(hours=2)), "status": "succeeded",
                      "duration_s": 340.0, "failed_tasks": []}],
        "alerts": {"fired": 1, "cleared": 0, "firing": 2, "paging": 1},
    }
    lh.upsert("monitoring_runs", pd.DataFrame([{
        "run_id": "r1", "started_at": last, "seconds": 4.2, "mode": "incremental", "inference_log_version": 7,
        "feedback_version": 2, "rows_read": 300, "windows": 1, "metrics_written": 80, "alerts_firing": 2,
        "summary": json.dumps(summary)}]).astype({"inference_log_version": "Int64", "feedback_version": "Int64"}))
    if with_embeddings:
        _embeddings_and_queries(lh)


def _embeddings_and_queries(lh) -> None:
    """Corpus vectors in two clusters and logged questions (the projection's inputs)."""
    rng = np.random.default_rng(3)
    centers = rng.normal(size=(2, 384))
    vectors = np.vstack([c + 0.3 * rng.normal(size=(40, 384)) for c in centers]).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    lh.ensure_table("embeddings")
    lh.upsert("embeddings", pd.DataFrame({
        "chunk_id": [f"c{i}" for i in range(len(vectors))], "doc_id": [f"d{i // 4}" for i in range(len(vectors))],
        "content_hash": "h", "text": "some text", "title": [f"Doc {i // 4}" for i in range(len(vectors))],
        "source_uri": "guides/x.md", "section": "", "model": "all-MiniLM-L6-v2",
        "dimension": np.int32(384), "vector": list(vectors), "embedded_at": pd.Timestamp("2026-11-30", tz="UTC")}))
    lh.ensure_table("inference_log")
    questions = ["How long are metrics retained?", "Which port does the collector listen on?",
                 "What is the SLA for P1 tickets?", "What is the capital of France?", "<script>alert(1)</script>"]
    n = len(questions)
    log = pd.DataFrame({
        "request_id": [f"req-{i}" for i in range(n)], "shadow": False,
        "timestamp": [START + pd.Timedelta(hours=WINDOWS - 1, minutes=i) for i in range(n)],
        "route": "rag_chain", "question": questions, "answer": "…", "status": "ok"})
    for col in empty_frame("inference_log").columns.difference(log.columns):
        log[col] = pd.Series([None] * n, dtype=object)
    log["timestamp"] = pd.to_datetime(log["timestamp"], utc=True)
    lh.upsert("inference_log", log)


def make_settings(tmp_path: Path) -> Settings:
    return Settings.from_variables({"root": str(tmp_path / "state")})


def test_the_page_is_self_contained_and_shows_every_section(tmp_path):
    settings = make_settings(tmp_path)
    populate(settings)
    lh = open_lakehouse(settings)
    data = build_report(lh, settings, project_queries=True)
    page = render_html(data)
    size = len(page.encode("utf-8"))
    assert size < 2 * 1024 * 1024
    assert not re.search(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", page), "the page fetches something"
    assert "<script" not in page.replace("&lt;script&gt;", "")  # the logged question is shown escaped, never run
    assert " style=" not in page  # the gateway's CSP allows the <style> block by hash, no style attributes
    for title in SECTION_TITLES:
        assert f">{title}</h2>" in page, title
    # title line: root, catalog.schema and the versions of the tables read
    assert str(settings.root) in page and "main.ragops" in page
    assert f"monitoring_metrics v{lh.version('monitoring_metrics')}" in page and "alerts v" in page
    svgs = figures(data)
    assert page.count("<svg") >= 20 and len(svgs) >= 20
    for key, svg in svgs.items():  # well-formed XML: what IPython.display.SVG (notebook 08) parses
        assert minidom.parseString(svg).documentElement.tagName == "svg", key
    # two routes, the spike's 6x latency, a threshold line from the run's drift summary
    assert "rag_chain v3" in svgs["latency_p95_ms"] and "rag_fast v1" in svgs["latency_p95_ms"]
    assert "6.0 s" in svgs["latency_p95_ms"] or "6 s" in svgs["latency_p95_ms"]
    assert "drifted &gt; 0.70" in svgs["drift_auc"]
    # alerts: firing before cleared; pipeline: the failed job and its task
    alerts = page[page.index('id="alerts"'):page.index('id="quality"')]
    assert alerts.index("firing") < alerts.index("cleared")
    pipeline = page[page.index('id="pipeline"'):]
    assert "ingest_job" in pipeline and "embed" in pipeline and "failed" in pipeline
    assert "projection" in svgs and svgs["projection"].count("<circle") >= 80
    (tmp_path / "monitor.html").write_text(page, encoding="utf-8")


def test_empty_tables_render_what_to_run(tmp_path):
    settings = make_settings(tmp_path)
    lh = open_lakehouse(settings)
    page = render_html(build_report(lh, settings))
    assert "No monitoring data yet" in page and "ragops bundle run monitor_job" in page
    assert f"--var root={settings.root}" in page
    lh.ensure_tables(["monitoring_metrics", "alerts", "monitoring_runs"])  # tables exist, no rows
    page = render_html(build_report(lh, settings))
    assert "No monitoring data yet" in page and "monitoring_metrics v0" in page


def test_the_cli_writes_the_page(tmp_path, capsys):
    from ragops.cli.main import main

    settings = make_settings(tmp_path)
    populate(settings, with_embeddings=False)
    assert main(["monitor", "report", "--var", f"root={settings.root}", "--no-projection"]) == 0
    default = Path(settings.root) / "reports" / "monitor" / REPORT_FILE
    assert default.exists() and "Query drift" in default.read_text(encoding="utf-8")
    assert str(default) in capsys.readouterr().out
    out = tmp_path / "elsewhere"
    assert main(["monitor", "report", "--var", f"root={settings.root}", "--out", str(out), "--no-projection"]) == 0
    assert (out / REPORT_FILE).stat().st_size > 10_000
    assert write_report(open_lakehouse(settings), settings, tmp_path / "api", project_queries=False).exists()


# --- the gateway ----------------------------------------------------------------------------------

def test_the_report_api_needs_a_key(tmp_path):
    from tests.serving.gateway.test_review_app import AUTH, Served, make_gateway

    app, settings = make_gateway(tmp_path)
    populate(settings, with_embeddings=False)
    with Served(app) as served, httpx.Client(base_url=served.url, timeout=30) as client:
        assert client.get("/v1/monitor/report").status_code == 401
        assert client.get("/v1/monitor/report", headers={"Authorization": "Bearer sk-wrong-000000"}).status_code == 401
        r = client.get("/v1/monitor/report", headers=AUTH)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
        assert "Pipeline health" in r.text and r.text.count("<svg") >= 20
        page = client.get("/monitor")
        assert page.status_code == 200 and "monitor.js" in page.text
        csp = page.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "'unsafe-inline'" not in csp
        assert client.get("/monitor/static/monitor.js").status_code == 200
        assert client.get("/monitor/static/../monitor_page.py").status_code == 404


def _screenshot(driver, path: Path, width: int = 1280) -> None:
    driver.execute_script("window.scrollTo(0, 0)")
    height = int(driver.execute_script("return document.documentElement.scrollHeight"))
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": width, "height": max(700, min(height, 6000)), "deviceScaleFactor": 1,
                            "mobile": False})
    try:
        png = driver.get_screenshot_as_png()
    finally:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    path.write_bytes(png)


@pytest.mark.timeout(180)
def test_monitor_page_in_a_real_browser(tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    from tests.serving.gateway.test_app import KEYS
    from tests.serving.gateway.test_review_app import Served, _browser, make_gateway

    app, settings = make_gateway(tmp_path)
    populate(settings)
    driver = _browser_with_console_log(_browser)
    try:
        # the report on its own, as `ragops monitor report` writes it
        path = write_report(open_lakehouse(settings), settings, tmp_path / "report", project_queries=True)
        driver.get(path.as_uri())
        assert len(driver.find_elements(By.CSS_SELECTOR, "svg.chart")) >= 20
        _screenshot(driver, tmp_path / "monitor-report.png")
        with contextlib.suppress(OSError):
            Path("/tmp/monitor-report.png").write_bytes((tmp_path / "monitor-report.png").read_bytes())
        assert _errors(driver) == []

        with Served(app) as served:
            wait = WebDriverWait(driver, 30)
            driver.get(served.url + "/monitor")
            wait.until(ec.visibility_of_element_located((By.ID, "api-key"))).send_keys("sk-not-a-key-000")
            driver.find_element(By.ID, "key-submit").click()
            assert "not accepted" in wait.until(ec.visibility_of_element_located((By.ID, "key-error"))).text
            # the refused key's 401 is the one console error so far (reading the log empties it)
            assert [e for e in _errors(driver) if "/v1/monitor/report" not in e or "401" not in e] == []
            driver.find_element(By.ID, "api-key").send_keys(KEYS["alice"])
            driver.find_element(By.ID, "key-submit").click()
            frame = wait.until(ec.visibility_of_element_located((By.ID, "report")))
            wait.until(lambda d: "loaded" in d.find_element(By.ID, "status").text)
            driver.switch_to.frame(frame)
            charts = driver.find_elements(By.CSS_SELECTOR, "svg.chart")
            assert len(charts) >= 20
            assert all(c.size["width"] > 200 and c.size["height"] > 100 for c in charts[:5])
            assert "Pipeline health" in driver.find_element(By.TAG_NAME, "body").text
            driver.switch_to.default_content()
            _screenshot(driver, tmp_path / "monitor-gateway.png")
            with contextlib.suppress(OSError):
                Path("/tmp/monitor-gateway.png").write_bytes((tmp_path / "monitor-gateway.png").read_bytes())
            assert _errors(driver) == []
            # the key stays for the tab: a reload shows the report without asking again
            driver.refresh()
            wait.until(lambda d: "loaded" in d.find_element(By.ID, "status").text)
            assert not driver.find_element(By.ID, "key-view").is_displayed()
            assert _errors(driver) == []
    finally:
        driver.quit()


def _browser_with_console_log(make_browser):
    """The review test's Chromium, with the browser console (errors, CSP violations) readable."""
    from selenium import webdriver

    original = webdriver.ChromeOptions.__init__

    def with_logging(self, *args, **kwargs):
        original(self, *args, **kwargs)
        self.set_capability("goog:loggingPrefs", {"browser": "ALL"})

    webdriver.ChromeOptions.__init__ = with_logging
    try:
        return make_browser()
    finally:
        webdriver.ChromeOptions.__init__ = original


def _errors(driver) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
