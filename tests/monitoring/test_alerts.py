"""Alert rules → incidents in the real ``alerts`` Delta table: firing once, clearing, min_count, wildcards,
for_windows, the page tier, and a webhook posted to a real local HTTP receiver."""

from __future__ import annotations

import http.server
import json
import socket
import threading
from pathlib import Path

import pandas as pd
import pytest

from ragops.lakehouse import open_lakehouse
from ragops.monitoring.alerts import (
    AlertRulesError,
    evaluate_alerts,
    load_alert_rules,
    sync_alerts,
)
from ragops.monitoring.catalog import MonitoringError, metric_row, metrics_frame
from tests.conftest import REPO

T0 = pd.Timestamp("2026-12-01 10:00", tz="UTC")
HOUR = pd.Timedelta("1h")

RULES = """\
page:
  - metric: error_rate
    above: 0.2
    min_count: 20
warn:
  - metric: guardrail_block_rate:*
    above: 0.2
  - metric: latency_p95_ms
    above: 15000
    for_windows: 3
info:
  - metric: thumbs_up_rate
    below: 0.5
    name: unhappy users
"""


def window(i: int) -> tuple[pd.Timestamp, pd.Timestamp]:
    return T0 + i * HOUR, T0 + (i + 1) * HOUR


def rows(i: int, metric: str, value: float | None, count: int | None = 50, route: str = "rag_chain",
         model_version: str = "3") -> dict:
    start, end = window(i)
    return metric_row(start, end, metric, value, count, route=route, model_version=model_version)


def write_rules(tmp_path: Path, text: str = RULES) -> Path:
    path = tmp_path / "alerts.yml"
    path.write_text(text)
    return path


@pytest.fixture
def env(tmp_path, make_settings):
    """Settings with the test rules, and a local lakehouse under tmp_path."""
    def make(**variables):
        variables.setdefault("monitor_alerts", str(write_rules(tmp_path)))
        settings = make_settings(**variables)
        return settings, open_lakehouse(settings)

    return make


def table(lh) -> pd.DataFrame:
    return lh.read("alerts").sort_values("fired_at").reset_index(drop=True)


# --- rules ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, names", [
    ("warn:\n  - metric: latency_p95\n    above: 1\n", ["warn[0]", "'metric'", "latency_p95", "unknown metric"]),
    ("page:\n  - metric: error_rate\n    above: 0.2\n  - metric: error_rate\n    above: 0.1\n    below: 0.01\n",
     ["page[1]", "both", "above", "below"]),
    ("urgent:\n  - metric: error_rate\n    above: 0.2\n", ["urgent", "unknown tier", "page, warn, info"]),
    ("warn:\n  - metric: error_rate\n    above: high\n", ["warn[0]", "'above'", "expected a number"]),
    ("warn:\n  - metric: error_rate\n    above: 0.2\n    for_windows: 0\n", ["warn[0]", "'for_windows'"]),
    ("warn:\n  - metric: error_rate\n    above: 0.2\n    treshold: 3\n", ["warn[0]", "'treshold'", "unknown key"]),
    ("warn:\n  - metric: error_rate\n", ["warn[0]", "neither", "above"]),
    ("warn:\n  - metric: error*\n    above: 1\n", ["warn[0]", "unknown metric"]),
    ("warn:\n  - {metric: error_rate, above: 0.2}\ninfo:\n  - {metric: error_rate, above: 0.2}\n",
     ["info[0]", "'name'", "warn[0]"]),
])
def test_rule_errors_name_the_file_tier_rule_and_key(tmp_path, text, names):
    path = write_rules(tmp_path, text)
    with pytest.raises(AlertRulesError) as err:
        load_alert_rules(path)
    message = str(err.value)
    assert isinstance(err.value, MonitoringError)
    assert message.startswith(str(path))
    for part in names:
        assert part in message, message


def test_a_missing_rules_file_says_which_setting_points_at_it(tmp_path):
    with pytest.raises(AlertRulesError, match="monitor_alerts"):
        load_alert_rules(tmp_path / "nope.yml")


def test_the_shipped_rules_load_with_the_tiers_the_project_relies_on():
    rules = load_alert_rules(REPO / "data/monitoring/alerts.yml")
    by_metric = {(r.metric, r.op): r for r in rules.rules}
    assert by_metric[("error_rate", "above")].tier == "page"
    assert by_metric[("error_rate", "above")].min_count == 20
    assert by_metric[("latency_p95_ms", "above")].threshold == 15000
    assert by_metric[("job_failed:*", "above")].tier == "page"
    assert by_metric[("thumbs_up_rate", "below")].tier == "warn"
    assert by_metric[("drift_detected", "above")].tier == "warn"
    assert {r.tier for r in rules.rules} == {"page", "warn", "info"}


def test_the_shipped_rules_page_on_a_failed_job_and_stay_quiet_on_a_healthy_window():
    rules = load_alert_rules(REPO / "data/monitoring/alerts.yml")
    healthy = metrics_frame([
        rows(0, "error_rate", 0.01, 200), rows(0, "latency_p95_ms", 4200, 200), rows(0, "thumbs_up_rate", 0.8, 30),
        rows(0, "guardrail_block_rate:pii", 0.01, 200), rows(0, "dont_know_rate", 0.1, 200),
        rows(0, "drift_auc_reference", 0.55, 300, route="", model_version=""),
        rows(0, "drift_detected", 0.0, 300, route="", model_version=""),
        rows(0, "index_lag_s", 0, None, route="", model_version=""),
        rows(0, "job_failed:ingest_job", 0, 1, route="", model_version=""),
    ])
    assert evaluate_alerts(rules, healthy, None, now=T0 + HOUR).firing == []
    failed = metrics_frame([rows(0, "job_failed:ingest_job", 1, 1, route="", model_version="")])
    changes = evaluate_alerts(rules, failed, None, now=T0 + HOUR)
    assert [(a["metric"], a["tier"]) for a in changes.paging] == [("job_failed:ingest_job", "page")]


# --- incidents in the table -----------------------------------------------------------------------

def test_a_breach_fires_once_and_a_quiet_window_clears_it(env):
    settings, lh = env()
    burst = metrics_frame([rows(0, "error_rate", 0.4, 50)])
    first = sync_alerts(lh, settings, burst, now=T0 + HOUR)
    assert [a["rule"] for a in first.fired] == ["error_rate > 0.2"]
    stored = table(lh)
    assert len(stored) == 1
    assert stored.loc[0, "status"] == "firing"
    assert stored.loc[0, "value"] == 0.4
    assert pd.isna(stored.loc[0, "cleared_at"])
    assert [a["tier"] for a in first.paging] == ["page"]

    # The same rows again (a rerun): nothing new, not even a commit.
    version = lh.version("alerts")
    again = sync_alerts(lh, settings, burst, now=T0 + HOUR + pd.Timedelta("5min"))
    assert again.fired == [] and again.rows.empty
    assert lh.version("alerts") == version
    assert len(again.paging) == 1

    # The burst goes on in the next window: still one incident, its last value updated.
    still = sync_alerts(lh, settings, metrics_frame([rows(1, "error_rate", 0.5, 60)]), now=T0 + 2 * HOUR)
    assert still.fired == [] and len(still.firing) == 1
    stored = table(lh)
    assert len(stored) == 1
    assert (stored.loc[0, "value"], stored.loc[0, "last_value"]) == (0.4, 0.5)

    # A quiet window clears it; the row keeps when it fired and says when it cleared.
    quiet = sync_alerts(lh, settings, metrics_frame([rows(2, "error_rate", 0.02, 80)]), now=T0 + 3 * HOUR)
    assert [a["alert_id"] for a in quiet.cleared] == [first.fired[0]["alert_id"]]
    assert quiet.firing == [] and quiet.paging == []
    stored = table(lh)
    assert len(stored) == 1
    assert stored.loc[0, "status"] == "cleared"
    assert stored.loc[0, "fired_at"] == T0 + HOUR
    assert stored.loc[0, "cleared_at"] == T0 + 3 * HOUR
    assert stored.loc[0, "last_value"] == 0.02
    assert "cleared" in stored.loc[0, "message"]

    # Breaching again later is a new incident.
    sync_alerts(lh, settings, metrics_frame([rows(3, "error_rate", 0.3, 80)]), now=T0 + 4 * HOUR)
    stored = table(lh)
    assert list(stored["status"]) == ["cleared", "firing"]
    assert stored["alert_id"].nunique() == 2


def test_a_series_without_newer_data_or_with_too_few_requests_keeps_its_incident_open(env):
    settings, lh = env()
    sync_alerts(lh, settings, metrics_frame([rows(0, "error_rate", 0.4, 50)]), now=T0 + HOUR)
    other_series = metrics_frame([rows(1, "error_rate", 0.0, 50, route="other_route")])
    assert len(sync_alerts(lh, settings, other_series, now=T0 + 2 * HOUR).firing) == 1
    tiny = metrics_frame([rows(1, "error_rate", 0.0, 3)])  # 3 requests: no evidence either way
    changes = sync_alerts(lh, settings, tiny, now=T0 + 2 * HOUR)
    assert changes.cleared == [] and len(changes.paging) == 1
    assert list(table(lh)["status"]) == ["firing"]


def test_min_count_suppresses_tiny_windows(env):
    settings, lh = env()
    changes = sync_alerts(lh, settings, metrics_frame([rows(0, "error_rate", 1.0, 4)]), now=T0 + HOUR)
    assert changes.fired == [] and changes.firing == []
    assert not lh.exists("alerts")  # no change, no commit (not even the table)
    changes = sync_alerts(lh, settings, metrics_frame([rows(0, "error_rate", 0.25, 20)]), now=T0 + HOUR)
    assert len(changes.fired) == 1


def test_a_wildcard_rule_watches_every_label_separately(env):
    settings, lh = env()
    frame = metrics_frame([
        rows(0, "guardrail_block_rate:pii", 0.5), rows(0, "guardrail_block_rate:injection", 0.3),
        rows(0, "guardrail_block_rate:toxicity", 0.05), rows(0, "error_rate:timeout", 0.9),
    ])
    changes = sync_alerts(lh, settings, frame, now=T0 + HOUR)
    assert sorted(a["metric"] for a in changes.fired) == ["guardrail_block_rate:injection",
                                                          "guardrail_block_rate:pii"]
    assert {a["tier"] for a in changes.fired} == {"warn"} and changes.paging == []
    assert len(table(lh)) == 2
    # One label recovering clears its own incident only.
    later = metrics_frame([rows(1, "guardrail_block_rate:pii", 0.0), rows(1, "guardrail_block_rate:injection", 0.4)])
    changes = sync_alerts(lh, settings, later, now=T0 + 2 * HOUR)
    assert [a["metric"] for a in changes.cleared] == ["guardrail_block_rate:pii"]
    assert [a["metric"] for a in changes.firing] == ["guardrail_block_rate:injection"]


def test_for_windows_needs_consecutive_breaching_windows(tmp_path):
    rules = load_alert_rules(write_rules(tmp_path))
    slow = [rows(i, "latency_p95_ms", 20000) for i in range(3)]
    assert evaluate_alerts(rules, metrics_frame(slow[1:]), None, now=T0).fired == []  # two windows: not yet
    fired = evaluate_alerts(rules, metrics_frame(slow), None, now=T0).fired
    assert [a["rule"] for a in fired] == ["latency_p95_ms > 15000"]
    assert "3 consecutive windows" in fired[0]["message"]
    dip = [slow[0], rows(1, "latency_p95_ms", 3000), slow[2]]
    assert evaluate_alerts(rules, metrics_frame(dip), None, now=T0).fired == []
    gap = [rows(i, "latency_p95_ms", 20000) for i in (0, 1, 3)]  # no data in window 2: not consecutive
    assert evaluate_alerts(rules, metrics_frame(gap), None, now=T0).fired == []
    assert rules.lookback == 3


def test_below_rules_and_explicit_names(tmp_path):
    rules = load_alert_rules(write_rules(tmp_path))
    frame = metrics_frame([rows(0, "thumbs_up_rate", 0.2, 12), rows(0, "thumbs_up_rate", 0.9, 12, route="b")])
    changes = evaluate_alerts(rules, frame, None, now=T0)
    assert [(a["rule"], a["route"], a["condition"]) for a in changes.fired] == [
        ("unhappy users", "rag_chain", "thumbs_up_rate < 0.5")]
    assert changes.paging == []


def test_an_incident_of_a_removed_rule_is_cleared(env, tmp_path):
    settings, lh = env()
    sync_alerts(lh, settings, metrics_frame([rows(0, "error_rate", 0.4, 50)]), now=T0 + HOUR)
    fewer = tmp_path / "fewer.yml"
    fewer.write_text("warn:\n  - metric: dont_know_rate\n    above: 0.5\n")
    settings2, lh2 = env(monitor_alerts=str(fewer))
    changes = sync_alerts(lh2, settings2, metrics_frame([]), now=T0 + 2 * HOUR)
    assert [a["rule"] for a in changes.cleared] == ["error_rate > 0.2"]
    assert "no longer in" in changes.cleared[0]["message"]
    assert list(table(lh2)["status"]) == ["cleared"]


def test_an_incident_a_renamed_rule_no_longer_watches_is_cleared(env, tmp_path):
    named = tmp_path / "named.yml"
    named.write_text("warn:\n  - {metric: dont_know_rate, above: 0.5, name: lost users}\n")
    settings, lh = env(monitor_alerts=str(named))
    sync_alerts(lh, settings, metrics_frame([rows(0, "dont_know_rate", 0.9)]), now=T0 + HOUR)
    named.write_text("warn:\n  - {metric: thumbs_up_rate, below: 0.5, name: lost users}\n")
    changes = sync_alerts(lh, settings, metrics_frame([]), now=T0 + 2 * HOUR)
    assert [a["metric"] for a in changes.cleared] == ["dont_know_rate"]
    assert "no longer watches" in changes.cleared[0]["message"] and changes.firing == []


# --- the webhook ----------------------------------------------------------------------------------

class _Receiver:
    """A real HTTP server on 127.0.0.1 (a free port) recording each POST's JSON body."""

    def __init__(self, status: int = 200) -> None:
        received: list[dict] = []
        self.received = received

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server API
                length = int(self.headers.get("Content-Length", 0))
                received.append({"path": self.path, "content_type": self.headers.get("Content-Type"),
                                 "body": json.loads(self.rfile.read(length))})
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/ragops"

    def start(self) -> _Receiver:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def test_the_webhook_receives_what_fired_and_what_cleared(env):
    receiver = _Receiver().start()
    try:
        settings, lh = env(monitor_webhook=receiver.url)
        fired = sync_alerts(lh, settings, metrics_frame([rows(0, "error_rate", 0.4, 50)]), now=T0 + HOUR)
        sync_alerts(lh, settings, metrics_frame([rows(0, "error_rate", 0.4, 50)]), now=T0 + HOUR)  # no change
        cleared = sync_alerts(lh, settings, metrics_frame([rows(1, "error_rate", 0.0, 50)]), now=T0 + 2 * HOUR)
    finally:
        receiver.stop()
    assert [r["path"] for r in receiver.received] == ["/hooks/ragops", "/hooks/ragops"]  # one per change
    assert receiver.received[0]["content_type"] == "application/json"
    first, second = (r["body"] for r in receiver.received)
    assert [a["rule"] for a in first["fired"]] == ["error_rate > 0.2"] and first["cleared"] == []
    assert first["fired"][0]["value"] == 0.4 and first["fired"][0]["tier"] == "page"
    assert first["paging_count"] == 1
    assert "FIRED [page] error_rate > 0.2" in first["text"] and "route rag_chain" in first["text"]
    assert second["fired"] == [] and [a["alert_id"] for a in second["cleared"]] == [fired.fired[0]["alert_id"]]
    assert second["text"].startswith("CLEARED [page]")
    notified = json.loads(table(lh).loc[0, "notified"])
    assert notified["fired"]["status"] == 200 and notified["cleared"]["status"] == 200
    assert notified["cleared"]["error"] is None
    assert cleared.cleared[0]["notified"] is not None


def test_a_webhook_answering_an_error_is_recorded(env):
    receiver = _Receiver(status=500).start()
    try:
        settings, lh = env(monitor_webhook=receiver.url)
        sync_alerts(lh, settings, metrics_frame([rows(0, "error_rate", 0.4, 50)]), now=T0 + HOUR)
    finally:
        receiver.stop()
    assert len(receiver.received) == 1
    notified = json.loads(table(lh).loc[0, "notified"])
    assert notified["fired"]["status"] == 500 and "500" in notified["fired"]["error"]


def test_an_unreachable_webhook_does_not_stop_the_alerts_being_recorded(env, caplog):
    with socket.socket() as sock:  # a port nobody listens on once this socket is closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings, lh = env(monitor_webhook=f"http://127.0.0.1:{port}/hook")
    with caplog.at_level("WARNING", logger="ragops.monitoring.alerts"):
        changes = sync_alerts(lh, settings, metrics_frame([rows(0, "error_rate", 0.4, 50)]), now=T0 + HOUR)
    assert len(changes.paging) == 1
    stored = table(lh)
    assert list(stored["status"]) == ["firing"]
    notified = json.loads(stored.loc[0, "notified"])
    assert notified["fired"]["status"] is None and "cannot reach" in notified["fired"]["error"]
    assert any("webhook" in r.message for r in caplog.records)
