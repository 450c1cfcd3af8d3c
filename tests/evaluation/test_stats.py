"""Bootstrap summaries and paired comparisons: the numbers the quality gates decide on."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ragops.evaluation.stats import MetricSummary, PairedComparison, paired_bootstrap, summarize


def test_mean_is_the_plain_mean_and_the_interval_contains_it() -> None:
    s = summarize("recall@5", [1.0, 0.0, 0.5, 1.0])
    assert s.mean == pytest.approx(0.625)
    assert s.n == 4 and s.n_failed == 0 and s.n_not_applicable == 0
    assert s.ci_low is not None and s.ci_high is not None
    assert 0.0 <= s.ci_low <= s.mean <= s.ci_high <= 1.0
    assert s.ci_low < s.ci_high


def test_interval_narrows_as_questions_grow() -> None:
    rng = np.random.default_rng(7)
    small = summarize("m", list(rng.random(10)))
    large = summarize("m", list(rng.random(1000)))
    assert small.ci_high - small.ci_low > 3 * (large.ci_high - large.ci_low)
    assert large.ci_low <= large.mean <= large.ci_high


def test_same_seed_same_interval_other_seed_differs() -> None:
    values = list(np.random.default_rng(0).random(30))
    a, b = summarize("m", values, seed=3), summarize("m", values, seed=3)
    c = summarize("m", values, seed=4)
    assert (a.ci_low, a.ci_high) == (b.ci_low, b.ci_high)
    assert (a.ci_low, a.ci_high) != (c.ci_low, c.ci_high)


def test_none_is_not_applicable_excluded_and_counted() -> None:
    s = summarize("recall@5", [1.0, None, 0.0, None], n_failed=2)
    assert s.mean == pytest.approx(0.5)
    assert (s.n, s.n_not_applicable, s.n_failed) == (2, 2, 2)
    assert s.failure_rate == pytest.approx(0.5)  # 2 failed of 4 the metric applied to
    assert s.to_dict()["failure_rate"] == pytest.approx(0.5)


def test_nan_is_rejected_with_what_to_do() -> None:
    with pytest.raises(ValueError, match=r"groundedness: value at index 1 is NaN.*n_failed"):
        summarize("groundedness", [0.5, math.nan])


def test_no_scored_question_and_single_question() -> None:
    empty = summarize("m", [None, None], n_failed=1)
    assert (empty.mean, empty.ci_low, empty.ci_high, empty.n) == (None, None, None, 0)
    assert empty.failure_rate == 1.0
    assert MetricSummary("m", None, None, None, 0).failure_rate == 0.0
    one = summarize("m", [0.4])
    assert (one.mean, one.ci_low, one.ci_high) == (0.4, 0.4, 0.4)


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(ValueError, match="confidence"):
        summarize("m", [0.1, 0.2], confidence=95)
    with pytest.raises(ValueError, match="n_boot"):
        summarize("m", [0.1, 0.2], n_boot=0)


def test_consistent_improvement_is_significant() -> None:
    rng = np.random.default_rng(1)
    base = {f"q{i:03d}": float(x) for i, x in enumerate(rng.uniform(0.2, 0.8, 40))}
    better = {q: v + 0.1 for q, v in base.items()}
    cmp = paired_bootstrap("answer_f1", better, base)
    assert cmp.n_pairs == 40
    assert cmp.delta == pytest.approx(0.1)
    assert cmp.significant
    assert cmp.ci_low == pytest.approx(0.1) and cmp.ci_high == pytest.approx(0.1)
    assert cmp.p_value is not None and cmp.p_value < 0.01
    assert cmp.challenger_mean - cmp.champion_mean == pytest.approx(0.1)


def test_zero_mean_noise_is_not_significant() -> None:
    noise = [0.3, -0.3, 0.2, -0.2, 0.1, -0.1, 0.25, -0.25, 0.05, -0.05]
    champion = {f"q{i}": 0.5 for i in range(10)}
    challenger = {f"q{i}": 0.5 + d for i, d in enumerate(noise)}
    cmp = paired_bootstrap("answer_f1", challenger, champion)
    assert cmp.delta == pytest.approx(0.0, abs=1e-12)
    assert not cmp.significant
    assert cmp.ci_low < 0 < cmp.ci_high
    assert cmp.p_value is not None and cmp.p_value > 0.5


def test_large_drop_on_few_noisy_questions_is_not_significant() -> None:
    champion = {"a": 1.0, "b": 0.0, "c": 1.0, "d": 0.0}
    challenger = {"a": 0.0, "b": 0.2, "c": 1.0, "d": 0.1}
    cmp = paired_bootstrap("m", challenger, champion)
    assert cmp.delta < -0.1
    assert not cmp.significant


def test_only_questions_scored_by_both_are_paired() -> None:
    challenger = {"q1": 1.0, "q2": 0.0, "q3": None, "q4": 1.0, "new": 1.0}
    champion = {"q1": 0.0, "q2": 0.0, "q3": 1.0, "q4": 0.0, "gone": 0.0}
    cmp = paired_bootstrap("m", challenger, champion)
    assert cmp.n_pairs == 3
    assert cmp.challenger_mean == pytest.approx(2 / 3)
    assert cmp.champion_mean == 0.0
    assert cmp.delta == pytest.approx(2 / 3)


def test_identical_scores_and_no_pairs() -> None:
    same = {"q1": 0.5, "q2": 1.0, "q3": 0.0}
    cmp = paired_bootstrap("m", same, dict(same))
    assert (cmp.delta, cmp.p_value, cmp.significant) == (0.0, 1.0, False)
    none = paired_bootstrap("m", {"a": 1.0}, {"b": 1.0})
    assert isinstance(none, PairedComparison)
    assert (none.n_pairs, none.delta, none.significant) == (0, None, False)
    assert none.to_dict()["delta"] is None


def test_paired_is_deterministic_and_rejects_nan() -> None:
    a = {f"q{i}": (i % 3) / 2 for i in range(20)}
    b = {f"q{i}": (i % 4) / 3 for i in range(20)}
    assert paired_bootstrap("m", a, b, seed=5) == paired_bootstrap("m", a, b, seed=5)
    with pytest.raises(ValueError, match=r"champion value for question 'q1' is NaN"):
        paired_bootstrap("m", {"q1": 0.5}, {"q1": math.nan})
