"""Quality gates: the shipped gates file, its validation, and the pass/block decisions a user sees."""

from __future__ import annotations

from pathlib import Path

import pytest

from ragops.evaluation.gates import GatesError, check_gates, load_gates, parse_gates
from ragops.evaluation.stats import MetricSummary, PairedComparison

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "data" / "eval" / "gates.yml"


def ms(name: str, mean: float | None, n: int = 36, n_failed: int = 0) -> MetricSummary:
    low = None if mean is None else max(0.0, mean - 0.05)
    high = None if mean is None else min(1.0, mean + 0.05)
    return MetricSummary(name, mean, low, high, n if mean is not None else 0, n_failed, 0)


def cmp(metric: str, delta: float, significant: bool, p: float) -> PairedComparison:
    width = 0.03 if significant else abs(delta) + 0.05
    return PairedComparison(metric, 36, 0.5 + delta, 0.5, delta, delta - width, delta + width, p, significant)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gates.yml"
    path.write_text(text)
    return path


# --- the shipped file ----------------------------------------------------------------------------

def test_shipped_gates_load_with_the_project_defaults() -> None:
    gates = load_gates(SHIPPED)
    block = {(r.metric, r.min, r.max_regression) for r in gates.tier("block")}
    assert block == {("recall@5", 0.6, None), ("hit_rate@5", 0.7, None), ("recall@5", None, 0.05),
                     ("answer_contains", None, 0.10)}
    assert {r.metric for r in gates.tier("warn")} == {"groundedness", "answer_f1", "ndcg@10"}
    assert {r.metric for r in gates.tier("info")} >= {"bleu", "rouge_l", "mrr", "exact_match", "abstention"}
    assert all(r.effective_failure_rate == 0.0 for r in gates.tier("block"))
    assert all(r.effective_failure_rate == 1.0 for r in gates.tier("warn"))


def test_shipped_gates_pass_a_healthy_first_run() -> None:
    gates = load_gates(SHIPPED)
    challenger = {m: ms(m, 0.8) for m in gates.metrics}
    report = check_gates(gates, challenger, None, {})
    assert report.passed, report.format()
    assert {r.status for r in report.results if r.rule == "max_regression"} == {"skipped"}


# --- validation ----------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ("blocker:\n  - {metric: m, min: 0.5}\n", r"gates\.yml: blocker: unknown tier 'blocker'; tiers are block"),
        ("block:\n  - {min: 0.5}\n", r"gates\.yml: block\[0\] key 'metric': missing"),
        ("block:\n  - {metric: a, min: 0.5}\n  - {metric: m, minimum: 0.5}\n",
         r"gates\.yml: block\[1\] key 'minimum': unknown key; allowed keys are metric, min"),
        ("warn:\n  - {metric: m, max_regression: high}\n",
         r"gates\.yml: warn\[0\] key 'max_regression': expected a number .* got 'high'"),
        ("block:\n  - {metric: m, min: true}\n", r"block\[0\] key 'min': expected a number"),
        ("block:\n  - {metric: m, min: 60}\n", r"gates\.yml: block\[0\] key 'min': 60 is outside \[0, 1\]"),
        ("block:\n  - {metric: m, min: -0.1}\n", r"block\[0\] key 'min': -0.1 is outside \[0, 1\]"),
        ("block:\n  - {metric: m}\n", r"block\[0\]: a block rule needs at least one of min"),
        ("block:\n  - recall@5\n", r"block\[0\]: expected a mapping"),
        ("block: recall@5\n", r"gates\.yml: block: expected a list"),
        ("", r"gates\.yml: the file is empty"),
        ("block: [\n", r"gates\.yml: invalid YAML"),
    ],
)
def test_invalid_gates_name_file_tier_index_and_key(tmp_path: Path, text: str, pattern: str) -> None:
    with pytest.raises(GatesError, match=pattern) as info:
        load_gates(write(tmp_path, text))
    assert str(tmp_path / "gates.yml") in str(info.value)


def test_missing_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(GatesError, match="no such file"):
        load_gates(tmp_path / "nope.yml")


def test_gates_error_carries_its_location(tmp_path: Path) -> None:
    with pytest.raises(GatesError) as info:
        load_gates(write(tmp_path, "info:\n  - bleu\n  - {metric: m, max_failure_rate: 2}\n"))
    err = info.value
    assert (err.tier, err.index, err.key) == ("info", 1, "max_failure_rate")
    assert isinstance(err, ValueError)


# --- decisions -----------------------------------------------------------------------------------

GATES = parse_gates(
    {
        "block": [{"metric": "recall@5", "min": 0.6}, {"metric": "answer_contains", "max_regression": 0.10}],
        "warn": [{"metric": "groundedness", "max_regression": 0.05}],
        "info": ["bleu"],
    },
    "test-gates.yml",
)


def healthy() -> dict[str, MetricSummary]:
    return {"recall@5": ms("recall@5", 0.75), "answer_contains": ms("answer_contains", 0.5),
            "groundedness": ms("groundedness", 0.7), "bleu": ms("bleu", 0.2)}


def champion() -> dict[str, MetricSummary]:
    return {m: ms(m, 0.6) for m in ("recall@5", "answer_contains", "groundedness", "bleu")}


def status(report, metric: str, rule: str) -> str:
    [result] = [r for r in report.results if r.metric == metric and r.rule == rule]
    return result.status


def test_all_gates_pass() -> None:
    comparisons = {"answer_contains": cmp("answer_contains", 0.02, False, 0.6),
                   "groundedness": cmp("groundedness", 0.01, False, 0.8)}
    report = check_gates(GATES, healthy(), champion(), comparisons)
    assert report.passed and not report.warnings and not report.blocking
    assert report.format().splitlines()[-1] == "PASSED"
    assert status(report, "bleu", "report") == "pass"
    assert report.to_dict()["passed"] is True


def test_floor_failure_blocks_and_says_by_how_much() -> None:
    challenger = healthy()
    challenger["recall@5"] = ms("recall@5", 0.52)
    report = check_gates(GATES, challenger, None, {})
    assert not report.passed
    [blocking] = report.blocking
    assert (blocking.metric, blocking.rule, blocking.status) == ("recall@5", "min", "fail")
    assert blocking.observed == 0.52 and blocking.threshold == 0.6
    text = report.format()
    assert "BLOCKED: 1 block gate failed — recall@5 0.52 < min 0.60 (short by 0.08)" in text
    header = text.splitlines()[0].split()
    assert header == ["tier", "metric", "rule", "observed", "threshold", "status", "detail"]


def test_floor_shortfall_is_never_rounded_away() -> None:
    challenger = healthy()
    challenger["recall@5"] = ms("recall@5", 0.598)
    report = check_gates(GATES, challenger, None, {})
    assert "0.598 < min 0.600 (short by 0.002)" in report.format()


def test_missing_or_unscored_metric_fails_a_block_gate() -> None:
    challenger = healthy()
    del challenger["recall@5"]
    report = check_gates(GATES, challenger, None, {})
    assert not report.passed
    assert status(report, "recall@5", "min") == "missing"
    assert "no results for 'recall@5'" in report.format()

    challenger["recall@5"] = ms("recall@5", None, n_failed=0)
    assert status(check_gates(GATES, challenger, None, {}), "recall@5", "min") == "missing"


def test_significant_regression_blocks() -> None:
    comparisons = {"answer_contains": cmp("answer_contains", -0.15, True, 0.002),
                   "groundedness": cmp("groundedness", 0.0, False, 1.0)}
    report = check_gates(GATES, healthy(), champion(), comparisons)
    assert not report.passed
    assert status(report, "answer_contains", "max_regression") == "fail"
    verdict = report.format().splitlines()[-1]
    assert verdict.startswith("BLOCKED: 1 block gate failed — answer_contains dropped 0.15")
    assert "(by 0.05)" in verdict and "p=0.002" in verdict


def test_large_but_noisy_drop_does_not_block() -> None:
    comparisons = {"answer_contains": cmp("answer_contains", -0.15, False, 0.21),
                   "groundedness": cmp("groundedness", 0.0, False, 1.0)}
    report = check_gates(GATES, healthy(), champion(), comparisons)
    assert report.passed
    [result] = [r for r in report.results if r.metric == "answer_contains" and r.rule == "max_regression"]
    assert result.status == "pass"
    assert "not significant (p=0.21)" in result.detail


def test_no_champion_skips_regression_gates() -> None:
    report = check_gates(GATES, healthy(), None, {})
    assert report.passed
    assert status(report, "answer_contains", "max_regression") == "skipped"
    assert status(report, "groundedness", "max_regression") == "skipped"
    assert not report.warnings


def test_champion_without_pairs_is_missing_not_passed() -> None:
    report = check_gates(GATES, healthy(), champion(), {})
    assert status(report, "answer_contains", "max_regression") == "missing"
    assert not report.passed


def test_scoring_failures_fail_a_block_gate_by_default() -> None:
    challenger = healthy()
    challenger["recall@5"] = ms("recall@5", 0.9, n=34, n_failed=2)
    report = check_gates(GATES, challenger, None, {})
    assert status(report, "recall@5", "min") == "pass"
    assert status(report, "recall@5", "max_failure_rate") == "fail"
    assert not report.passed
    assert "failure rate 0.06 > max 0.00 (over by 0.06)" in report.format()


def test_explicit_failure_rate_allows_some_failures() -> None:
    gates = parse_gates({"block": [{"metric": "groundedness", "min": 0.5, "max_failure_rate": 0.1}]})
    ok = check_gates(gates, {"groundedness": ms("groundedness", 0.7, n=34, n_failed=2)}, None, {})
    assert ok.passed
    bad = check_gates(gates, {"groundedness": ms("groundedness", 0.7, n=30, n_failed=6)}, None, {})
    assert not bad.passed and bad.blocking[0].rule == "max_failure_rate"


def test_warn_only_failure_still_passes() -> None:
    comparisons = {"answer_contains": cmp("answer_contains", 0.0, False, 1.0),
                   "groundedness": cmp("groundedness", -0.12, True, 0.001)}
    report = check_gates(GATES, healthy(), champion(), comparisons)
    assert report.passed
    assert [(r.metric, r.status) for r in report.warnings] == [("groundedness", "fail")]
    assert report.format().splitlines()[-1].startswith("PASSED (1 warning) — groundedness dropped 0.12")
    assert report.to_dict()["n_warnings"] == 1


def test_missing_warn_metric_is_a_warning_and_missing_info_is_reported() -> None:
    challenger = healthy()
    del challenger["groundedness"], challenger["bleu"]
    report = check_gates(GATES, challenger, champion(), {"answer_contains": cmp("answer_contains", 0, False, 1)})
    assert report.passed
    assert [r.metric for r in report.warnings] == ["groundedness"]
    assert status(report, "bleu", "report") == "missing"
