"""Bootstrap statistics for evaluation results: how sure are we about a mean, and is a change real?

An evaluation set of a few dozen questions gives noisy means: one question flipping moves
``recall@5`` by 0.03 on 36 questions. Quality gates must not move on that noise, so every metric is
reported with a percentile bootstrap confidence interval (:func:`summarize`) and a challenger is
compared with the champion question by question (:func:`paired_bootstrap`): pairing removes the
per-question difficulty that both versions share, which makes the comparison far more sensitive
than comparing two independent intervals.

Conventions:

* ``None`` for a question means *not applicable* (e.g. retrieval metrics on an unanswerable
  question). It is excluded from the mean and counted in ``n_not_applicable``.
* A question whose scoring *failed* (judge timeout, parse error) is not a value at all: the caller
  counts it in ``n_failed``. ``NaN`` is rejected rather than silently averaged in or dropped.
* Resampling is vectorised with numpy and seeded, so the same inputs and seed give the same
  interval on every machine and every run.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

#: Resampled index arrays are generated in blocks of at most this many cells, so a large
#: evaluation set (10k questions x 2000 resamples) never allocates more than ~32 MB at once.
_BLOCK_CELLS = 4_000_000


@dataclass
class MetricSummary:
    """One metric over an evaluation set: mean with a bootstrap interval and what was not scored."""

    name: str
    mean: float | None
    ci_low: float | None
    ci_high: float | None
    n: int  # questions scored
    n_failed: int = 0  # questions whose scoring failed
    n_not_applicable: int = 0  # questions the metric does not apply to (None values)

    @property
    def failure_rate(self) -> float:
        """Share of the questions the metric applies to whose scoring failed (0 when none applied)."""
        total = self.n + self.n_failed
        return self.n_failed / total if total else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "failure_rate": self.failure_rate}


@dataclass
class PairedComparison:
    """Challenger vs champion on the questions both scored: ``delta`` = challenger − champion."""

    metric: str
    n_pairs: int
    challenger_mean: float | None
    champion_mean: float | None
    delta: float | None
    ci_low: float | None
    ci_high: float | None
    p_value: float | None
    significant: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _check_params(n_boot: int, confidence: float) -> None:
    if isinstance(n_boot, bool) or not isinstance(n_boot, int) or n_boot < 1:
        raise ValueError(f"n_boot must be a positive integer (got {n_boot!r}); 2000 is a good default")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be between 0 and 1 exclusive (got {confidence!r}), e.g. 0.95")


def _as_float(name: str, where: str, value: Any) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name}: {where} is {value!r}, expected a number or None") from exc
    if math.isnan(x):
        raise ValueError(
            f"{name}: {where} is NaN. NaN is never averaged in: if scoring this question failed, leave it "
            "out of the values and count it in n_failed; if the metric does not apply to it, pass None"
        )
    if math.isinf(x):
        raise ValueError(f"{name}: {where} is infinite; metric values must be finite numbers")
    return x


def _bootstrap_means(values: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """Means of ``n_boot`` resamples (with replacement) of ``values``, deterministic for ``seed``."""
    rng = np.random.default_rng(seed)
    n = len(values)
    rows = max(1, _BLOCK_CELLS // n)
    out = np.empty(n_boot, dtype=np.float64)
    for start in range(0, n_boot, rows):
        stop = min(n_boot, start + rows)
        idx = rng.integers(0, n, size=(stop - start, n))
        out[start:stop] = values[idx].mean(axis=1)
    return out


def _percentile_ci(means: np.ndarray, confidence: float) -> tuple[float, float]:
    alpha = 1.0 - confidence
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def summarize(
    name: str,
    values: Sequence[float | None],
    *,
    n_failed: int = 0,
    n_boot: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> MetricSummary:
    """Mean of ``values`` with a percentile bootstrap interval (questions resampled with replacement).

    ``None`` values are not applicable: excluded and counted. With no scored question the mean and
    interval are ``None``; with one, the interval is the value itself (a single question says
    nothing about spread, which the gate report shows as ``n=1``).
    """
    _check_params(n_boot, confidence)
    if n_failed < 0:
        raise ValueError(f"{name}: n_failed must be >= 0 (got {n_failed})")
    scored = [_as_float(name, f"value at index {i}", v) for i, v in enumerate(values) if v is not None]
    n_na = len(values) - len(scored)
    n = len(scored)
    if n == 0:
        return MetricSummary(name, None, None, None, 0, n_failed, n_na)
    arr = np.asarray(scored, dtype=np.float64)
    mean = float(arr.mean())
    if n == 1:
        return MetricSummary(name, mean, mean, mean, 1, n_failed, n_na)
    low, high = _percentile_ci(_bootstrap_means(arr, n_boot, seed), confidence)
    # The percentile interval of a mean contains the sample mean except for float rounding; clamp so
    # a report never shows a mean outside its own interval.
    return MetricSummary(name, mean, min(low, mean), max(high, mean), n, n_failed, n_na)


def _pairs(
    metric: str, challenger: Mapping[str, float | None], champion: Mapping[str, float | None]
) -> Iterator[tuple[float, float]]:
    for qid in sorted(set(challenger) & set(champion), key=str):
        a, b = challenger[qid], champion[qid]
        if a is None or b is None:
            continue
        yield (_as_float(metric, f"challenger value for question {qid!r}", a),
               _as_float(metric, f"champion value for question {qid!r}", b))


def paired_bootstrap(
    metric: str,
    challenger: Mapping[str, float | None],
    champion: Mapping[str, float | None],
    *,
    n_boot: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> PairedComparison:
    """Paired bootstrap of the mean per-question difference (challenger − champion).

    Only question ids present and not ``None`` in both mappings are paired; the others are ignored
    (a question added to the eval set since the champion was scored says nothing about a change).

    The two-sided p-value uses the *sign* approach on the bootstrap distribution of the mean
    difference: ``p = 2 * min(P*(mean <= 0), P*(mean >= 0))`` with the usual ``+1`` correction
    (``(count + 1) / (n_boot + 1)``) so that a finite number of resamples never reports p = 0, capped
    at 1. It agrees with the percentile interval: the interval excludes 0 exactly when almost all
    resampled means are on one side of 0. ``significant`` is defined by the interval excluding 0.

    Edge cases: no pairs → ``delta`` None, not significant, p None; one pair → the difference is
    reported but not significant (one question carries no evidence about noise), p None; all
    differences exactly 0 → delta 0, p 1.0, not significant.
    """
    _check_params(n_boot, confidence)
    pairs = list(_pairs(metric, challenger, champion))
    n = len(pairs)
    if n == 0:
        return PairedComparison(metric, 0, None, None, None, None, None, None, False)
    arr = np.asarray(pairs, dtype=np.float64)
    ch_mean, champ_mean = float(arr[:, 0].mean()), float(arr[:, 1].mean())
    diffs = arr[:, 0] - arr[:, 1]
    delta = float(diffs.mean())
    if n == 1:
        return PairedComparison(metric, 1, ch_mean, champ_mean, delta, delta, delta, None, False)
    if not diffs.any():
        return PairedComparison(metric, n, ch_mean, champ_mean, 0.0, 0.0, 0.0, 1.0, False)
    means = _bootstrap_means(diffs, n_boot, seed)
    low, high = _percentile_ci(means, confidence)
    low, high = min(low, delta), max(high, delta)
    below = int(np.count_nonzero(means <= 0.0))
    above = int(np.count_nonzero(means >= 0.0))
    p_value = min(1.0, 2.0 * (min(below, above) + 1) / (n_boot + 1))
    significant = low > 0.0 or high < 0.0
    return PairedComparison(metric, n, ch_mean, champ_mean, delta, low, high, p_value, significant)
