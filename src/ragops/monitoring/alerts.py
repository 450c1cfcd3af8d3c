"""Alerts: thresholds on monitoring metrics (data, in ``alerts.yml``) → incidents in the ``alerts`` table.

Rules are data, as the evaluation's gates are (:mod:`ragops.evaluation.gates`), so changing a threshold
is a one-line change in ``data/monitoring/alerts.yml`` and never a code change. A rules file has three
tiers::

    page:                       # the monitor job exits non-zero while one of these fires
      - metric: error_rate
        above: 0.2
        min_count: 20           # ignore windows with fewer than 20 requests
    warn:                       # recorded and sent to the webhook
      - metric: guardrail_block_rate:*
        above: 0.2
    info:                       # recorded only
      - metric: requests
        below: 1

Rule keys:

``metric``
    A name from :data:`ragops.monitoring.catalog.METRICS`: a family (``latency_p95_ms``) matches the
    unlabelled series only; a labelled name (``error_rate:timeout``) matches that label; a family
    wildcard (``guardrail_block_rate:*``) matches every label of the family. An unknown name is an
    error when the file is loaded, not a rule that silently never fires.
``above`` / ``below``
    The threshold (exactly one of them): the rule breaches when the value is strictly above / below it.
``min_count``
    Windows with fewer observations (the metric row's ``count``: requests, ratings, queries) are not
    judged; a window whose count is unknown is not judged either. Default: judge every window.
``route``
    Only this route's series (default: any route, including ``""``, the all-traffic series of drift,
    freshness and pipeline health).
``name``
    The rule's name in the ``alerts`` table (default ``"<metric> > <threshold>"``, plus ``" on <route>"``);
    names are unique in a file: an incident is identified by its rule's name.
``for_windows``
    Consecutive windows (each starting where the previous ended) that must breach before it fires
    (default 1): a single slow window does not page anyone at 3 a.m.

Incidents. Each series (metric, route, model version) is judged on its latest window in the metrics
frame. A breach with no open incident of the same rule opens one (status ``firing``, ``fired_at``,
``value``); a breach while one is open only updates its ``last_value``; a judged window that does not
breach clears it (status ``cleared``, ``cleared_at``, ``last_value``). A series with no newer data, or
whose latest window cannot be judged (no value, too few observations), keeps its incident open: no
evidence either way. An incident of a rule that is no longer in the file is cleared, so a removed rule
does not page forever.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import math
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pandas as pd

from ragops.config.rules import read_rules_yaml, tier_entries
from ragops.errors import RulesFileError
from ragops.lakehouse.schemas import empty_frame, utcnow
from ragops.monitoring.catalog import METRICS, MonitoringError, describe, family

if TYPE_CHECKING:
    from ragops.config.settings import Settings
    from ragops.lakehouse.base import Lakehouse

log = logging.getLogger(__name__)

#: The project's default rules, relative to the repository root.
DEFAULT_ALERTS_PATH = Path("data/monitoring/alerts.yml")

TIERS: tuple[str, ...] = ("page", "warn", "info")
RULE_KEYS: tuple[str, ...] = ("metric", "above", "below", "min_count", "route", "name", "for_windows")
_TIER_ORDER = {t: i for i, t in enumerate(TIERS)}
_SYMBOL = {"above": ">", "below": "<"}

Tier = Literal["page", "warn", "info"]
Op = Literal["above", "below"]


class AlertRulesError(RulesFileError, MonitoringError):
    """A problem in an alert rules file, naming the file, tier, rule index and key it is about."""


@dataclass(frozen=True)
class AlertRule:
    """One entry of a rules file (see the module docstring for what each field means)."""

    name: str
    tier: Tier
    metric: str
    op: Op
    threshold: float
    min_count: int | None = None
    route: str | None = None
    for_windows: int = 1

    @property
    def condition(self) -> str:
        """``latency_p95_ms > 15000``: the rule as one reads it."""
        return f"{self.metric} {_SYMBOL[self.op]} {_num(self.threshold)}"

    def matches(self, metric: str) -> bool:
        """Whether a concrete metric name (``guardrail_block_rate:pii``) is one this rule judges."""
        if self.metric.endswith(":*"):
            return metric.startswith(self.metric[:-1]) and len(metric) > len(self.metric) - 1
        return metric == self.metric

    def breaches(self, value: float) -> bool:
        return value > self.threshold if self.op == "above" else value < self.threshold


@dataclass(frozen=True)
class AlertRules:
    rules: tuple[AlertRule, ...]
    source: str = "<alerts>"

    @property
    def lookback(self) -> int:
        """Windows per series the metrics frame must hold for every ``for_windows`` to be judged."""
        return max((r.for_windows for r in self.rules), default=1)

    def tier(self, name: str) -> list[AlertRule]:
        return [r for r in self.rules if r.tier == name]


# --- loading --------------------------------------------------------------------------------------

def _num(x: float) -> str:
    """A threshold or value as people write it: 15000, 0.2, 0.333."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    if abs(x) >= 100:
        return f"{x:.0f}"
    return f"{x:.3g}"


def _check_metric(value: Any, file: str, tier: str, index: int) -> str:
    if not isinstance(value, str) or not value.strip():
        raise AlertRulesError(f"expected a metric name such as latency_p95_ms, got {value!r}",
                              file, tier, index, "metric")
    metric = value.strip()
    fam = family(metric)
    if fam not in METRICS:
        raise AlertRulesError(
            f"unknown metric {metric!r}; use a name from ragops.monitoring.catalog.METRICS "
            f"({', '.join(METRICS)}), a labelled one (error_rate:timeout) or a wildcard (error_rate:*)",
            file, tier, index, "metric")
    if "*" in metric and metric != f"{fam}:*":
        raise AlertRulesError(f"{metric!r}: a wildcard stands for the whole label, as in {fam}:*",
                              file, tier, index, "metric")
    if metric.endswith(":"):
        raise AlertRulesError(f"{metric!r} has an empty label; write {fam} or {fam}:*", file, tier, index, "metric")
    return metric


def _threshold(value: Any, file: str, tier: str, index: int, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(float(value)):
        raise AlertRulesError(f"expected a number, got {value!r}; write e.g. `{key}: 0.2`", file, tier, index, key)
    return float(value)


def _positive_int(value: Any, file: str, tier: str, index: int, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise AlertRulesError(f"expected a whole number of at least 1, got {value!r}", file, tier, index, key)
    return value


def _text(value: Any, file: str, tier: str, index: int, key: str, hint: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise AlertRulesError(f"expected a non-empty string, got {value!r}; {hint}", file, tier, index, key)
    return value.strip()


def _parse_rule(entry: Any, file: str, tier: str, index: int) -> AlertRule:
    if not isinstance(entry, Mapping):
        raise AlertRulesError(f"expected a mapping such as `{{metric: error_rate, above: 0.2}}`, got {entry!r}",
                              file, tier, index)
    for key in entry:
        if key not in RULE_KEYS:
            raise AlertRulesError(f"unknown key; allowed keys are {', '.join(RULE_KEYS)}",
                                  file, tier, index, str(key))
    if "metric" not in entry:
        raise AlertRulesError("missing; every rule names the metric it watches, e.g. `metric: error_rate`",
                              file, tier, index, "metric")
    metric = _check_metric(entry["metric"], file, tier, index)
    ops = [k for k in ("above", "below") if k in entry]
    if len(ops) != 1:
        what = "both" if ops else "neither of"
        raise AlertRulesError(f"the rule has {what} `above` and `below`; give exactly one threshold",
                              file, tier, index, "above" if ops else None)
    op: Op = ops[0]  # type: ignore[assignment]
    threshold = _threshold(entry[op], file, tier, index, op)
    min_count = _positive_int(entry["min_count"], file, tier, index, "min_count") if "min_count" in entry else None
    for_windows = _positive_int(entry.get("for_windows", 1), file, tier, index, "for_windows")
    route = None
    if "route" in entry:
        route = _text(entry["route"], file, tier, index, "route", "leave the key out to watch every route")
    rule = AlertRule(name="", tier=tier, metric=metric, op=op, threshold=threshold,  # type: ignore[arg-type]
                     min_count=min_count, route=route, for_windows=for_windows)
    if "name" in entry:
        name = _text(entry["name"], file, tier, index, "name", "leave the key out for a derived name")
    else:
        name = rule.condition + (f" on {route}" if route else "")
    return AlertRule(name=name, tier=rule.tier, metric=metric, op=op, threshold=threshold, min_count=min_count,
                     route=route, for_windows=for_windows)


def parse_alert_rules(data: Any, source: str = "<alerts>") -> AlertRules:
    """Validate a parsed rules document (see the module docstring) and return its rules."""
    if data is None:
        return AlertRules(rules=(), source=source)
    rules: list[AlertRule] = []
    where: dict[str, str] = {}
    for tier, i, entry in tier_entries(data, TIERS, source, AlertRulesError):
        rule = _parse_rule(entry, source, tier, i)
        if rule.name in where:
            raise AlertRulesError(
                f"rule name {rule.name!r} is also the name of {where[rule.name]}; incidents are identified "
                "by rule name, so give one of them a distinct `name:`", source, tier, i, "name")
        where[rule.name] = f"{tier}[{i}]"
        rules.append(rule)
    return AlertRules(rules=tuple(rules), source=source)


def load_alert_rules(path: str | Path = DEFAULT_ALERTS_PATH) -> AlertRules:
    """Read and validate a rules file; any problem raises :class:`AlertRulesError` naming where it is."""
    data, source = read_rules_yaml(path, AlertRulesError, "pass the path of a rules file such as "
                                   "data/monitoring/alerts.yml (setting monitor_alerts)")
    return parse_alert_rules(data, source)


# --- evaluating -----------------------------------------------------------------------------------

_ALERT_COLUMNS = list(empty_frame("alerts").columns)
_TS_COLUMNS = ("window_start", "fired_at", "cleared_at")


@dataclass
class AlertChanges:
    """What one evaluation changed. The dicts are alert rows made JSON-ready (timestamps as ISO text)."""

    rows: pd.DataFrame  # alerts-schema rows to upsert (new incidents + updated / cleared ones)
    fired: list[dict[str, Any]] = field(default_factory=list)
    cleared: list[dict[str, Any]] = field(default_factory=list)
    firing: list[dict[str, Any]] = field(default_factory=list)  # every incident open after this evaluation

    @property
    def paging(self) -> list[dict[str, Any]]:
        """Open incidents of the ``page`` tier: the monitor job exits non-zero while there are any."""
        return [a for a in self.firing if a["tier"] == "page"]

    def summary_lines(self) -> list[str]:
        """One line per fired and cleared incident, then a count of what is still open."""
        lines = [f"FIRED [{a['tier']}] {a['rule']}: {a['message']}" for a in self.fired]
        lines += [f"CLEARED [{a['tier']}] {a['rule']}: {a['message']}" for a in self.cleared]
        n_page = len(self.paging)
        lines.append(f"{len(self.firing)} alert(s) firing" + (f", {n_page} paging" if n_page else ""))
        return lines


def _timestamp(value: Any) -> pd.Timestamp:
    ts = pd.Timestamp(value)
    return (ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")).floor("us")


def _missing(value: Any) -> bool:
    return value is None or value is pd.NA or value is pd.NaT or (isinstance(value, float) and math.isnan(value))


def _alert_id(rule: str, metric: str, route: str, model_version: str, fired_at: pd.Timestamp) -> str:
    key = json.dumps([rule, metric, route, model_version, fired_at.isoformat()], separators=(",", ":"))
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:24]


def _judge(rule: AlertRule, row: Mapping[str, Any]) -> bool | None:
    """True: breaches; False: judged, does not breach; None: cannot be judged (no value, too few observations)."""
    value = row["value"]
    if _missing(value):
        return None
    if rule.min_count is not None and (_missing(row["count"]) or int(row["count"]) < rule.min_count):
        return None
    return rule.breaches(float(value))


def _streak(rule: AlertRule, windows: pd.DataFrame) -> int:
    """Consecutive breaching windows ending at the latest one (at most ``for_windows`` looked at)."""
    n = 0
    later_start = None
    for row in reversed(windows.to_dict("records")):
        if later_start is not None and row["window_end"] != later_start:
            break  # a gap: windows without data are not consecutive with the ones around them
        if not _judge(rule, row):
            break
        n += 1
        if n >= rule.for_windows:
            break
        later_start = row["window_start"]
    return n


def _where(route: str, model_version: str) -> str:
    text = f"route {route}" if route else "all routes"
    return text + (f", model {model_version}" if model_version else "")


def _window_text(row: Mapping[str, Any]) -> str:
    start, end = _timestamp(row["window_start"]), _timestamp(row["window_end"])
    end_fmt = "%H:%M" if end - start < pd.Timedelta("1D") else "%Y-%m-%d %H:%M"
    count = "" if _missing(row.get("count")) else f", n={int(row['count'])}"
    return f"window {start:%Y-%m-%d %H:%M}–{end.strftime(end_fmt)} UTC{count}"


def _fired_message(rule: AlertRule, metric: str, row: Mapping[str, Any], streak: int) -> str:
    unit = describe(metric).unit
    unit = "" if unit in ("share", "AUC") else f" {unit}"  # 0.35, not "0.35 share"
    windows = f" for {streak} consecutive windows" if streak > 1 else ""
    return (f"{metric} = {_num(float(row['value']))}{unit} {_SYMBOL[rule.op]} {_num(rule.threshold)}{windows} "
            f"on {_where(row['route'], row['model_version'])} ({_window_text(row)})")


def _jsonable(record: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in _ALERT_COLUMNS:
        value = record.get(key)
        if _missing(value):
            out[key] = None
        elif isinstance(value, pd.Timestamp):
            out[key] = value.isoformat()
        elif isinstance(value, float):
            out[key] = float(value)
        else:
            out[key] = value
    return out


def _alerts_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    if not records:
        return empty_frame("alerts")
    df = pd.DataFrame([{c: r.get(c) for c in _ALERT_COLUMNS} for r in records], columns=_ALERT_COLUMNS)
    for col in _TS_COLUMNS:
        df[col] = pd.to_datetime(df[col], utc=True).dt.floor("us")
    for col in ("value", "last_value", "threshold"):
        df[col] = df[col].astype("float64")
    for col in ("condition", "message", "notified"):
        df[col] = df[col].astype(object).where(df[col].notna(), None)
    return df


def _prepare_metrics(metrics: pd.DataFrame | None) -> pd.DataFrame:
    cols = ["window_start", "window_end", "route", "model_version", "metric", "value", "count"]
    if metrics is None or metrics.empty:
        return pd.DataFrame(columns=cols)
    missing = [c for c in cols if c not in metrics.columns]
    if missing:
        raise MonitoringError(f"evaluate_alerts: the metrics frame lacks columns {missing}; pass monitoring_metrics "
                              "rows (ragops.monitoring.catalog.metrics_frame)")
    m = metrics[cols].copy()
    m["window_start"] = pd.to_datetime(m["window_start"], utc=True)
    m["window_end"] = pd.to_datetime(m["window_end"], utc=True)
    m["route"] = m["route"].fillna("").astype(str)
    m["model_version"] = m["model_version"].fillna("").astype(str)
    # Several rows for one window of a series (stored and recomputed): the last one given wins.
    m = m.sort_values("window_start", kind="stable")
    return m.drop_duplicates(["metric", "route", "model_version", "window_start"], keep="last")


def _open_incidents(open_alerts: pd.DataFrame | None) -> dict[tuple[str, str, str, str], dict[str, Any]]:
    if open_alerts is None or open_alerts.empty:
        return {}
    df = open_alerts[open_alerts["status"] == "firing"].copy()
    for col in _TS_COLUMNS:
        df[col] = pd.to_datetime(df[col], utc=True)
    out: dict[tuple[str, str, str, str], dict[str, Any]] = {}
    for rec in df.sort_values("fired_at", kind="stable").to_dict("records"):
        out[(rec["rule"], rec["metric"], rec["route"], rec["model_version"])] = rec  # the newest wins
    return out


def evaluate_alerts(
    rules: AlertRules, metrics: pd.DataFrame, open_alerts: pd.DataFrame | None, *, now: Any
) -> AlertChanges:
    """Judge each series of ``metrics`` on its latest window and say which incidents fire, stay, clear.

    ``metrics`` holds ``monitoring_metrics`` rows, possibly of several windows; a series is (metric, route,
    model_version). ``for_windows`` looks back over the earlier windows of the series in this frame only,
    so pass at least :attr:`AlertRules.lookback` windows per series. ``open_alerts`` holds ``alerts`` rows
    (only those with status ``firing`` are used). There is one open incident per (rule, metric, route,
    model_version) — the metric because a wildcard rule watches each label separately: a breach while
    open only updates ``last_value``; a judged window at or after the one that fired it that no longer
    breaches clears it. A series with no newer data, or whose latest window cannot be judged, keeps its
    incident open. ``alert_id`` is a stable hash of (rule, metric, route, model_version, fired_at), and
    ``fired_at`` / ``cleared_at`` are ``now``.
    """
    now = _timestamp(now)
    m = _prepare_metrics(metrics)
    incidents = _open_incidents(open_alerts)
    by_name = {r.name: r for r in rules.rules}
    rows: list[dict[str, Any]] = []
    fired: list[dict[str, Any]] = []
    cleared: list[dict[str, Any]] = []
    still_open: dict[tuple[str, str, str, str], dict[str, Any]] = {}

    def clear(incident: dict[str, Any], last_value: Any, why: str) -> None:
        rec = dict(incident, status="cleared", cleared_at=now,
                   last_value=incident["last_value"] if _missing(last_value) else float(last_value),
                   message=f"{incident.get('message') or incident['condition']} — cleared: {why}")
        rows.append(rec)
        cleared.append(rec)

    for rule in rules.rules:
        selected = m[m["metric"].map(rule.matches)] if not m.empty else m
        if rule.route is not None:
            selected = selected[selected["route"] == rule.route]
        for (metric, route, model_version), windows in selected.groupby(
                ["metric", "route", "model_version"], sort=True):
            latest = windows.iloc[-1].to_dict()
            key = (rule.name, metric, route, model_version)
            incident = incidents.get(key)
            verdict = _judge(rule, latest)
            if incident is None:
                streak = _streak(rule, windows) if verdict else 0
                if streak < rule.for_windows:
                    continue
                value = float(latest["value"])
                rec = {
                    "alert_id": _alert_id(rule.name, metric, route, model_version, now),
                    "rule": rule.name, "tier": rule.tier, "metric": metric, "route": route,
                    "model_version": model_version, "status": "firing",
                    "condition": f"{metric} {_SYMBOL[rule.op]} {_num(rule.threshold)}",
                    "value": value, "last_value": value, "threshold": rule.threshold,
                    "message": _fired_message(rule, metric, latest, streak),
                    "window_start": _timestamp(latest["window_start"]), "fired_at": now, "cleared_at": None,
                    "notified": None,
                }
                rows.append(rec)
                fired.append(rec)
                still_open[key] = rec
                continue
            fired_window = incident.get("window_start")
            stale = not _missing(fired_window) and (
                _timestamp(latest["window_start"]) < _timestamp(fired_window))
            if stale or verdict is None:
                still_open[key] = incident  # no newer evidence either way
            elif verdict:
                value = float(latest["value"])
                changed = {"last_value": value, "tier": rule.tier, "threshold": rule.threshold}
                if any(incident.get(k) != v for k, v in changed.items()):
                    incident = dict(incident, **changed)
                    rows.append(incident)
                still_open[key] = incident
            else:
                clear(incident, latest["value"],
                      f"{metric} = {_num(float(latest['value']))} ({_window_text(latest)})")

    judged = set(still_open) | {(r["rule"], r["metric"], r["route"], r["model_version"]) for r in cleared}
    for key, incident in incidents.items():
        if key in judged:
            continue
        rule = by_name.get(incident["rule"])
        if rule is None:
            clear(incident, None, f"rule {incident['rule']!r} is no longer in {rules.source}")
        elif not rule.matches(incident["metric"]) or rule.route not in (None, incident["route"]):
            clear(incident, None, f"rule {rule.name!r} no longer watches {incident['metric']} on "
                                  f"{_where(incident['route'], incident['model_version'])}")
        else:
            still_open[key] = incident  # its series has no data in this frame

    def order(rec: dict[str, Any]) -> tuple[int, pd.Timestamp, str]:
        return _TIER_ORDER.get(rec["tier"], len(TIERS)), _timestamp(rec["fired_at"]), rec["rule"]

    return AlertChanges(
        rows=_alerts_frame(rows),
        fired=[_jsonable(r) for r in fired],
        cleared=[_jsonable(r) for r in cleared],
        firing=[_jsonable(r) for r in sorted(still_open.values(), key=order)],
    )


# --- notifying ------------------------------------------------------------------------------------

def webhook_payload(changes: AlertChanges, *, sent_at: Any = None) -> dict[str, Any]:
    """The JSON body :func:`notify_webhook` posts (see there)."""
    lines = changes.summary_lines()
    return {
        "source": "ragops monitor_job",
        "sent_at": _timestamp(sent_at if sent_at is not None else utcnow()).isoformat(),
        "text": "\n".join(lines),
        "lines": lines,
        "fired": changes.fired,
        "cleared": changes.cleared,
        "firing_count": len(changes.firing),
        "paging_count": len(changes.paging),
    }


def notify_webhook(url: str, changes: AlertChanges, *, timeout_s: float = 5.0) -> dict[str, Any]:
    """POST what fired and cleared in this run to ``url`` as one JSON request; never raises.

    The body::

        {"source": "ragops monitor_job", "sent_at": "2026-12-01T18:00:00+00:00",
         "text": "FIRED [page] error_rate > 0.2: error_rate = 0.35 share on route rag_chain …\\n1 alert(s) firing",
         "lines": [...the same lines...],
         "fired": [<alert row>, ...], "cleared": [<alert row>, ...],
         "firing_count": 1, "paging_count": 1}

    ``text`` (the summary lines joined by newlines) is the field chat incoming webhooks display; each
    alert row has the ``alerts`` table's columns (alert_id, rule, tier, metric, route, model_version,
    status, condition, value, last_value, threshold, message, window_start, fired_at, cleared_at),
    timestamps in ISO 8601. Returns ``{"status": <HTTP status> | None, "error": <text> | None}``; a failure
    (unreachable, timeout, a non-2xx answer) is logged as a warning and returned, because a broken webhook
    must not stop the monitor job from recording its alerts.
    """
    body = json.dumps(webhook_payload(changes), default=str).encode("utf-8")
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": "application/json", "User-Agent": "ragops-monitor"})
    status: int | None = None
    error: str | None = None
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310 - the URL is a setting
            status = int(response.status)
    except urllib.error.HTTPError as exc:
        status, error = int(exc.code), f"HTTP {exc.code} {exc.reason}"
        exc.close()
    except urllib.error.URLError as exc:
        error = f"cannot reach the webhook: {exc.reason}"
    except (TimeoutError, OSError, http.client.HTTPException, ValueError) as exc:
        error = f"{type(exc).__name__}: {exc}"
    if error is None and not 200 <= status < 300:  # type: ignore[operator]
        error = f"HTTP {status}"
    if error is not None:
        log.warning("alert webhook %s failed: %s (the alerts are recorded in the alerts table anyway)", url, error)
    return {"status": status, "error": error}


# --- the job step ---------------------------------------------------------------------------------

def _record_notified(rows: pd.DataFrame, changes: AlertChanges, outcome: dict[str, Any],
                     at: pd.Timestamp) -> pd.DataFrame:
    """Write the webhook outcome into ``notified`` ({"fired": …, "cleared": …}) of the rows it was about."""
    event = dict(outcome, at=at.isoformat())
    kinds = {a["alert_id"]: "fired" for a in changes.fired} | {a["alert_id"]: "cleared" for a in changes.cleared}
    rows = rows.copy()
    notified = []
    for alert_id, previous in zip(rows["alert_id"], rows["notified"], strict=True):
        record = json.loads(previous) if isinstance(previous, str) and previous else {}
        if alert_id in kinds:
            record[kinds[alert_id]] = event
        notified.append(json.dumps(record, sort_keys=True) if record else None)
    rows["notified"] = pd.Series(notified, index=rows.index, dtype=object)
    for alert in changes.fired + changes.cleared:
        match = rows.loc[rows["alert_id"] == alert["alert_id"], "notified"]
        alert["notified"] = match.iloc[0] if len(match) else None
    return rows


def sync_alerts(lh: Lakehouse, settings: Settings, metrics: pd.DataFrame, *, now: Any = None,
                rules: AlertRules | None = None) -> AlertChanges:
    """The monitor job's alert step: evaluate ``rules`` (default: loaded from ``settings.monitoring.alerts``)
    over ``metrics`` against the open incidents in the ``alerts`` table, post to
    ``settings.monitoring.webhook`` (when set and something fired or cleared; its outcome goes into
    ``notified``), and upsert the changed rows. No change, no commit.
    """
    now = _timestamp(now if now is not None else utcnow())
    if rules is None:
        rules = load_alert_rules(settings.monitoring.alerts)
    open_alerts = lh.read("alerts", where={"status": ["firing"]}) if lh.exists("alerts") else None
    changes = evaluate_alerts(rules, metrics, open_alerts, now=now)
    url = settings.monitoring.webhook
    if url and (changes.fired or changes.cleared):
        outcome = notify_webhook(url, changes)
        changes.rows = _record_notified(changes.rows, changes, outcome, now)
    if not changes.rows.empty:
        lh.upsert("alerts", changes.rows)
    for line in changes.summary_lines()[:-1]:
        log.info("%s", line)
    return changes
