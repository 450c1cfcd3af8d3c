"""Windowed serving metrics per route and model version, kept up to date from the change feed.

Why mergeable aggregates: a monitor run every few minutes over a log of millions of rows must cost
what the *new* rows cost, not what the table costs. Every metric row written to
``monitoring_metrics`` therefore carries, in ``state``, the partial aggregate it was computed from —
counts, sums, and for percentiles a sparse log-bucket histogram (:class:`QuantileSketch`). A run
reads only the ``inference_log`` / ``feedback`` rows committed after the previous run's versions
(``lh.changes``), aggregates them, reads back the stored ``state`` of just the windows they touch,
adds the two, and returns the affected windows' rows. Change-feed rows carry a sign: ``insert`` and
``update_postimage`` add, ``update_preimage`` and ``delete`` subtract, so a row the gateway's
journal replays (an upsert of the same ``request_id``) or rewrites is counted once, with its latest
values. The first run, a table without a change feed, a watermark the table no longer has, or stored
windows of another length than ``monitor_window`` → a full read and rebuild (logged, with the reason).
What an incremental run still reads whole on the local engine (delta-rs filters after the scan):
the ``monitoring_metrics`` rows' key columns and states (small: one row per window, route, version
and metric), and, when it scores groundedness, the ``embeddings`` table's ``chunk_id`` and ``text``.

Accuracy: latency, time-to-first-token and retrieval-score percentiles come from a DDSketch-style
histogram with relative accuracy α = 1%: a value x falls in bucket ⌈log_γ |x|⌉, γ = (1+α)/(1−α),
represented by 2γ^i/(γ+1), which is within 1% of every value in the bucket. Quantiles interpolate
linearly between the two order statistics around rank q·(n−1) — the definition numpy's default
percentile uses — so for positive values the sketch's answer is within 1% of ``numpy.percentile``.
Merging adds bucket counts, which is exact: incremental and full runs give the same sketches.

Definitions (see :mod:`.catalog` for the names):
- requests: non-shadow rows; error_rate: share whose status is not ok; ``error_rate:<status>`` for
  error, timeout, refused, fallback (always, 0 when none) and any other status seen;
- tokens_per_s: mean of completion_tokens / latency over requests that produced tokens;
- prompt_tokens / completion_tokens: sums; cost_usd only when ``monitor_prices`` prices the route;
- ``guardrail_block_rate:<check>``: requests the check blocked or refused / requests it ran on;
- retrieval_score_*: the best-ranked (first) source's score in ``sources``;
- dont_know_rate: ``is_abstention(answer)`` over ok answers;
- groundedness: the evaluation's code scorer over at most ``monitor_groundedness_sample`` ok answers
  per window, route and version — the first ones to arrive; a later run only scores new rows while
  the window's sample is not full, and a rewritten row is not re-scored (the sample keeps its first
  score). Skipped when there is no ``embeddings`` table to take the contexts from;
- feedback_count / thumbs_up_rate: ratings windowed by the rating's ``created_at``, attributed to the
  route and version of the request they rate (a rating whose request is not in the log yet is left
  out until the run that reads the request: the gateway writes feedback before its journal flushes).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ragops.lakehouse.base import ChangeFeedUnavailable
from ragops.monitoring.catalog import metric_row, metrics_frame, read_metrics

log = logging.getLogger(__name__)

LOG_TABLE = "inference_log"
FEEDBACK_TABLE = "feedback"

#: What a full read takes from inference_log (chunk_ids only for the groundedness sample, by id).
LOG_COLUMNS = ["request_id", "shadow", "timestamp", "route", "model_version", "question", "answer", "sources",
               "status", "latency_ms", "ttft_ms", "prompt_tokens", "completion_tokens", "guardrails"]
FEEDBACK_COLUMNS = ["feedback_id", "request_id", "rating", "created_at"]
#: Non-ok statuses whose error rate is written for every window, so a quiet window reads 0, not "missing".
KNOWN_ERROR_STATUSES = ("error", "timeout", "refused", "fallback")
BLOCKING_ACTIONS = ("blocked", "refused")
#: Metric families this module writes (and may therefore rewrite or null out).
TRAFFIC_FAMILIES = frozenset({
    "requests", "error_rate", "latency_p50_ms", "latency_p95_ms", "latency_p99_ms", "ttft_p50_ms", "ttft_p95_ms",
    "tokens_per_s", "prompt_tokens", "completion_tokens", "cost_usd", "feedback_count", "thumbs_up_rate",
    "guardrail_block_rate", "retrieval_score_p10", "retrieval_score_p50", "retrieval_score_mean", "groundedness",
    "groundedness_judge", "dont_know_rate",
})
SIGNS = {"insert": 1, "update_postimage": 1, "update_preimage": -1, "delete": -1}

Key = tuple[pd.Timestamp, str, str]  # (window_start, route, model_version)


# --- the percentile sketch -------------------------------------------------------------------------
class QuantileSketch:
    """A mergeable histogram of values in log-spaced buckets (DDSketch): quantiles within ``ALPHA``
    relative error, merge = add counts. Counts may be subtracted (a change feed's pre-images)."""

    ALPHA = 0.01
    GAMMA = (1 + ALPHA) / (1 - ALPHA)
    LN_GAMMA = math.log(GAMMA)
    #: |x| below this counts as 0 (a score of 1e-12 is a score of 0 for monitoring).
    MIN_VALUE = 1e-9

    __slots__ = ("pos", "neg", "zero")

    def __init__(self, pos: dict[int, int] | None = None, neg: dict[int, int] | None = None, zero: int = 0) -> None:
        self.pos: dict[int, int] = pos or {}
        self.neg: dict[int, int] = neg or {}
        self.zero = int(zero)

    @classmethod
    def bucket(cls, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per value: side (1 positive, 0 zero, -1 negative) and bucket index."""
        mag = np.abs(values)
        side = np.where(mag < cls.MIN_VALUE, 0, np.sign(values)).astype(np.int64)
        with np.errstate(divide="ignore", invalid="ignore"):
            idx = np.ceil(np.log(np.where(side == 0, 1.0, mag)) / cls.LN_GAMMA)
        return side, np.where(side == 0, 0, idx).astype(np.int64)

    @property
    def count(self) -> int:
        return sum(self.pos.values()) + sum(self.neg.values()) + self.zero

    def add(self, other: QuantileSketch, sign: int = 1) -> None:
        for mine, theirs in ((self.pos, other.pos), (self.neg, other.neg)):
            for i, c in theirs.items():
                left = mine.get(i, 0) + sign * c
                if left:
                    mine[i] = left
                else:
                    mine.pop(i, None)
        self.zero += sign * other.zero

    def quantile(self, q: float) -> float | None:
        """The q-quantile (0 ≤ q ≤ 1), linearly interpolated between order statistics as numpy does."""
        return self.quantiles([q])[0]

    def quantiles(self, qs: Iterable[float]) -> list[float | None]:
        qs = list(qs)
        n = self.count
        if n <= 0:
            return [None] * len(qs)
        values, counts = [], []
        for i in sorted(self.neg, reverse=True):
            values.append(-2 * self.GAMMA**i / (self.GAMMA + 1))
            counts.append(self.neg[i])
        if self.zero:
            values.append(0.0)
            counts.append(self.zero)
        for i in sorted(self.pos):
            values.append(2 * self.GAMMA**i / (self.GAMMA + 1))
            counts.append(self.pos[i])
        cum = np.cumsum(counts)
        out = []
        for q in qs:
            rank = q * (n - 1)
            lo, hi = math.floor(rank), math.ceil(rank)
            v_lo = values[int(np.searchsorted(cum, lo, side="right"))]
            v_hi = values[int(np.searchsorted(cum, hi, side="right"))]
            out.append(v_lo + (rank - lo) * (v_hi - v_lo))
        return out

    def to_json(self) -> dict[str, Any]:
        return {"alpha": self.ALPHA, "pos": sorted(self.pos.items()), "neg": sorted(self.neg.items()),
                "zero": self.zero}

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> QuantileSketch:
        if not data:
            return cls()
        if abs(float(data.get("alpha", cls.ALPHA)) - cls.ALPHA) > 1e-12:
            raise ValueError(f"sketch written with alpha {data.get('alpha')}, this version uses {cls.ALPHA}")
        return cls({int(i): int(c) for i, c in data.get("pos", [])}, {int(i): int(c) for i, c in data.get("neg", [])},
                   int(data.get("zero", 0)))


# --- one window, route and model version ------------------------------------------------------------
@dataclass
class GroupState:
    """The mergeable aggregate of one (window, route, model_version)."""

    n: int = 0
    status: dict[str, int] = field(default_factory=dict)
    latency: QuantileSketch = field(default_factory=QuantileSketch)
    ttft: QuantileSketch = field(default_factory=QuantileSketch)
    score: QuantileSketch = field(default_factory=QuantileSketch)
    tps_sum: float = 0.0
    tps_n: int = 0
    prompt_sum: int = 0
    prompt_n: int = 0
    completion_sum: int = 0
    completion_n: int = 0
    guard: dict[str, list[int]] = field(default_factory=dict)  # check -> [ran on, blocked or refused]
    score_sum: float = 0.0
    score_n: int = 0
    ok_n: int = 0
    dont_know_n: int = 0
    ground_sum: float = 0.0
    ground_n: int = 0
    judge_sum: float = 0.0  # the LLM judge's verdicts on the same sample (when judge_backend is set)
    judge_n: int = 0
    feedback_n: int = 0
    feedback_up: int = 0

    _SCALARS = ("n", "tps_sum", "tps_n", "prompt_sum", "prompt_n", "completion_sum", "completion_n", "score_sum",
                "score_n", "ok_n", "dont_know_n", "ground_sum", "ground_n", "judge_sum", "judge_n",
                "feedback_n", "feedback_up")

    def add(self, other: GroupState) -> None:
        for name in self._SCALARS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for s, c in other.status.items():
            self.status[s] = self.status.get(s, 0) + c
        for check, (ran, blocked) in other.guard.items():
            mine = self.guard.setdefault(check, [0, 0])
            mine[0] += ran
            mine[1] += blocked
        self.latency.add(other.latency)
        self.ttft.add(other.ttft)
        self.score.add(other.score)
        self.status = {s: c for s, c in self.status.items() if c}
        self.guard = {k: v for k, v in self.guard.items() if v[0] or v[1]}

    # The state JSON of each metric row: just the components that metric is computed from. Reading
    # back every row of a group and taking the union of their components restores the GroupState.
    def components(self, metric: str) -> dict[str, Any]:
        family, _, label = metric.partition(":")
        if family == "requests":
            return {"n": self.n}
        if family == "error_rate":
            return {"n": self.n, "status": {label: self.status.get(label, 0)} if label else dict(self.status)}
        if family.startswith("latency_"):
            return {"latency": self.latency.to_json()}
        if family.startswith("ttft_"):
            return {"ttft": self.ttft.to_json()}
        if family in ("retrieval_score_p10", "retrieval_score_p50"):
            return {"score": self.score.to_json()}
        if family == "retrieval_score_mean":
            return {"score_sum": [self.score_sum, self.score_n]}
        if family == "tokens_per_s":
            return {"tps": [self.tps_sum, self.tps_n]}
        if family in ("prompt_tokens", "completion_tokens", "cost_usd"):
            out = {}
            if family != "completion_tokens":
                out["prompt_tokens"] = [self.prompt_sum, self.prompt_n]
            if family != "prompt_tokens":
                out["completion_tokens"] = [self.completion_sum, self.completion_n]
            return out
        if family == "guardrail_block_rate":
            return {"guard": {label: list(self.guard.get(label, [0, 0]))}}
        if family == "dont_know_rate":
            return {"answers": [self.ok_n, self.dont_know_n]}
        if family == "groundedness":
            return {"groundedness": [self.ground_sum, self.ground_n]}
        if family == "groundedness_judge":
            return {"groundedness_judge": [self.judge_sum, self.judge_n]}
        if family in ("feedback_count", "thumbs_up_rate"):
            return {"feedback": [self.feedback_n, self.feedback_up]}
        raise KeyError(metric)

    def absorb(self, state: dict[str, Any]) -> None:
        """Take the components of one stored row's state (the inverse of :meth:`components`)."""
        if "n" in state:
            self.n = int(state["n"])
        self.status.update({s: int(c) for s, c in state.get("status", {}).items() if int(c)})
        self.guard.update({k: [int(v[0]), int(v[1])] for k, v in state.get("guard", {}).items()})
        for name in ("latency", "ttft", "score"):
            if name in state:
                setattr(self, name, QuantileSketch.from_json(state[name]))
        pairs = {"score_sum": ("score_sum", "score_n"), "tps": ("tps_sum", "tps_n"),
                 "prompt_tokens": ("prompt_sum", "prompt_n"), "completion_tokens": ("completion_sum", "completion_n"),
                 "answers": ("ok_n", "dont_know_n"), "groundedness": ("ground_sum", "ground_n"),
                 "groundedness_judge": ("judge_sum", "judge_n"), "feedback": ("feedback_n", "feedback_up")}
        for comp, (a, b) in pairs.items():
            if comp in state:
                first, second = state[comp]
                setattr(self, a, int(first) if isinstance(getattr(self, a), int) else float(first))
                setattr(self, b, int(second))

    def metric_values(self, price: float | None) -> list[tuple[str, float | None, int]]:
        """(metric, value, count) for every metric defined by this state."""
        out: list[tuple[str, float | None, int]] = []
        n = self.n
        if n > 0:
            out.append(("requests", n, n))
            out.append(("error_rate", (n - self.status.get("ok", 0)) / n, n))
            for s in sorted(set(KNOWN_ERROR_STATUSES) | set(self.status) - {"ok"}):
                out.append((f"error_rate:{s}", self.status.get(s, 0) / n, n))
        for name, sketch, qs in (("latency", self.latency, (50, 95, 99)), ("ttft", self.ttft, (50, 95))):
            c = sketch.count
            if c > 0:
                values = sketch.quantiles([q / 100 for q in qs])
                out.extend((f"{name}_p{q}_ms", v, c) for q, v in zip(qs, values, strict=True))
        if self.tps_n > 0:
            out.append(("tokens_per_s", self.tps_sum / self.tps_n, self.tps_n))
        if self.prompt_n > 0:
            out.append(("prompt_tokens", self.prompt_sum, self.prompt_n))
        if self.completion_n > 0:
            out.append(("completion_tokens", self.completion_sum, self.completion_n))
        if price is not None and (self.prompt_n or self.completion_n):
            out.append(("cost_usd", (self.prompt_sum + self.completion_sum) / 1000 * price,
                        max(self.prompt_n, self.completion_n)))
        for check, (ran, blocked) in sorted(self.guard.items()):
            if ran > 0:
                out.append((f"guardrail_block_rate:{check}", blocked / ran, ran))
        c = self.score.count
        if c > 0:
            p10, p50 = self.score.quantiles([0.10, 0.50])
            out.append(("retrieval_score_p10", p10, c))
            out.append(("retrieval_score_p50", p50, c))
        if self.score_n > 0:
            out.append(("retrieval_score_mean", self.score_sum / self.score_n, self.score_n))
        if self.ok_n > 0:
            out.append(("dont_know_rate", self.dont_know_n / self.ok_n, self.ok_n))
        if self.ground_n > 0:
            out.append(("groundedness", self.ground_sum / self.ground_n, self.ground_n))
        if self.judge_n > 0:
            out.append(("groundedness_judge", self.judge_sum / self.judge_n, self.judge_n))
        if n > 0 or self.feedback_n > 0:
            out.append(("feedback_count", self.feedback_n, self.feedback_n))
        if self.feedback_n > 0:
            out.append(("thumbs_up_rate", self.feedback_up / self.feedback_n, self.feedback_n))
        return out


# --- vectorised aggregation -------------------------------------------------------------------------
def _group_codes(window: pd.Series, route: pd.Series, version: pd.Series) -> tuple[np.ndarray, list[Key]]:
    window_ns = window.dt.tz_convert("UTC").dt.tz_localize(None).astype("datetime64[ns]").to_numpy().view("int64")
    keys = pd.DataFrame({"w": window_ns,
                         "r": route.to_numpy(), "m": version.to_numpy()})
    codes = keys.groupby(["w", "r", "m"], sort=False).ngroup().to_numpy()
    first = keys.assign(c=codes).drop_duplicates("c").sort_values("c")
    return codes, [(pd.Timestamp(int(w), unit="ns", tz="UTC"), str(r), str(m))
                   for w, r, m in zip(first["w"], first["r"], first["m"], strict=True)]


def _labels(series: pd.Series) -> pd.Series:
    return series.fillna("").astype(str)


def _windows(ts: pd.Series, window_seconds: int) -> pd.Series:
    if not isinstance(ts.dtype, pd.DatetimeTZDtype):  # to_datetime on a tz-aware column walks it in Python
        ts = pd.to_datetime(ts, utc=True)
    return ts.dt.tz_convert("UTC").dt.floor(f"{int(window_seconds)}s")


def _sketches(codes: np.ndarray, values: np.ndarray, weights: np.ndarray, n_groups: int) -> list[QuantileSketch]:
    """One sketch per group from per-row values (NaN = no value) and signed weights."""
    out = [QuantileSketch() for _ in range(n_groups)]
    valid = ~np.isnan(values)
    if not valid.any():
        return out
    codes, values, weights = codes[valid], values[valid], weights[valid]
    side, idx = QuantileSketch.bucket(values)
    offset = 1 << 20
    idx = np.clip(idx, -offset + 1, offset - 1)
    combined = (codes.astype(np.int64) * 3 + (side + 1)) * (offset * 2) + (idx + offset)
    uniq, inverse = np.unique(combined, return_inverse=True)
    counts = np.rint(np.bincount(inverse, weights=weights)).astype(np.int64)
    keep = counts != 0
    uniq, counts = uniq[keep], counts[keep]
    bucket_idx = (uniq % (offset * 2) - offset).tolist()
    group_side = uniq // (offset * 2)
    group, sides = (group_side // 3).tolist(), (group_side % 3 - 1).tolist()
    for g, s, i, c in zip(group, sides, bucket_idx, counts.tolist(), strict=True):
        sketch = out[g]
        if s > 0:
            sketch.pos[i] = c
        elif s < 0:
            sketch.neg[i] = c
        else:
            sketch.zero += c
    return out


def _top_scores(sources: pd.Series) -> np.ndarray:
    """The first ``"score"`` in each sources JSON (the best-ranked source), NaN where none — by a regex
    over the Arrow column instead of one ``json.loads`` per row."""
    arr = pa.array(sources.to_numpy(dtype=object), type=pa.string(), from_pandas=True)
    found = pc.struct_field(pc.extract_regex(arr, r'"score"\s*:\s*(?P<s>-?[0-9][0-9.eE+-]*)'), "s")
    return pc.cast(found, pa.float64()).to_numpy(zero_copy_only=False).astype(float)


def _guardrail_outcomes(guardrails: pd.Series) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per check: per row, did it run and did it block or refuse. Parses each distinct JSON value once
    (requests of one route share a handful of outcome lists)."""
    codes, uniques = pd.factorize(guardrails, use_na_sentinel=True)
    ran: dict[str, np.ndarray] = {}
    blocked: dict[str, np.ndarray] = {}
    for u, text in enumerate(uniques):
        try:
            outcomes = json.loads(text)
        except (TypeError, ValueError):
            continue
        for o in outcomes if isinstance(outcomes, list) else []:
            if not isinstance(o, dict) or not o.get("check"):
                continue
            check = str(o["check"])
            ran.setdefault(check, np.zeros(len(uniques) + 1, dtype=bool))[u] = True
            if o.get("action") in BLOCKING_ACTIONS:
                blocked.setdefault(check, np.zeros(len(uniques) + 1, dtype=bool))[u] = True
    # code -1 (null) indexes the extra last slot, which stays False
    return {c: (ran[c][codes], blocked.get(c, np.zeros(len(uniques) + 1, dtype=bool))[codes]) for c in ran}


def _abstentions(answers: pd.Series, candidates: np.ndarray) -> np.ndarray:
    """``is_abstention`` per row where ``candidates``; a vectorised pre-filter ("know" anywhere in the
    text) keeps the Python calls to the few answers that could be one."""
    from ragops.evaluation.metrics._text import is_abstention

    out = np.zeros(len(answers), dtype=bool)
    if not candidates.any():
        return out
    arr = pa.array(answers.to_numpy(dtype=object), type=pa.string(), from_pandas=True)
    maybe = pc.fill_null(pc.match_substring(arr, "know", ignore_case=True), False).to_numpy(zero_copy_only=False)
    maybe &= candidates
    for i in np.flatnonzero(maybe):
        out[i] = is_abstention(answers.iat[i])
    return out


def _int_col(series: pd.Series) -> np.ndarray:
    return pd.to_numeric(series, errors="coerce").to_numpy(dtype=float, na_value=np.nan)


def aggregate_log(rows: pd.DataFrame, signs: np.ndarray, window_seconds: int) -> dict[Key, GroupState]:
    """Fold inference-log rows (each with a sign: +1 counts it, -1 takes it back) into group states.
    Shadow rows are left out."""
    keep = ~rows["shadow"].fillna(False).astype(bool).to_numpy()
    rows, signs = rows[keep], np.asarray(signs, dtype=np.int64)[keep]
    if rows.empty:
        return {}
    codes, keys = _group_codes(_windows(rows["timestamp"], window_seconds), _labels(rows["route"]),
                               _labels(rows["model_version"]))
    g = len(keys)
    w = signs.astype(float)

    def total(values: np.ndarray) -> np.ndarray:
        return np.bincount(codes, weights=values, minlength=g)

    status = rows["status"].fillna("unknown").astype(str)
    status_codes, status_names = pd.factorize(status)
    status_counts = np.rint(np.bincount(codes * len(status_names) + status_codes, weights=w,
                                        minlength=g * len(status_names))).astype(np.int64).reshape(g, -1)
    ok = (status == "ok").to_numpy()
    latency = _int_col(rows["latency_ms"])
    completion = _int_col(rows["completion_tokens"])
    prompt = _int_col(rows["prompt_tokens"])
    tps_valid = (completion > 0) & (latency > 0)
    tps = np.where(tps_valid, completion / np.where(latency > 0, latency, 1.0) * 1000.0, 0.0)
    score = _top_scores(rows["sources"])
    dont_know = _abstentions(rows["answer"], ok)
    guard = _guardrail_outcomes(rows["guardrails"])

    n = np.rint(total(w)).astype(np.int64)
    sums = {
        "tps_sum": total(w * tps), "tps_n": total(w * tps_valid),
        "prompt_sum": total(w * np.nan_to_num(prompt)), "prompt_n": total(w * ~np.isnan(prompt)),
        "completion_sum": total(w * np.nan_to_num(completion)), "completion_n": total(w * ~np.isnan(completion)),
        "score_sum": total(w * np.nan_to_num(score)), "score_n": total(w * ~np.isnan(score)),
        "ok_n": total(w * ok), "dont_know_n": total(w * dont_know),
    }
    guard_counts = {c: (np.rint(total(w * r)).astype(np.int64), np.rint(total(w * b)).astype(np.int64))
                    for c, (r, b) in guard.items()}
    latency_sk = _sketches(codes, latency, w, g)
    ttft_sk = _sketches(codes, _int_col(rows["ttft_ms"]), w, g)
    score_sk = _sketches(codes, score, w, g)

    states: dict[Key, GroupState] = {}
    for i, key in enumerate(keys):
        st = GroupState(n=int(n[i]), latency=latency_sk[i], ttft=ttft_sk[i], score=score_sk[i])
        for name, arr in sums.items():
            value = arr[i]
            setattr(st, name, float(value) if name in ("tps_sum", "score_sum") else int(round(value)))
        st.status = {str(status_names[j]): int(c) for j, c in enumerate(status_counts[i]) if c}
        st.guard = {c: [int(r[i]), int(b[i])] for c, (r, b) in guard_counts.items() if r[i] or b[i]}
        states[key] = st
    return states


def aggregate_feedback(ratings: pd.DataFrame, signs: np.ndarray, window_seconds: int) -> dict[Key, GroupState]:
    """Fold feedback rows that carry their request's ``route`` and ``model_version`` into group states."""
    keep = ratings["rating"].notna().to_numpy()
    ratings, signs = ratings[keep], np.asarray(signs, dtype=np.int64)[keep]
    if ratings.empty:
        return {}
    codes, keys = _group_codes(_windows(ratings["created_at"], window_seconds), _labels(ratings["route"]),
                               _labels(ratings["model_version"]))
    w = signs.astype(float)
    count = np.rint(np.bincount(codes, weights=w, minlength=len(keys))).astype(np.int64)
    up = (pd.to_numeric(ratings["rating"], errors="coerce").fillna(0) > 0).to_numpy()
    ups = np.rint(np.bincount(codes, weights=w * up, minlength=len(keys))).astype(np.int64)
    return {key: GroupState(feedback_n=int(count[i]), feedback_up=int(ups[i])) for i, key in enumerate(keys)}


def merge_states(into: dict[Key, GroupState], more: dict[Key, GroupState]) -> dict[Key, GroupState]:
    for key, st in more.items():
        if key in into:
            into[key].add(st)
        else:
            into[key] = st
    return into


# --- the run ----------------------------------------------------------------------------------------
@dataclass
class TrafficUpdate:
    metrics: pd.DataFrame  # rows in the monitoring_metrics schema (catalog.metrics_frame) to upsert
    log_version: int | None  # inference_log version read up to (None: table missing)
    feedback_version: int | None
    rows_read: int  # inference_log + feedback rows read this run
    windows: list[pd.Timestamp]  # window starts recomputed
    mode: str  # "full" | "incremental" | "unchanged"
    questions: pd.DataFrame  # columns timestamp, route, question of the NEW non-shadow rows (for drift)


def _no_questions() -> pd.DataFrame:
    return pd.DataFrame({"timestamp": pd.Series([], dtype="datetime64[us, UTC]"),
                         "route": pd.Series([], dtype=object), "question": pd.Series([], dtype=object)})


def _questions(rows: pd.DataFrame) -> pd.DataFrame:
    if rows.empty:
        return _no_questions()
    served = rows[~rows["shadow"].fillna(False).astype(bool)]
    return pd.DataFrame({"timestamp": served["timestamp"], "route": _labels(served["route"]),
                         "question": served["question"]}).reset_index(drop=True)


def _signed_changes(changes: pd.DataFrame, table: str) -> tuple[pd.DataFrame, np.ndarray]:
    kinds = changes["_change_type"].astype(str)
    unknown = set(kinds) - set(SIGNS)
    if unknown:
        log.warning("%s change feed: ignoring change types %s", table, sorted(unknown))
    keep = kinds.isin(list(SIGNS)).to_numpy()
    return changes[keep].reset_index(drop=True), kinds[keep].map(SIGNS).to_numpy(dtype=np.int64)


def _attribute_feedback(lh, ratings: pd.DataFrame, log_rows: pd.DataFrame | None, log_version: int) -> pd.DataFrame:
    """Add each rating's request's route and model_version: from the log rows read this run where the
    request is among them, else looked up in inference_log by request_id."""
    served_cols = ["request_id", "route", "model_version"]
    known = pd.DataFrame(columns=served_cols)
    if log_rows is not None and not log_rows.empty:
        known = log_rows.loc[~log_rows["shadow"].fillna(False).astype(bool), served_cols]
    missing = sorted(set(ratings["request_id"]) - set(known["request_id"]))
    if missing:
        looked_up = lh.read(LOG_TABLE, ["request_id", "shadow", "route", "model_version"], version=log_version,
                            where={"request_id": missing})
        looked_up = looked_up.loc[~looked_up["shadow"].fillna(False).astype(bool), served_cols]
        known = pd.concat([known, looked_up], ignore_index=True)
    known = known.drop_duplicates("request_id", keep="last")
    orphans = ~ratings["request_id"].isin(known["request_id"])
    if orphans.any():
        log.info("feedback: %d rating(s) for requests not in inference_log yet are left out until their request "
                 "is logged", int(orphans.sum()))
    return ratings[~orphans.to_numpy()].merge(known, on="request_id", how="left")


def _score_groundedness(lh, settings, candidates: pd.DataFrame, states: dict[Key, GroupState],
                        window_seconds: int, log_version: int, full: bool) -> dict[Key, GroupState]:
    """Groundedness of the first not-yet-scored ok answers per group, up to the sample size."""
    sample = int(settings.monitoring.groundedness_sample)
    if sample <= 0 or candidates.empty:
        return {}
    if not lh.exists("embeddings"):
        log.info("groundedness skipped: there is no embeddings table to take the answers' contexts from")
        return {}
    from ragops.evaluation.metrics._text import content_tokens, is_abstention
    from ragops.evaluation.metrics.groundedness import groundedness

    judge = _judge(settings)
    if judge is not None:  # (judges import LangChain: only when one is configured)
        from ragops.evaluation.judges import JudgeError

    c = candidates[~candidates["shadow"].fillna(False).astype(bool) & (candidates["status"] == "ok")
                   & candidates["answer"].notna()].copy()
    if c.empty:
        return {}
    c["g_window"] = _windows(c["timestamp"], window_seconds)
    c["g_route"], c["g_version"] = _labels(c["route"]), _labels(c["model_version"])
    c = c.sort_values(["timestamp", "request_id"], kind="stable")
    picked = []
    for (w, r, m), grp in c.groupby(["g_window", "g_route", "g_version"], sort=False):
        have = states.get((pd.Timestamp(w), r, m))
        room = sample - (have.ground_n if have else 0)
        if room > 0:
            take = []  # the first `room` answers that are not "I don't know" (stop scanning once full)
            for pos, answer in enumerate(grp["answer"]):
                if not is_abstention(answer):
                    take.append(pos)
                    if len(take) == room:
                        break
            picked.append(grp.iloc[take])
    if not picked:
        return {}
    chosen = pd.concat(picked)
    if full or "chunk_ids" not in chosen.columns:
        ids = lh.read(LOG_TABLE, ["request_id", "shadow", "chunk_ids"], version=log_version,
                      where={"request_id": chosen["request_id"].tolist()})
        ids = ids[~ids["shadow"].fillna(False).astype(bool)].drop_duplicates("request_id")
        chosen = chosen.drop(columns=["chunk_ids"], errors="ignore").merge(ids[["request_id", "chunk_ids"]],
                                                                           on="request_id", how="left")
    wanted = sorted({str(x) for ids in chosen["chunk_ids"] if ids is not None for x in ids})
    texts = {}
    if wanted:
        found = lh.read("embeddings", ["chunk_id", "text"], where={"chunk_id": wanted})
        texts = dict(zip(found["chunk_id"], found["text"], strict=True))
    # The scorer only uses the contexts' set of content tokens: tokenise each chunk once, and hand the
    # scorer the union as one context (normalised tokens re-tokenise to themselves) — the same score
    # for a fraction of the work when answers cite the same chunks.
    chunk_tokens = {cid: frozenset(content_tokens(text)) for cid, text in texts.items() if text}
    out: dict[Key, GroupState] = {}
    for row in chosen.itertuples(index=False):
        ids = row.chunk_ids if row.chunk_ids is not None else []
        known = set().union(*(chunk_tokens[i] for i in ids if i in chunk_tokens))
        score = groundedness(row.answer, [" ".join(sorted(known))] if known else [])
        if score is None:
            continue
        st = out.setdefault((pd.Timestamp(row.g_window), row.g_route, row.g_version), GroupState())
        st.ground_sum += float(score)
        st.ground_n += 1
        if judge is not None:  # the same answer, the full cited chunks, the evaluation's judge
            contexts = [texts[i] for i in ids if texts.get(i)]
            try:
                verdict = judge.judge_groundedness(row.answer, contexts)
            except JudgeError as exc:  # a judge that cannot answer leaves the code scorer's value standing
                log.warning("groundedness judge: request %s not judged: %s", row.request_id, exc)
                continue
            st.judge_sum += float(verdict.score)
            st.judge_n += 1
    return out


def _judge(settings):
    """The evaluation's LLM judge when ``judge_backend`` is set (verdicts cached under ``<root>/judge_cache``)."""
    config = settings.evaluation.judge()
    if config is None:
        return None
    from ragops.evaluation.judges import Judge

    return Judge.from_config(config, cache_dir=settings.root / "judge_cache")


def _rows_for(states: dict[Key, GroupState], settings, window_seconds: int,
              source_version: int | None) -> tuple[list[dict[str, Any]], set[tuple]]:
    rows, emitted = [], set()
    span = pd.Timedelta(seconds=window_seconds)
    for (window, route, version), st in sorted(states.items()):
        price = settings.monitoring.price_of(route)
        encoded: dict[str, str] = {}  # p50/p95/p99 share one sketch: serialise it once
        for metric, value, count in st.metric_values(price):
            row = metric_row(window, window + span, metric, value, count, route=route, model_version=version,
                             source_version=source_version)
            shared = metric.partition(":")[0] if ":" not in metric else metric
            if shared.startswith(("latency_", "ttft_", "retrieval_score_p")):
                shared = shared.split("_p")[0]
            if shared not in encoded:
                encoded[shared] = json.dumps(st.components(metric), separators=(",", ":"), sort_keys=True)
            row["state"] = encoded[shared]
            rows.append(row)
            emitted.add((window, route, version, metric))
    return rows, emitted


def _stored_metrics(lh, windows: Iterable[pd.Timestamp] | None, *, with_state: bool = True) -> pd.DataFrame:
    """Stored traffic rows (of the given windows; all when None) that still hold a value."""
    cols = ["window_start", "window_end", "route", "model_version", "metric", "value"] + (
        ["state"] if with_state else [])
    stored = read_metrics(lh, windows, cols)
    if stored.empty:  # (a created, still empty table: .str.partition of nothing has no columns)
        return stored
    families = stored["metric"].str.partition(":")[0]
    stored = stored[families.isin(TRAFFIC_FAMILIES).to_numpy() & stored["value"].notna().to_numpy()]
    stored["window_start"] = pd.to_datetime(stored["window_start"], utc=True)
    return stored


def _tombstones(stored: pd.DataFrame, emitted: set[tuple], source_version: int | None) -> list[dict[str, Any]]:
    """A null row for every stored metric the recomputation no longer defines (its rows were rewritten
    or deleted), so a stale value does not stay in the table."""
    out = []
    for r in stored.itertuples(index=False):
        key = (pd.Timestamp(r.window_start), r.route, r.model_version, r.metric)
        if key not in emitted:
            out.append(metric_row(r.window_start, r.window_end, r.metric, None, 0, route=r.route,
                                  model_version=r.model_version, state=None, source_version=source_version))
    return out


def update_traffic(lh, settings, *, since_log_version: int | None,
                   since_feedback_version: int | None) -> TrafficUpdate:
    """Bring the traffic metrics up to ``inference_log`` / ``feedback``'s current versions.

    ``since_*`` are the versions the previous run read up to (its ``TrafficUpdate.log_version`` /
    ``feedback_version``; None the first time). Returns the rows to upsert into ``monitoring_metrics``.
    """
    ws = int(settings.monitoring.window_seconds)
    log_now = lh.version(LOG_TABLE) if lh.exists(LOG_TABLE) else None
    fb_now = lh.version(FEEDBACK_TABLE) if lh.exists(FEEDBACK_TABLE) else None
    if log_now is None:
        if since_log_version is not None:
            log.warning("inference_log is gone (the previous run read it up to version %s); no traffic metrics",
                        since_log_version)
        return TrafficUpdate(metrics_frame([]), None, fb_now, 0, [], "unchanged", _no_questions())
    if log_now == since_log_version and fb_now == since_feedback_version:
        return TrafficUpdate(metrics_frame([]), log_now, fb_now, 0, [], "unchanged", _no_questions())

    reason = None
    if since_log_version is None:
        reason = "first run: no inference_log version read before"
    elif since_log_version > log_now:
        reason = f"inference_log is at version {log_now}, before the watermark {since_log_version} (re-created?)"
    elif since_feedback_version is not None and (fb_now is None or since_feedback_version > fb_now):
        reason = f"feedback is at version {fb_now}, not after the watermark {since_feedback_version}"
    log_delta = fb_delta = None
    if reason is None:
        try:
            log_delta = (lh.changes(LOG_TABLE, since_log_version, log_now) if log_now != since_log_version
                         else None)
            if fb_now is not None and fb_now != since_feedback_version:
                fb_delta = (lh.changes(FEEDBACK_TABLE, since_feedback_version, fb_now)
                            if since_feedback_version is not None else None)
        except ChangeFeedUnavailable as exc:
            reason = f"change feed unavailable ({exc})"
    if reason is not None:
        log.info("traffic metrics: full read and rebuild — %s", reason)
        return _full(lh, settings, ws, log_now, fb_now)
    return _incremental(lh, settings, ws, log_now, fb_now, since_feedback_version, log_delta, fb_delta)


def _full(lh, settings, ws: int, log_now: int, fb_now: int | None) -> TrafficUpdate:
    rows = lh.read(LOG_TABLE, LOG_COLUMNS, version=log_now)
    states = aggregate_log(rows, np.ones(len(rows), dtype=np.int64), ws)
    read = len(rows)
    if fb_now is not None:
        ratings = lh.read(FEEDBACK_TABLE, FEEDBACK_COLUMNS, version=fb_now)
        read += len(ratings)
        if not ratings.empty:
            ratings = _attribute_feedback(lh, ratings, rows, log_now)
            merge_states(states, aggregate_feedback(ratings, np.ones(len(ratings), dtype=np.int64), ws))
    merge_states(states, _score_groundedness(lh, settings, rows, states, ws, log_now, full=True))
    metric_rows, emitted = _rows_for(states, settings, ws, log_now)
    metric_rows += _tombstones(_stored_metrics(lh, None, with_state=False), emitted, log_now)
    windows = sorted({k[0] for k in states})
    return TrafficUpdate(metrics_frame(metric_rows), log_now, fb_now, read, windows, "full", _questions(rows))


def _incremental(lh, settings, ws: int, log_now: int, fb_now: int | None, since_fb: int | None,
                 log_delta: pd.DataFrame | None, fb_delta: pd.DataFrame | None) -> TrafficUpdate:
    read = 0
    delta: dict[Key, GroupState] = {}
    new_rows = pd.DataFrame(columns=LOG_COLUMNS + ["chunk_ids"])
    current_rows = None
    if log_delta is not None and not log_delta.empty:
        changed, signs = _signed_changes(log_delta, LOG_TABLE)
        read += len(log_delta)
        delta = aggregate_log(changed, signs, ws)
        new_rows = changed[(changed["_change_type"] == "insert").to_numpy()]
        current_rows = changed[signs > 0]
    if since_fb is not None and not new_rows.empty:
        # Ratings an earlier run read before their request reached the log (the gateway writes feedback
        # at once and the log row when its journal flushes), so they were left out then: a request
        # inserted now was not in the log before, so every rating it had at since_fb is one of those.
        late = lh.read(FEEDBACK_TABLE, FEEDBACK_COLUMNS, version=since_fb,
                       where={"request_id": new_rows["request_id"].dropna().unique().tolist()})
        if not late.empty:
            read += len(late)
            late = _attribute_feedback(lh, late.assign(_sign=1), current_rows, log_now)
            merge_states(delta, aggregate_feedback(late, late["_sign"].to_numpy(), ws))
    if fb_now is not None and fb_now != since_fb:
        if fb_delta is None:  # the feedback table is new since the last run: all of it is new
            ratings = lh.read(FEEDBACK_TABLE, FEEDBACK_COLUMNS, version=fb_now)
            fb_signs = np.ones(len(ratings), dtype=np.int64)
            read += len(ratings)
        else:
            ratings, fb_signs = _signed_changes(fb_delta, FEEDBACK_TABLE)
            read += len(fb_delta)
        if not ratings.empty:
            ratings = ratings.assign(_sign=fb_signs)
            ratings = _attribute_feedback(lh, ratings, current_rows, log_now)
            merge_states(delta, aggregate_feedback(ratings, ratings["_sign"].to_numpy(), ws))
    if not delta:
        return TrafficUpdate(metrics_frame([]), log_now, fb_now, read, [], "incremental", _questions(new_rows))

    windows = sorted({k[0] for k in delta})
    stored = _stored_metrics(lh, windows)
    spans = (pd.to_datetime(stored["window_end"], utc=True) - stored["window_start"]).dt.total_seconds()
    if (spans != ws).any():
        log.info("traffic metrics: full read and rebuild — stored windows are %ss long, monitor_window is now %ss",
                 int(spans[spans != ws].iloc[0]), ws)
        return _full(lh, settings, ws, log_now, fb_now)
    stored = stored[[(pd.Timestamp(w), r, m) in delta for w, r, m in
                     zip(stored["window_start"], stored["route"], stored["model_version"], strict=True)]]
    states: dict[Key, GroupState] = {}
    for r in stored.itertuples(index=False):
        if r.state:
            states.setdefault((pd.Timestamp(r.window_start), r.route, r.model_version), GroupState()).absorb(
                json.loads(r.state))
    grounded = _score_groundedness(lh, settings, new_rows, states, ws, log_now, full=False)
    merge_states(states, delta)
    merge_states(states, grounded)
    metric_rows, emitted = _rows_for(states, settings, ws, log_now)
    metric_rows += _tombstones(stored, emitted, log_now)
    return TrafficUpdate(metrics_frame(metric_rows), log_now, fb_now, read, windows, "incremental",
                         _questions(new_rows))


__all__ = ["GroupState", "QuantileSketch", "TrafficUpdate", "aggregate_feedback", "aggregate_log", "update_traffic"]
