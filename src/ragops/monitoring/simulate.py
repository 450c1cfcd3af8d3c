"""Synthetic gateway traffic with problems injected where a test or benchmark wants them.

The monitor job's tests need traffic whose answer is known — "window 3 had a latency spike, the
others did not" — and its benchmark needs a million rows; neither can wait for a real gateway.
:func:`synthetic_log` draws rows in the exact ``inference_log`` schema (``validate`` accepts them),
vectorised with numpy so a million rows take seconds, and :func:`synthetic_feedback` rates some of
them. Problems are small dataclasses that name the window they hit (``window_index`` counts windows
from ``start``):

    frame = synthetic_log(2000, start=pd.Timestamp("2026-01-01", tz="UTC"), windows=6,
                          problems=[LatencySpike(2, factor=5.0), ErrorBurst(4, rate=0.3)])

What a row looks like: status ``ok`` with an answer, three ``sources`` (JSON, best first, scores in
(0, 1)) and their ``chunk_ids`` (``doc<d>-c<c>``, see :func:`chunk_ids_pool`), guardrail outcomes for
an ``injection`` input check and a ``pii`` output check; about 1% ``error`` (500), 0.5% ``timeout``
(504), 1% ``refused`` by the injection check (400), and ``dont_know_share`` of ok answers the chain's
"I don't know" reply. Latency is lognormal with the given mean and standard deviation (ms).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ragops.lakehouse.schemas import spec

#: Documents and chunks per document the synthetic sources are drawn from.
N_DOCS = 50
CHUNKS_PER_DOC = 4

DEFAULT_QUESTIONS = (
    "How long are raw samples kept before downsampling?",
    "Which port does the collector listen on?",
    "What does the support SLA promise for severity 1 incidents?",
    "How do I fix a full disk on the ingest node?",
    "What changed in release 4.0.0?",
    "Can retention be configured per tenant?",
    "How do I rotate the collector's TLS certificate?",
    "What is the default scrape interval?",
)
DONT_KNOW_ANSWER = "I don't know: the indexed documents do not cover this question."


@dataclass(frozen=True)
class LatencySpike:
    """Every request in window ``window_index`` takes ``factor`` times as long (time to first token too)."""

    window_index: int
    factor: float


@dataclass(frozen=True)
class ErrorBurst:
    """A share ``rate`` of window ``window_index``'s requests fail with ``status`` / ``http_status``."""

    window_index: int
    rate: float
    status: str = "error"
    http_status: int = 500


@dataclass(frozen=True)
class DriftedQueries:
    """A share ``share`` of window ``window_index``'s questions are drawn from ``questions`` instead."""

    window_index: int
    questions: Sequence[str]
    share: float


Problem = LatencySpike | ErrorBurst | DriftedQueries


def chunk_ids_pool() -> list[str]:
    """Every chunk id a synthetic row may cite (for building a matching ``embeddings`` table)."""
    return [f"doc{d}-c{c}" for d in range(N_DOCS) for c in range(CHUNKS_PER_DOC)]


def _lognormal(rng: np.random.Generator, mean: float, sd: float, n: int) -> np.ndarray:
    sigma2 = np.log1p((sd / mean) ** 2)
    return rng.lognormal(np.log(mean) - sigma2 / 2, np.sqrt(sigma2), n)


def synthetic_log(
    n: int,
    *,
    start: pd.Timestamp,
    window_seconds: int = 3600,
    windows: int = 24,
    routes: Sequence[str] = ("rag_chain",),
    model_versions: Sequence[str] = ("1",),
    seed: int = 0,
    questions: Sequence[str] | None = None,
    latency_ms: tuple[float, float] = (800.0, 300.0),
    dont_know_share: float = 0.05,
    shadow_share: float = 0.0,
    id_prefix: str | None = None,
    problems: Sequence[Problem] = (),
) -> pd.DataFrame:
    """``n`` served requests spread uniformly over ``windows`` windows of ``window_seconds`` from
    ``start``, sorted by time, in the ``inference_log`` schema.

    ``shadow_share`` adds a shadow answer (same ``request_id``, ``shadow=True``) for that share of
    requests, on top of the ``n``. Request ids are ``<id_prefix>-<i>`` (default prefix ``s<seed>``):
    give frames meant to be appended to one table different seeds or prefixes.
    """
    rng = np.random.default_rng(seed)
    start = pd.Timestamp(start)
    start = start.tz_localize("UTC") if start.tzinfo is None else start.tz_convert("UTC")
    prefix = f"s{seed}" if id_prefix is None else id_prefix
    span_us = int(windows) * int(window_seconds) * 1_000_000
    offsets_us = np.sort(rng.integers(0, span_us, n))
    window_index = offsets_us // (int(window_seconds) * 1_000_000)
    timestamps = pd.to_datetime(start.value // 1000 + offsets_us, unit="us", utc=True)

    pool = list(questions or DEFAULT_QUESTIONS)
    question = np.asarray(pool, dtype=object)[rng.integers(0, len(pool), n)]
    latency = _lognormal(rng, latency_ms[0], latency_ms[1], n)
    ttft = latency * rng.uniform(0.15, 0.4, n)
    prompt_tokens = rng.integers(300, 900, n)
    completion_tokens = rng.integers(20, 200, n)

    u = rng.random(n)
    status = np.where(u < 0.01, "error", np.where(u < 0.015, "timeout", np.where(u < 0.025, "refused", "ok")))
    status = status.astype(object)
    http_status = np.select([status == "error", status == "timeout", status == "refused"], [500, 504, 400], 200)

    for p in problems:
        in_window = window_index == p.window_index
        if isinstance(p, LatencySpike):
            latency = np.where(in_window, latency * p.factor, latency)
            ttft = np.where(in_window, ttft * p.factor, ttft)
        elif isinstance(p, ErrorBurst):
            hit = in_window & (rng.random(n) < p.rate)
            status[hit] = p.status
            http_status = np.where(hit, p.http_status, http_status)
        elif isinstance(p, DriftedQueries):
            hit = in_window & (rng.random(n) < p.share)
            drifted = np.asarray(list(p.questions), dtype=object)
            question[hit] = drifted[rng.integers(0, len(drifted), int(hit.sum()))]
        else:
            raise TypeError(f"unknown problem {p!r}; use LatencySpike, ErrorBurst or DriftedQueries")

    ok = status == "ok"
    answered = ok | (status == "fallback")
    dont_know = ok & (rng.random(n) < dont_know_share)
    answer = np.where(dont_know, DONT_KNOW_ANSWER, None).astype(object)
    plain = answered & ~dont_know
    answer[plain] = [f"The documents say the setting is {k} days [1]." for k in rng.integers(1, 90, int(plain.sum()))]
    answer[status == "refused"] = "This request was refused by the gateway's guardrails."

    # Sources: three chunks, best first, with a top score around 0.7.
    top = np.clip(rng.beta(7, 3, n), 0.01, 0.999)
    second, third = top * rng.uniform(0.7, 0.99, n), top * rng.uniform(0.4, 0.7, n)
    docs = rng.integers(0, N_DOCS, (n, 3))
    chunks = rng.integers(0, CHUNKS_PER_DOC, (n, 3))
    sources: list[str] = []
    chunk_ids: list[list[str]] = []
    for i in range(n):
        if not answered[i]:
            sources.append("[]")
            chunk_ids.append([])
            continue
        ids = [f"doc{docs[i, j]}-c{chunks[i, j]}" for j in range(3)]
        scores = (top[i], second[i], third[i])
        sources.append(json.dumps([
            {"doc_id": f"doc{docs[i, j]}", "source_uri": f"file:///corpus/doc{docs[i, j]}.md", "chunk_id": ids[j],
             "score": round(float(scores[j]), 4)} for j in range(3)
        ]))
        chunk_ids.append(ids)

    pii_action = np.where(rng.random(n) < 0.02, "redacted", "pass").astype(object)
    pii_action[(rng.random(n) < 0.005) & ok] = "blocked"
    guardrails = np.empty(n, dtype=object)
    for action in ("pass", "redacted", "blocked"):
        sel = answered & (pii_action == action)
        guardrails[sel] = json.dumps([{"check": "injection", "stage": "input", "action": "pass"},
                                      {"check": "pii", "stage": "output", "action": action}])
    guardrails[~answered] = json.dumps([{"check": "injection", "stage": "input", "action": "pass"}])
    guardrails[status == "refused"] = json.dumps([{"check": "injection", "stage": "input", "action": "refused"}])

    failed = ~answered & (status != "refused")
    route = np.asarray(list(routes), dtype=object)[rng.integers(0, len(routes), n)]
    version = np.asarray(list(model_versions), dtype=object)[rng.integers(0, len(model_versions), n)]
    frame = pd.DataFrame({
        "request_id": [f"{prefix}-{i:08d}" for i in range(n)],
        "shadow": np.zeros(n, dtype=bool),
        "timestamp": timestamps,
        "endpoint": "gateway",
        "key_name": np.where(rng.random(n) < 0.5, "key-a", "key-b").astype(object),
        "route": route,
        "target": "champion",
        "model_name": "rag_llm",
        "model_uri": ["models:/rag_llm/" + v for v in version],
        "model_version": version,
        "question": question,
        "answer": answer,
        "sources": sources,
        "chunk_ids": chunk_ids,
        "status": status,
        "http_status": pd.array(http_status, dtype="Int32"),
        "error": np.where(failed, "upstream failed", None).astype(object),
        "latency_ms": latency.astype("float64"),
        "ttft_ms": np.where(answered, ttft, np.nan),
        "prompt_tokens": pd.array(np.where(failed, 0, prompt_tokens), dtype="Int32"),
        "completion_tokens": pd.array(np.where(answered, completion_tokens, 0), dtype="Int32"),
        "lineage": '{"index_snapshot":"snap-000001","prompt_version":"1"}',
        "access_groups": None,
        "guardrails": guardrails,
        "truncated": False,
    })
    frame.loc[failed, ["prompt_tokens", "completion_tokens"]] = pd.NA
    if shadow_share > 0:
        shadow = frame[rng.random(n) < shadow_share].copy()
        shadow["shadow"] = True
        shadow["target"] = "shadow"
        shadow["latency_ms"] = shadow["latency_ms"] * 3 + 5000  # so a test notices if shadows leak in
        frame = pd.concat([frame, shadow], ignore_index=True).sort_values("timestamp", kind="stable")
    return frame[spec("inference_log").columns].reset_index(drop=True)


def feedback_id(request_id: str, key_name: str) -> str:
    """The gateway's feedback id (``ragops.serving.gateway.feedback.feedback_id``), kept here so that
    simulating feedback does not import the gateway."""
    return hashlib.sha256(f"{request_id}\x1f{key_name}".encode()).hexdigest()[:32]


def synthetic_feedback(log_frame: pd.DataFrame, *, share: float, up_rate: float, seed: int = 0,
                       corrected_share: float = 0.0, delay_s: float = 60.0) -> pd.DataFrame:
    """Ratings for a share ``share`` of ``log_frame``'s served (non-shadow) answered requests, up with
    probability ``up_rate``; ``corrected_share`` of the down votes carry a corrected answer. Each rating
    is given ``delay_s`` seconds after its request, in the ``feedback`` schema."""
    rng = np.random.default_rng(seed)
    served = log_frame[~log_frame["shadow"].astype(bool) & log_frame["answer"].notna()]
    picked = served[rng.random(len(served)) < share]
    m = len(picked)
    up = rng.random(m) < up_rate
    corrected = ~up & (rng.random(m) < corrected_share)
    key = picked["key_name"].fillna("").astype(str).to_numpy()
    request_ids = picked["request_id"].astype(str).to_numpy()
    frame = pd.DataFrame({
        "feedback_id": [feedback_id(r, k) for r, k in zip(request_ids, key, strict=True)],
        "request_id": request_ids,
        "key_name": key,
        "rating": pd.array(np.where(up, 1, -1), dtype="Int32"),
        "comment": np.where(up, None, "not what the documents say").astype(object),
        "corrected_answer": np.where(corrected, "The documents say the setting is 30 days [1].", None).astype(object),
        "user_id": None,
        "created_at": (picked["timestamp"] + pd.Timedelta(seconds=delay_s)).dt.floor("us").to_numpy(),
    })
    frame["created_at"] = pd.to_datetime(frame["created_at"], utc=True)
    return frame[spec("feedback").columns].reset_index(drop=True)


__all__ = ["DEFAULT_QUESTIONS", "DONT_KNOW_ANSWER", "DriftedQueries", "ErrorBurst", "LatencySpike", "Problem",
           "chunk_ids_pool", "synthetic_feedback", "synthetic_log"]
