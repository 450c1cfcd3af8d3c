"""Quality gates for promoting ``@challenger`` to ``@champion``: data in ``gates.yml``, checked here.

A gates file has three tiers (as agentops-stacks ``eval/gates.yml``)::

    block:                      # a failure stops the promotion
      - metric: recall@5
        min: 0.60               # absolute floor on the challenger's mean
      - metric: answer_contains
        max_regression: 0.10    # allowed drop vs the champion
    warn:                       # a failure is reported, promotion goes on
      - metric: groundedness
        max_regression: 0.05
    info:                       # reported only
      - bleu

Rule keys:

``min``
    Floor on the challenger's mean, in [0, 1]. A metric that is absent from the results or has no
    scored question is ``missing``, which counts as failed (block) or warned (warn): a typo in a
    metric name never passes silently.
``max_regression``
    Allowed drop of the challenger below the champion, in [0, 1]. The gate fails only when the paired
    difference is below ``-max_regression`` *and* significant (its bootstrap interval excludes 0): a
    gate does not move on noise. Skipped when there is no champion yet. All ragops metrics are
    higher-is-better; lower-is-better metrics (latency, cost) are not in scope for these rules.
``max_failure_rate``
    Largest allowed share of questions whose *scoring* failed (judge error, timeout), in [0, 1].
    Defaults to 0.0 for ``block`` rules, so a block metric that could not be scored on every
    question fails the gate rather than being judged on the questions that happened to work;
    defaults to 1.0 (never checked) for ``warn`` and ``info``.

``info`` entries may be plain metric names; they add a ``report`` row with the observed value.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from ragops.config.rules import read_rules_yaml, tier_entries
from ragops.errors import RulesFileError
from ragops.evaluation.stats import MetricSummary, PairedComparison

#: The project's default gates, relative to the repository root.
DEFAULT_GATES_PATH = Path("data/eval/gates.yml")

TIERS: tuple[str, ...] = ("block", "warn", "info")
RULE_KEYS: tuple[str, ...] = ("metric", "min", "max_regression", "max_failure_rate")
_THRESHOLD_KEYS = ("min", "max_regression", "max_failure_rate")
_DEFAULT_FAILURE_RATE = {"block": 0.0, "warn": 1.0, "info": 1.0}

Tier = Literal["block", "warn", "info"]
Rule = Literal["min", "max_regression", "max_failure_rate", "report"]
Status = Literal["pass", "fail", "skipped", "missing"]


class GatesError(RulesFileError):
    """A problem in a gates file, naming the file, tier, rule index and key it is about."""


@dataclass(frozen=True)
class GateRule:
    """One entry of a gates file. ``index`` is its position in its tier's list (for messages)."""

    tier: Tier
    metric: str
    index: int = 0
    min: float | None = None
    max_regression: float | None = None
    max_failure_rate: float | None = None

    @property
    def effective_failure_rate(self) -> float:
        """``max_failure_rate`` or the tier's default (block 0.0, warn/info 1.0)."""
        if self.max_failure_rate is not None:
            return self.max_failure_rate
        return _DEFAULT_FAILURE_RATE[self.tier]


@dataclass
class Gates:
    rules: list[GateRule]
    source: str = "<gates>"

    def tier(self, name: str) -> list[GateRule]:
        return [r for r in self.rules if r.tier == name]

    @property
    def metrics(self) -> list[str]:
        """Metric names the gates mention, in file order: what the evaluation must compute."""
        return list(dict.fromkeys(r.metric for r in self.rules))


@dataclass
class GateResult:
    tier: Tier
    metric: str
    rule: Rule
    status: Status
    observed: float | None
    threshold: float | None  # None only for ``report`` rows of info entries without thresholds
    detail: str
    reason: str = ""  # the short form of ``detail`` used in the verdict line

    @property
    def counts(self) -> bool:
        """Whether this result is a failure of its tier (failed, or missing and so not checkable)."""
        return self.status in ("fail", "missing")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class GateReport:
    results: list[GateResult] = field(default_factory=list)
    source: str | None = None

    @property
    def blocking(self) -> list[GateResult]:
        return [r for r in self.results if r.tier == "block" and r.counts]

    @property
    def warnings(self) -> list[GateResult]:
        return [r for r in self.results if r.tier == "warn" and r.counts]

    @property
    def passed(self) -> bool:
        return not self.blocking

    def verdict(self) -> str:
        """One line: ``BLOCKED: …`` with each failed block gate and by how much, or ``PASSED``."""
        warn_note = ""
        if self.warnings:
            n = len(self.warnings)
            warn_note = f"{n} warning{'s' * (n != 1)}"
        if self.blocking:
            n = len(self.blocking)
            reasons = "; ".join(f"{r.metric} {r.reason or r.detail}" for r in self.blocking)
            line = f"BLOCKED: {n} block gate{'s' * (n != 1)} failed — {reasons}"
            return f"{line} (also {warn_note})" if warn_note else line
        if warn_note:
            reasons = "; ".join(f"{r.metric} {r.reason or r.detail}" for r in self.warnings)
            return f"PASSED ({warn_note}) — {reasons}"
        return "PASSED"

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "verdict": self.verdict(),
            "source": self.source,
            "n_blocking": len(self.blocking),
            "n_warnings": len(self.warnings),
            "results": [r.to_dict() for r in self.results],
        }

    def format(self) -> str:
        """A fixed-width table of every gate followed by the verdict line."""
        header = ("tier", "metric", "rule", "observed", "threshold", "status", "detail")
        rows = [header] + [
            (r.tier, r.metric, r.rule, _observed_text(r), _threshold_text(r), r.status.upper(), r.detail)
            for r in self.results
        ]
        widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]

        def line(row: tuple[str, ...]) -> str:
            return "  ".join(cell.ljust(w) for cell, w in zip(row[:-1], widths, strict=True)) + "  " + row[-1]

        out = [line(header), "  ".join("-" * w for w in widths) + "  " + "-" * len("detail")]
        out += [line(row).rstrip() for row in rows[1:]]
        if not self.results:
            out.append("(no gates)")
        out += ["", self.verdict()]
        return "\n".join(out)


# --- loading --------------------------------------------------------------------------------------

def _number(value: Any, file: str, tier: str, index: int, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise GatesError(f"expected a number between 0 and 1, got {value!r}; write e.g. `{key}: 0.6`",
                         file, tier, index, key)
    x = float(value)
    if math.isnan(x) or not 0.0 <= x <= 1.0:
        what = {"min": "a floor on a mean", "max_regression": "an allowed drop",
                "max_failure_rate": "a share of questions"}[key]
        raise GatesError(f"{value!r} is outside [0, 1]; it is {what} and metrics range from 0 to 1",
                         file, tier, index, key)
    return x


def _parse_rule(entry: Any, file: str, tier: str, index: int) -> GateRule:
    if isinstance(entry, str) and tier == "info":
        entry = {"metric": entry}
    if not isinstance(entry, Mapping):
        hint = "a metric name or a mapping" if tier == "info" else "a mapping such as `{metric: recall@5, min: 0.6}`"
        raise GatesError(f"expected {hint}, got {entry!r}", file, tier, index)
    for key in entry:
        if key not in RULE_KEYS:
            raise GatesError(f"unknown key; allowed keys are {', '.join(RULE_KEYS)}", file, tier, index, str(key))
    metric = entry.get("metric")
    if metric is None:
        raise GatesError("missing; every rule names the metric it checks, e.g. `metric: recall@5`",
                         file, tier, index, "metric")
    if not isinstance(metric, str) or not metric.strip():
        raise GatesError(f"expected a metric name such as recall@5, got {metric!r}", file, tier, index, "metric")
    thresholds = {k: _number(entry[k], file, tier, index, k) for k in _THRESHOLD_KEYS if k in entry}
    if tier != "info" and not thresholds:
        raise GatesError(
            f"a {tier} rule needs at least one of {', '.join(_THRESHOLD_KEYS)}; "
            "move report-only metrics to the info tier", file, tier, index)
    return GateRule(tier=tier, metric=metric.strip(), index=index, **thresholds)  # type: ignore[arg-type]


def parse_gates(data: Any, source: str = "<gates>") -> Gates:
    """Validate a parsed gates document (see the module docstring) and return its rules."""
    if data is None:
        raise GatesError("the file is empty; define at least a block tier (see data/eval/gates.yml)", source)
    rules = [_parse_rule(entry, source, tier, i) for tier, i, entry in tier_entries(data, TIERS, source, GatesError)]
    return Gates(rules=rules, source=source)


def load_gates(path: str | Path = DEFAULT_GATES_PATH) -> Gates:
    """Read and validate a gates file; any problem raises :class:`GatesError` naming where it is."""
    data, source = read_rules_yaml(path, GatesError, "pass the path of a gates file such as data/eval/gates.yml")
    return parse_gates(data, source)


# --- checking -------------------------------------------------------------------------------------

def _decimals(*values: float) -> int:
    """Fewest decimals (2–4) at which the given values print differently, so that a comparison
    such as ``0.598 < min 0.60`` never reads ``0.60 < min 0.60``."""
    for d in (2, 3, 4):
        if len({round(v, d) for v in values}) == len(set(values)):
            return d
    return 4


def _f(x: float, d: int = 2, sign: bool = False) -> str:
    return f"{x:+.{d}f}" if sign else f"{x:.{d}f}"


def _observed_text(r: GateResult) -> str:
    if r.observed is None:
        return "—"
    return _f(r.observed, 3, sign=r.rule == "max_regression")


def _threshold_text(r: GateResult) -> str:
    if r.threshold is None:
        return ""
    if r.rule == "min":
        return f">= {_f(r.threshold)}"
    if r.rule == "max_regression":
        return f">= {_f(-r.threshold, sign=True)}"
    return f"<= {_f(r.threshold)}"


def _scored(summary: MetricSummary | None) -> bool:
    return summary is not None and summary.n > 0 and summary.mean is not None


def _missing_detail(metric: str, summary: MetricSummary | None) -> str:
    if summary is None:
        return f"missing: no results for {metric!r} (check the metric name in the gates file and the evaluation)"
    if summary.n_failed:
        return f"missing: no question scored ({summary.n_failed} failed, {summary.n_not_applicable} not applicable)"
    return f"missing: no question scored ({summary.n_not_applicable} not applicable)"


def _missing(rule: GateRule, kind: Rule, threshold: float | None, summary: MetricSummary | None) -> GateResult:
    text = _missing_detail(rule.metric, summary)
    return GateResult(rule.tier, rule.metric, kind, "missing", None, threshold, text, text)


def _check_min(rule: GateRule, summary: MetricSummary | None) -> GateResult:
    floor = rule.min
    assert floor is not None
    if summary is None or summary.mean is None or summary.n == 0:
        return _missing(rule, "min", floor, summary)
    mean = summary.mean
    d = _decimals(mean, floor)
    interval = ""
    if summary.ci_low is not None and summary.ci_high is not None:
        interval = f"; CI {_f(summary.ci_low, d)}–{_f(summary.ci_high, d)}, n={summary.n}"
    if mean < floor:
        reason = f"{_f(mean, d)} < min {_f(floor, d)} (short by {_f(floor - mean, d)})"
        return GateResult(rule.tier, rule.metric, "min", "fail", mean, floor, reason + interval, reason)
    reason = f"{_f(mean, d)} >= min {_f(floor, d)} (margin {_f(mean - floor, d)})"
    return GateResult(rule.tier, rule.metric, "min", "pass", mean, floor, reason + interval, reason)


def _check_regression(
    rule: GateRule,
    summary: MetricSummary | None,
    champion: Mapping[str, MetricSummary] | None,
    comparison: PairedComparison | None,
) -> GateResult:
    allowed = rule.max_regression
    assert allowed is not None

    def result(status: Status, observed: float | None, detail: str, reason: str = "") -> GateResult:
        return GateResult(rule.tier, rule.metric, "max_regression", status, observed, allowed, detail,
                          reason or detail)

    if not _scored(summary):
        return _missing(rule, "max_regression", allowed, summary)
    if champion is None:
        return result("skipped", None, "no @champion yet: nothing to regress from")
    if not _scored(champion.get(rule.metric)):
        return result("skipped", None, f"the champion has no scores for {rule.metric!r} (first evaluation with it)")
    if comparison is None or comparison.delta is None:
        text = "missing: no paired comparison with the champion (no question scored by both)"
        return GateResult(rule.tier, rule.metric, "max_regression", "missing", None, allowed, text, text)
    delta = comparison.delta
    d = _decimals(delta, -allowed)
    p = "n/a" if comparison.p_value is None else f"{comparison.p_value:.3g}"
    ci = ""
    if comparison.ci_low is not None and comparison.ci_high is not None:
        ci = f" [{_f(comparison.ci_low, d, True)}, {_f(comparison.ci_high, d, True)}]"
    head = f"Δ {_f(delta, d, True)}{ci} vs champion over {comparison.n_pairs} questions"
    if delta >= -allowed:
        return result("pass", delta, f"{head}; allowed drop {_f(allowed, d)}")
    beyond = _f(-allowed - delta, d)
    if not comparison.significant:
        return result("pass", delta, f"{head}; drop exceeds {_f(allowed, d)} by {beyond} but is "
                                     f"not significant (p={p})")
    verdict = f"> allowed {_f(allowed, d)} (by {beyond}), significant (p={p})"
    return result("fail", delta, f"{head}: dropped {_f(-delta, d)} {verdict}",
                  f"dropped {_f(-delta, d)} vs champion {verdict}")


def _check_failure_rate(rule: GateRule, summary: MetricSummary | None) -> GateResult:
    limit = rule.effective_failure_rate
    if summary is None:
        return _missing(rule, "max_failure_rate", limit, summary)
    rate = summary.failure_rate
    d = _decimals(rate, limit)
    counts = f"{summary.n_failed} of {summary.n + summary.n_failed} questions failed to score"
    if rate > limit:
        reason = f"failure rate {_f(rate, d)} > max {_f(limit, d)} (over by {_f(rate - limit, d)})"
        return GateResult(rule.tier, rule.metric, "max_failure_rate", "fail", rate, limit,
                          f"{reason}: {counts}", reason)
    reason = f"failure rate {_f(rate, d)} <= max {_f(limit, d)}"
    return GateResult(rule.tier, rule.metric, "max_failure_rate", "pass", rate, limit,
                      f"{reason} ({counts})", reason)


def _report(rule: GateRule, summary: MetricSummary | None, comparison: PairedComparison | None) -> GateResult:
    if not _scored(summary):
        return _missing(rule, "report", None, summary)
    assert summary is not None and summary.mean is not None
    detail = f"mean {summary.mean:.3f}"
    if summary.ci_low is not None and summary.ci_high is not None:
        detail += f" (CI {summary.ci_low:.3f}–{summary.ci_high:.3f}, n={summary.n})"
    if comparison is not None and comparison.delta is not None:
        p = "n/a" if comparison.p_value is None else f"{comparison.p_value:.3g}"
        detail += f"; Δ {comparison.delta:+.3f} vs champion (p={p})"
    return GateResult(rule.tier, rule.metric, "report", "pass", summary.mean, None, detail, detail)


def check_gates(
    gates: Gates,
    challenger: Mapping[str, MetricSummary],
    champion: Mapping[str, MetricSummary] | None,
    comparisons: Mapping[str, PairedComparison],
) -> GateReport:
    """Check every rule against the challenger's summaries and its paired comparisons with the
    champion (``champion`` None: no champion yet, regression rules are skipped)."""
    results: list[GateResult] = []
    seen_failure_rules: set[tuple[str, str, float]] = set()
    for rule in gates.rules:
        summary = challenger.get(rule.metric)
        comparison = comparisons.get(rule.metric)
        has_threshold = any(v is not None for v in (rule.min, rule.max_regression, rule.max_failure_rate))
        if not has_threshold:
            results.append(_report(rule, summary, comparison))
            continue
        if rule.min is not None:
            results.append(_check_min(rule, summary))
        if rule.max_regression is not None:
            results.append(_check_regression(rule, summary, champion, comparison))
        limit = rule.effective_failure_rate
        key = (rule.tier, rule.metric, limit)
        # A default 1.0 limit can never fail: only checked (and shown) when it means something.
        if limit < 1.0 and key not in seen_failure_rules:
            seen_failure_rules.add(key)
            if summary is None and (rule.min is not None or rule.max_regression is not None):
                continue  # already reported as missing by the rule above
            results.append(_check_failure_rate(rule, summary))
    return GateReport(results=results, source=gates.source)
