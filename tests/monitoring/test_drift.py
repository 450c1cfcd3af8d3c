"""Query drift: the effect size says how different a window's queries are, and the decision does not
flip with sample size the way a p-value does; the monitor's rows, its reference and the dashboard map."""

from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd
import pytest
from scipy.stats import mannwhitneyu

from ragops.evaluation.eval_sets import register_eval_set
from ragops.lakehouse import open_lakehouse
from ragops.monitoring.catalog import MonitoringError, metrics_frame
from ragops.monitoring.drift import (
    MIN_EFFECT,
    DriftResult,
    detect_drift,
    drift_metrics,
    project_2d,
    reference_questions,
)

START, END = pd.Timestamp("2026-01-01T10:00Z"), pd.Timestamp("2026-01-01T11:00Z")


def topic_queries(rng: np.random.Generator, n: int, centre: np.ndarray, spread: float = 1.0) -> np.ndarray:
    """Query-like unit vectors: a topic centre plus isotropic noise."""
    vectors = centre + spread * rng.normal(size=(n, len(centre)))
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


@pytest.fixture
def centres() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(42)
    return rng.normal(size=64) * 0.3, rng.normal(size=64) * 0.3


def test_same_distribution_is_not_drift(centres):
    rng = np.random.default_rng(0)
    result = detect_drift(topic_queries(rng, 300, centres[0]), topic_queries(rng, 500, centres[0]))
    assert not result.drifted
    assert abs(result.statistic - 0.5) < 0.045
    assert result.outlier_share < 0.12  # ~5% by construction
    assert (result.n_reference, result.n_current) == (300, 500)


def test_other_topic_is_drift_with_auc_near_one(centres):
    rng = np.random.default_rng(1)
    result = detect_drift(topic_queries(rng, 300, centres[0]), topic_queries(rng, 500, centres[1], spread=0.3))
    assert result.drifted
    assert result.statistic > 0.97
    assert result.outlier_share > 0.5


def test_auc_reads_as_the_share_of_queries_from_elsewhere(centres):
    """20% of queries from a separable topic: best possible AUC 0.5 + 0.2 / 2 = 0.60."""
    rng = np.random.default_rng(2)
    window = np.vstack([topic_queries(rng, 400, centres[0]), topic_queries(rng, 100, centres[1], spread=0.3)])
    result = detect_drift(topic_queries(rng, 300, centres[0]), window)
    assert result.drifted
    assert 0.56 < result.statistic <= 0.61


def test_effect_size_does_not_grow_with_sample_size(centres):
    """The same 20% contamination at 200 and at 3,000 queries a side: the AUC estimates the same value
    (0.60 at best), only more noisily at 200 — hence the mean of five small windows."""

    def auc(n: int, seed: int) -> float:
        rng = np.random.default_rng(seed)
        window = np.vstack([topic_queries(rng, n - n // 5, centres[0]), topic_queries(rng, n // 5, centres[1], 0.3)])
        return detect_drift(topic_queries(rng, n, centres[0]), window).statistic

    small, large = np.mean([auc(200, seed) for seed in range(5)]), auc(3000, 99)
    assert 0.57 < large < 0.61
    assert abs(small - large) < 0.035


def test_tiny_shift_is_never_drift_though_a_p_value_flips_with_sample_size():
    """Evidently #50: a rank test on a feature calls a negligible shift 'drift' once the sample is large;
    the AUC estimates the (small) effect and stays under the threshold at both sizes."""
    verdicts, p_values, aucs = {}, {}, {}
    for n in (200, 5000):
        rng = np.random.default_rng(7)
        reference = rng.normal(size=(n, 8))
        current = rng.normal(size=(n, 8))
        current[:, 0] += 0.1  # Gaussian AUC of this shift: Φ(0.1/√2) = 0.528
        result = detect_drift(reference, current)
        verdicts[n], aucs[n] = result.drifted, result.statistic
        p_values[n] = mannwhitneyu(reference[:, 0], current[:, 0]).pvalue
    assert p_values[200] > 0.05 and p_values[5000] < 1e-3  # the p-value flips
    assert verdicts == {200: False, 5000: False}  # the effect-size verdict does not
    assert abs(aucs[5000] - 0.528) < 0.01  # the effect size, measured: small, and said to be small


def test_threshold_accounts_for_sample_size():
    rng = np.random.default_rng(3)
    small = detect_drift(rng.normal(size=(30, 16)), rng.normal(size=(30, 16)))
    large = detect_drift(rng.normal(size=(300, 16)), rng.normal(size=(500, 16)))
    assert small.threshold > large.threshold >= 0.5 + MIN_EFFECT  # fewer queries: more noise allowed for


def test_one_window_of_500_takes_well_under_two_seconds(centres):
    rng = np.random.default_rng(4)
    reference, window = topic_queries(rng, 500, np.zeros(384)), topic_queries(rng, 500, np.zeros(384))
    detect_drift(reference[:20], window[:20])  # imports
    started = time.perf_counter()
    detect_drift(reference, window)
    assert time.perf_counter() - started < 1.0


def test_bad_inputs_say_what_is_wrong():
    rng = np.random.default_rng(5)
    with pytest.raises(MonitoringError, match="dimensions"):
        detect_drift(rng.normal(size=(50, 8)), rng.normal(size=(50, 16)))
    with pytest.raises(MonitoringError, match="at least 10"):
        detect_drift(rng.normal(size=(50, 8)), rng.normal(size=(5, 8)))


def test_result_round_trips_as_a_dict():
    result = DriftResult(0.6, 0.55, True, 300, 500, 0.2)
    assert DriftResult(**result.to_dict()) == result
    json.dumps(result.to_dict())


# --- the reference eval set and the monitor's rows -----------------------------------------------------
def eval_frame(questions: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"question_id": [f"q{i}" for i in range(len(questions))], "question": questions})


def test_reference_is_the_latest_version_of_the_drift_eval_set(make_settings):
    settings = make_settings(monitor_drift_eval_set="drift_ref", eval_set="sample")
    with open_lakehouse(settings) as lh:
        register_eval_set(lh, "drift_ref", eval_frame(["old question one", "old question two"]))
        register_eval_set(lh, "drift_ref", eval_frame(["new question one", "new question two", "three"]))
        register_eval_set(lh, "sample", eval_frame(["the evaluation's question"]))
        assert sorted(reference_questions(lh, settings)) == ["new question one", "new question two", "three"]
        # empty drift_eval_set: the evaluation's eval set
        assert reference_questions(lh, make_settings(eval_set="sample")) == ["the evaluation's question"]


def test_missing_reference_eval_set_is_named(make_settings):
    settings = make_settings(eval_set="golden")
    with open_lakehouse(settings) as lh:
        with pytest.raises(MonitoringError, match="'golden'"):  # no eval_sets table at all
            reference_questions(lh, settings)
        register_eval_set(lh, "other", eval_frame(["a question"]))
        with pytest.raises(MonitoringError, match="'golden'.*monitor_drift_eval_set"):
            reference_questions(lh, settings)


def test_too_few_queries_give_no_rows(make_settings):
    settings = make_settings(monitor_drift_min_queries="50")
    with open_lakehouse(settings) as lh:  # no eval set either: it is not even read
        rows = drift_metrics(lh, settings, window_start=START, window_end=END,
                             current=[f"question {i}" for i in range(49)], previous=[])
    assert rows == []


SCIENCE = [
    "Aspirin reduces the risk of colorectal cancer.", "Vitamin D deficiency is linked to multiple sclerosis.",
    "Statins lower LDL cholesterol in adults.", "Smoking increases the risk of lung cancer.",
    "Exercise improves insulin sensitivity.", "Antibiotics do not treat viral infections.",
    "Obesity is associated with type 2 diabetes.", "Sleep deprivation impairs memory consolidation.",
    "Folic acid prevents neural tube defects.", "Hypertension damages the kidneys over time.",
    "Metformin lowers blood glucose.", "Air pollution raises asthma rates in children.",
]
TRIVIA = [
    "Which team won the Super Bowl in 2016?", "What year did the Normans conquer England?",
    "Who designed the Eiffel Tower?", "What is the capital of Australia?",
    "How many players are on a football team?", "Which river flows through Cairo?",
    "Who wrote the novel War and Peace?", "When did the Berlin Wall fall?",
    "What language is spoken in Brazil?", "Which planet has the most moons?",
    "Who painted the Sistine Chapel ceiling?", "What is the tallest mountain in Africa?",
]


def test_drift_metrics_rows_with_the_real_embedder(make_settings):
    """Trivia questions against a medical-claims eval set: drift against the reference, and against a
    previous window of claims; at most monitor_drift_sample queries counted."""
    settings = make_settings(monitor_drift_eval_set="claims", monitor_drift_min_queries="10",
                             monitor_drift_sample="11")
    with open_lakehouse(settings) as lh:
        register_eval_set(lh, "claims", eval_frame(SCIENCE))
        started = time.perf_counter()
        rows = drift_metrics(lh, settings, window_start=START, window_end=END, current=TRIVIA, previous=SCIENCE)
        elapsed = time.perf_counter() - started
    by_metric = {row["metric"]: row for row in rows}
    assert set(by_metric) == {"drift_auc_reference", "drift_auc_previous", "drift_outlier_share", "drift_detected"}
    for row in rows:
        assert (row["route"], row["count"], row["window_start"], row["window_end"]) == ("", 11, START, END)
    reference = json.loads(by_metric["drift_auc_reference"]["state"])
    assert reference["drifted"] and reference["statistic"] > 0.9 and reference["n_reference"] == 12
    assert json.loads(by_metric["drift_auc_previous"]["state"])["n_reference"] == 11  # the sample, too
    assert by_metric["drift_outlier_share"]["value"] > 0.5
    assert by_metric["drift_detected"]["value"] == 1.0  # the decision, as a metric the alert rules name
    assert len(metrics_frame(rows)) == 4  # fits the monitoring_metrics schema
    assert elapsed < 20  # the embedding model loads offline


def test_previous_window_below_the_minimum_is_skipped(make_settings):
    settings = make_settings(monitor_drift_eval_set="claims", monitor_drift_min_queries="10")
    with open_lakehouse(settings) as lh:
        register_eval_set(lh, "claims", eval_frame(SCIENCE))
        rows = drift_metrics(lh, settings, window_start=START, window_end=END, current=SCIENCE[:10] + TRIVIA[:2],
                             previous=TRIVIA[:9])
    assert [row["metric"] for row in rows] == ["drift_auc_reference", "drift_outlier_share", "drift_detected"]


# --- the dashboard's map -----------------------------------------------------------------------------------
def test_project_2d_puts_the_corpus_widest_spread_first_and_far_queries_far():
    rng = np.random.default_rng(6)
    scales = np.r_[5.0, 2.0, np.full(14, 0.3)]
    corpus = rng.normal(size=(400, 16)) * scales + 1.0
    near, far = rng.normal(size=(5, 16)) * scales + 1.0, np.full((3, 16), 1.0)
    far[:, 0] += 60.0
    corpus_2d, queries_2d = project_2d(corpus, np.vstack([near, far]))
    assert corpus_2d.shape == (400, 2) and queries_2d.shape == (8, 2)
    variances = corpus_2d.var(axis=0)
    assert variances[0] > variances[1] > 0.3**2 * 1.5
    assert np.isclose(variances[0] + variances[1], np.sort(np.linalg.eigvalsh(np.cov(corpus.T, bias=True)))[-2:].sum())
    assert np.abs(queries_2d[5:, 0]).min() > 5 * np.abs(corpus_2d[:, 0]).std()  # off the corpus' map
    assert np.array_equal(project_2d(corpus, near)[1], project_2d(corpus, near)[1])
    with pytest.raises(MonitoringError, match="dimensions"):
        project_2d(corpus, np.zeros((2, 8)))
