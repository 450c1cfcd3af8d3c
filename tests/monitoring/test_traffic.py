"""Traffic metrics on real local Delta tables: right values, problems in their own window, and
incremental runs (change feed) that agree with a full rebuild."""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd
import pytest

from ragops.config import Settings
from ragops.lakehouse import open_lakehouse
from ragops.lakehouse.schemas import spec
from ragops.monitoring.simulate import (
    ErrorBurst,
    LatencySpike,
    chunk_ids_pool,
    synthetic_feedback,
    synthetic_log,
)
from ragops.monitoring.traffic import QuantileSketch, update_traffic

START = pd.Timestamp("2026-03-02 00:00", tz="UTC")
ALPHA = QuantileSketch.ALPHA


def make(tmp_path, **variables):
    settings = Settings.from_variables({"root": str(tmp_path / "state"), **variables})
    return settings, open_lakehouse(settings)


def by_key(metrics: pd.DataFrame) -> dict[tuple, float]:
    """Defined values only: {(window_start, route, model_version, metric): value}."""
    m = metrics[metrics["value"].notna()]
    return {(pd.Timestamp(w), r, v, k): x for w, r, v, k, x in
            zip(m["window_start"], m["route"], m["model_version"], m["metric"], m["value"], strict=True)}


def run_and_store(lh, settings, since=(None, None)):
    update = update_traffic(lh, settings, since_log_version=since[0], since_feedback_version=since[1])
    lh.upsert("monitoring_metrics", update.metrics)
    return update


def stored(lh) -> dict[tuple, float]:
    return by_key(lh.read("monitoring_metrics"))


def assert_same(a: dict, b: dict) -> None:
    assert set(a) == set(b), (sorted(set(a) - set(b))[:5], sorted(set(b) - set(a))[:5])
    for key in a:
        assert a[key] == pytest.approx(b[key], rel=1e-9, abs=1e-12), key


def within_sketch(value: float, values: np.ndarray, q: float) -> bool:
    lower, higher = np.quantile(values, q, method="lower"), np.quantile(values, q, method="higher")
    return lower * (1 - ALPHA) - 1e-12 <= value <= higher * (1 + ALPHA) + 1e-12


def test_sketch_quantiles_are_within_one_percent_and_merge_exactly():
    rng = np.random.default_rng(3)
    values = rng.lognormal(6.5, 0.8, 20_000)
    codes = np.zeros(len(values), dtype=np.int64)
    from ragops.monitoring.traffic import _sketches

    whole = _sketches(codes, values, np.ones(len(values)), 1)[0]
    half_a = _sketches(codes[:7000], values[:7000], np.ones(7000), 1)[0]
    half_b = _sketches(codes[7000:], values[7000:], np.ones(13_000), 1)[0]
    half_a.add(half_b)
    for q in (0.01, 0.1, 0.5, 0.95, 0.99, 1.0):
        exact = np.percentile(values, q * 100)
        assert abs(whole.quantile(q) - exact) <= ALPHA * exact
        assert half_a.quantile(q) == whole.quantile(q)
    again = QuantileSketch.from_json(json.loads(json.dumps(whole.to_json())))
    assert again.quantile(0.5) == whole.quantile(0.5)
    signed = _sketches(np.zeros(5, dtype=np.int64), np.array([-2.0, -1.0, 0.0, 1.0, 2.0]), np.ones(5), 1)[0]
    assert signed.quantile(0.0) == pytest.approx(-2.0, rel=ALPHA) and signed.quantile(0.5) == 0.0


def test_metrics_match_a_direct_pandas_computation(tmp_path):
    settings, lh = make(tmp_path, monitor_prices="rag_chain=0.002")
    frame = synthetic_log(3000, start=START, windows=3, routes=("rag_chain", "other"), model_versions=("1", "2"),
                          seed=5, shadow_share=0.2)
    lh.upsert("inference_log", frame)
    update = update_traffic(lh, settings, since_log_version=None, since_feedback_version=None)
    got = by_key(update.metrics)
    assert update.mode == "full" and update.log_version == lh.version("inference_log")
    assert set(update.metrics["source_version"]) == {update.log_version}

    served = frame[~frame["shadow"]].copy()
    served["window"] = served["timestamp"].dt.floor("3600s")
    assert len(update.questions) == len(served)
    checked = 0
    for (w, route, version), g in served.groupby(["window", "route", "model_version"]):
        key = (pd.Timestamp(w), route, version)
        n = len(g)
        assert got[(*key, "requests")] == n
        assert got[(*key, "error_rate")] == pytest.approx((g["status"] != "ok").mean())
        assert got[(*key, "error_rate:timeout")] == pytest.approx((g["status"] == "timeout").mean())
        for q in (50, 95, 99):
            assert within_sketch(got[(*key, f"latency_p{q}_ms")], g["latency_ms"].to_numpy(), q / 100)
            assert got[(*key, f"latency_p{q}_ms")] == pytest.approx(np.percentile(g["latency_ms"], q), rel=ALPHA)
        assert within_sketch(got[(*key, "ttft_p95_ms")], g["ttft_ms"].dropna().to_numpy(), 0.95)
        tokens = g["prompt_tokens"].sum() + g["completion_tokens"].sum()
        assert got[(*key, "prompt_tokens")] == g["prompt_tokens"].sum()
        if route == "rag_chain":
            assert got[(*key, "cost_usd")] == pytest.approx(tokens / 1000 * 0.002)
        else:
            assert (*key, "cost_usd") not in got  # no price for this route
        made = g[(g["completion_tokens"].fillna(0) > 0) & (g["latency_ms"] > 0)]
        assert got[(*key, "tokens_per_s")] == pytest.approx(
            (made["completion_tokens"].astype(float) / made["latency_ms"] * 1000).mean())
        top = g["sources"].map(lambda s: json.loads(s)[0]["score"] if json.loads(s) else np.nan).dropna()
        assert got[(*key, "retrieval_score_mean")] == pytest.approx(top.mean())
        assert within_sketch(got[(*key, "retrieval_score_p10")], top.to_numpy(), 0.10)
        ok = g[g["status"] == "ok"]
        assert got[(*key, "dont_know_rate")] == pytest.approx(ok["answer"].str.startswith("I don't know").mean())
        pii_ran = g["guardrails"].str.contains('"pii"')
        pii_blocked = g["guardrails"].str.contains('"check": "pii", "stage": "output", "action": "blocked"')
        assert got[(*key, "guardrail_block_rate:pii")] == pytest.approx(pii_blocked.sum() / pii_ran.sum())
        assert got[(*key, "feedback_count")] == 0 and (*key, "thumbs_up_rate") not in got
        checked += 1
    assert checked == 12  # 3 windows × 2 routes × 2 versions


def test_a_latency_spike_and_an_error_burst_show_in_their_own_window_only(tmp_path):
    settings, lh = make(tmp_path)
    frame = synthetic_log(2500, start=START, windows=5, seed=2,
                          problems=[LatencySpike(1, factor=5.0), ErrorBurst(3, rate=0.4, status="timeout",
                                                                            http_status=504)])
    lh.upsert("inference_log", frame)
    got = by_key(update_traffic(lh, settings, since_log_version=None, since_feedback_version=None).metrics)
    windows = [START + pd.Timedelta(hours=i) for i in range(5)]
    p95 = [got[(w, "rag_chain", "1", "latency_p95_ms")] for w in windows]
    timeouts = [got[(w, "rag_chain", "1", "error_rate:timeout")] for w in windows]
    quiet_p95 = [p for i, p in enumerate(p95) if i != 1]
    assert p95[1] > 3 * max(quiet_p95)
    assert max(quiet_p95) < 1.3 * min(quiet_p95)
    assert timeouts[3] > 0.3
    assert max(t for i, t in enumerate(timeouts) if i != 3) < 0.03


def _embeddings(lh) -> None:
    ids = chunk_ids_pool()
    lh.upsert("embeddings", pd.DataFrame({
        "chunk_id": ids, "doc_id": [i.split("-")[0] for i in ids], "content_hash": "h",
        "text": [f"The documents say the setting is {k % 60} days." if k % 8 < 4 else "Collectors listen on port 4317."
                 for k in range(len(ids))], "title": None,
        "source_uri": None, "section": None, "model": "m", "dimension": np.int32(2),
        "vector": [np.array([1.0, 0.0], dtype=np.float32)] * len(ids), "embedded_at": START,
    }))


def test_incremental_runs_over_three_appends_equal_one_full_run(tmp_path):
    settings, lh = make(tmp_path, monitor_prices="*=0.001", monitor_groundedness_sample="100000")
    _embeddings(lh)
    since = (None, None)
    modes = []
    parts = []
    for part in range(3):
        frame = synthetic_log(1200, start=START, windows=4, routes=("a", "b"), seed=10 + part, shadow_share=0.1)
        parts.append(frame)
        lh.upsert("inference_log", frame)
        lh.upsert("feedback", synthetic_feedback(frame, share=0.2, up_rate=0.6, seed=part))
        if part == 2:  # a user changes their mind: the latest rating wins
            flipped = synthetic_feedback(parts[0], share=0.2, up_rate=0.6, seed=0).head(50)
            flipped["rating"] = -flipped["rating"]
            lh.upsert("feedback", flipped)
        update = run_and_store(lh, settings, since)
        since = (update.log_version, update.feedback_version)
        modes.append(update.mode)
    assert modes == ["full", "incremental", "incremental"]
    full = update_traffic(lh, settings, since_log_version=None, since_feedback_version=None)
    assert full.rows_read == sum(len(p) for p in parts) + len(lh.read("feedback", ["feedback_id"]))
    incremental = stored(lh)
    assert_same(incremental, by_key(full.metrics))
    assert any(k[3] == "groundedness" for k in incremental)

    everything = pd.concat(parts)
    served = everything[~everything["shadow"]]
    ratings = lh.read("feedback").merge(served[["request_id", "route", "timestamp"]], on="request_id")
    up_a = ratings[ratings["route"] == "a"]
    got_a = sum(v for k, v in incremental.items() if k[1] == "a" and k[3] == "feedback_count")
    assert got_a == len(up_a)
    w0 = (START, "a", "1")
    rated = up_a[up_a["created_at"].dt.floor("3600s") == START]
    assert incremental[(*w0, "thumbs_up_rate")] == pytest.approx((rated["rating"] > 0).mean())


def test_groundedness_scores_at_most_the_sample_per_window(tmp_path):
    from ragops.evaluation.metrics._text import is_abstention
    from ragops.evaluation.metrics.groundedness import groundedness

    settings, lh = make(tmp_path, monitor_groundedness_sample="7")
    _embeddings(lh)
    since = (None, None)
    parts = []
    for part in range(2):
        parts.append(synthetic_log(400, start=START, windows=2, seed=part))
        lh.upsert("inference_log", parts[-1])
        update = run_and_store(lh, settings, since)
        since = (update.log_version, update.feedback_version)
    rows = lh.read("monitoring_metrics")
    ground = rows[rows["metric"] == "groundedness"].sort_values("window_start")
    assert len(ground) == 2 and set(ground["count"]) == {7}

    # the sample is the first 7 answers of each window (all from the first run), scored as the evaluation does
    texts = lh.read("embeddings", ["chunk_id", "text"]).set_index("chunk_id")["text"]
    first = parts[0][(parts[0]["status"] == "ok") & ~parts[0]["answer"].map(is_abstention)]
    for window, got in zip((START, START + pd.Timedelta(hours=1)), ground["value"], strict=True):
        sample = first[first["timestamp"].dt.floor("3600s") == window].head(7)
        expected = [groundedness(a, [texts[i] for i in ids]) for a, ids in zip(sample["answer"], sample["chunk_ids"],
                                                                                 strict=True)]
        assert got == pytest.approx(np.mean(expected))
    assert ground["value"].min() > 0 and ground["value"].max() < 1


def test_a_rewritten_row_is_not_counted_twice(tmp_path):
    settings, lh = make(tmp_path)
    frame = synthetic_log(300, start=START, windows=2, seed=4)
    lh.upsert("inference_log", frame)
    first = run_and_store(lh, settings)
    before = stored(lh)
    w0 = (START, "rag_chain", "1")

    # the journal replays window 0 with every latency ×10 and one ok row turned into an error
    in_w0 = frame[frame["timestamp"] < START + pd.Timedelta(hours=1)].copy()
    in_w0["latency_ms"] *= 10
    flip = in_w0.index[in_w0["status"] == "ok"][0]
    in_w0.loc[flip, ["status", "http_status"]] = ["error", 500]
    lh.upsert("inference_log", in_w0)
    update = run_and_store(lh, settings, (first.log_version, first.feedback_version))
    assert update.mode == "incremental" and update.windows == [START]
    assert len(update.questions) == 0  # a rewrite is not a new question
    after = stored(lh)
    assert after[(*w0, "requests")] == before[(*w0, "requests")] == len(in_w0)
    assert after[(*w0, "error_rate:error")] == pytest.approx(before[(*w0, "error_rate:error")] + 1 / len(in_w0))
    assert after[(*w0, "latency_p50_ms")] == pytest.approx(10 * np.median(frame.loc[in_w0.index, "latency_ms"]),
                                                           rel=ALPHA)
    w1 = (START + pd.Timedelta(hours=1), "rag_chain", "1")
    assert after[(*w1, "latency_p50_ms")] == before[(*w1, "latency_p50_ms")]
    assert_same(after, by_key(update_traffic(lh, settings, since_log_version=None,
                                             since_feedback_version=None).metrics))

    # deleting window 1's rows leaves no value behind for it (its rows are nulled, not left stale)
    lh.delete("inference_log", "request_id", frame.loc[frame["timestamp"] >= w1[0], "request_id"].tolist())
    emptied = run_and_store(lh, settings, (update.log_version, update.feedback_version))
    assert emptied.mode == "incremental" and emptied.windows == [w1[0]]
    left = stored(lh)
    assert not [k for k in left if k[0] == w1[0]]
    assert left[(*w0, "requests")] == len(in_w0)


def test_nothing_new_is_unchanged_and_shadow_rows_never_count(tmp_path):
    settings, lh = make(tmp_path)
    frame = synthetic_log(500, start=START, windows=1, seed=6, shadow_share=0.5)
    assert frame["shadow"].sum() > 150
    lh.upsert("inference_log", frame)
    first = run_and_store(lh, settings)
    got = by_key(first.metrics)
    served = frame[~frame["shadow"]]
    assert got[(START, "rag_chain", "1", "requests")] == len(served)
    assert got[(START, "rag_chain", "1", "latency_p99_ms")] == pytest.approx(
        np.percentile(served["latency_ms"], 99), rel=ALPHA)  # shadow latencies are 5 s longer
    assert len(first.questions) == len(served)

    again = update_traffic(lh, settings, since_log_version=first.log_version,
                           since_feedback_version=first.feedback_version)
    assert (again.mode, len(again.metrics), again.rows_read, again.windows) == ("unchanged", 0, 0, [])

    shadows_only = synthetic_log(50, start=START, windows=1, seed=7, shadow_share=1.0)
    lh.upsert("inference_log", shadows_only[shadows_only["shadow"]])
    late = update_traffic(lh, settings, since_log_version=first.log_version, since_feedback_version=None)
    assert late.mode == "incremental" and late.metrics.empty and late.questions.empty


def test_cost_only_with_a_price(tmp_path):
    frame = synthetic_log(200, start=START, windows=1, routes=("a", "b"), seed=8)
    settings, lh = make(tmp_path)
    lh.upsert("inference_log", frame)
    unpriced = update_traffic(lh, settings, since_log_version=None, since_feedback_version=None).metrics
    assert "cost_usd" not in set(unpriced["metric"])
    priced = Settings.from_variables({"root": str(tmp_path / "state"), "monitor_prices": "a=0.01"})
    got = by_key(update_traffic(lh, priced, since_log_version=None, since_feedback_version=None).metrics)
    a = frame[frame["route"] == "a"]
    assert got[(START, "a", "1", "cost_usd")] == pytest.approx(
        (a["prompt_tokens"].sum() + a["completion_tokens"].sum()) / 1000 * 0.01)
    assert (START, "b", "1", "cost_usd") not in got


def test_a_log_without_change_feed_falls_back_to_a_full_read(tmp_path, caplog):
    from deltalake import DeltaTable

    settings, lh = make(tmp_path)
    path = settings.table_path("inference_log")
    path.parent.mkdir(parents=True, exist_ok=True)
    DeltaTable.create(str(path), spec("inference_log").schema)  # no delta.enableChangeDataFeed
    lh.append("inference_log", synthetic_log(200, start=START, windows=2, seed=9))
    first = run_and_store(lh, settings)
    lh.append("inference_log", synthetic_log(100, start=START, windows=2, seed=10))
    with caplog.at_level(logging.INFO, logger="ragops.monitoring.traffic"):
        second = run_and_store(lh, settings, (first.log_version, first.feedback_version))
    assert second.mode == "full" and "change feed unavailable" in caplog.text
    assert stored(lh)[(START, "rag_chain", "1", "requests")] + stored(lh)[
        (START + pd.Timedelta(hours=1), "rag_chain", "1", "requests")] == 300


def test_feedback_first_written_after_a_run_is_counted_by_the_next(tmp_path):
    settings, lh = make(tmp_path)
    frame = synthetic_log(400, start=START, windows=1, seed=11)
    lh.upsert("inference_log", frame)
    first = run_and_store(lh, settings)
    assert first.feedback_version is None  # no feedback table yet
    ratings = synthetic_feedback(frame, share=0.25, up_rate=0.5, seed=1)
    orphan = ratings.head(1).assign(feedback_id="x", request_id="never-served")
    lh.upsert("feedback", pd.concat([ratings, orphan]))
    second = run_and_store(lh, settings, (first.log_version, first.feedback_version))
    assert second.mode == "incremental" and second.rows_read == len(ratings) + 1
    got = stored(lh)
    assert got[(START, "rag_chain", "1", "feedback_count")] == len(ratings)
    assert got[(START, "rag_chain", "1", "thumbs_up_rate")] == pytest.approx((ratings["rating"] > 0).mean())
    assert got[(START, "rag_chain", "1", "requests")] == len(frame)  # the log's states were kept


def test_a_rating_read_before_its_request_was_logged_counts_once_the_request_is(tmp_path):
    """The gateway writes feedback at once and the log row when its journal flushes: a monitor run in
    between sees a rating without its request. It leaves it out, and the run that reads the request
    counts it — as one full rebuild over the same rows would."""
    settings, lh = make(tmp_path)
    early = synthetic_log(300, start=START, windows=1, seed=21)
    late = synthetic_log(100, start=START + pd.Timedelta(minutes=30), windows=1, seed=22, id_prefix="late")
    lh.upsert("inference_log", early)
    lh.upsert("feedback", synthetic_feedback(pd.concat([early, late]), share=0.3, up_rate=0.4, seed=2))
    first = run_and_store(lh, settings)

    def ratings_counted() -> float:  # over every window (a rating falls in the window it was given in)
        return sum(v for k, v in stored(lh).items() if k[3] == "feedback_count")

    waiting = lh.read("feedback")["request_id"].isin(late["request_id"]).sum()
    assert waiting > 0
    assert ratings_counted() == len(lh.read("feedback")) - waiting

    lh.upsert("inference_log", late)  # the journal flushed
    second = run_and_store(lh, settings, (first.log_version, first.feedback_version))
    assert second.mode == "incremental"
    assert ratings_counted() == len(lh.read("feedback"))
    got = stored(lh)
    full = update_traffic(lh, settings, since_log_version=None, since_feedback_version=None)
    assert_same(got, by_key(full.metrics))


def test_a_new_window_length_rebuilds(tmp_path):
    settings, lh = make(tmp_path)
    lh.upsert("inference_log", synthetic_log(200, start=START, windows=2, seed=12))
    first = run_and_store(lh, settings)
    lh.upsert("inference_log", synthetic_log(50, start=START, windows=2, seed=13))
    half_hours = Settings.from_variables({"root": str(tmp_path / "state"), "monitor_window": "30min"})
    again = update_traffic(lh, half_hours, since_log_version=first.log_version,
                           since_feedback_version=first.feedback_version)
    assert again.mode == "full" and len(again.windows) == 4


def test_a_configured_llm_judge_scores_the_same_sample_next_to_the_code_scorer(tmp_path):
    """judge_backend=openai at an OpenAI-compatible server on 127.0.0.1 (the edge: a hosted judge) that
    rates an answer 5/5 when its context mentions port 4317, else 1/5: groundedness_judge is the
    judge's mean over the same sample the code scorer takes, and a judge that fails leaves it out."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    prompts = []

    class Judge(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's naming
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            user = body["messages"][-1]["content"]
            prompts.append(user)
            rating = 5 if "4317" in user.split("Answer:")[0] else 1
            reply = json.dumps({"choices": [{"message": {"role": "assistant", "content": json.dumps(
                {"rationale": "checked the passages", "score": rating})}}],
                "usage": {"prompt_tokens": 50, "completion_tokens": 9}})
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(reply.encode())

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Judge)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        settings, lh = make(tmp_path, monitor_groundedness_sample="6", judge_backend="openai",
                            judge_model="judge-x", judge_endpoint=f"http://127.0.0.1:{server.server_port}/v1")
        _embeddings(lh)
        frame = synthetic_log(200, start=START, windows=1, seed=3)
        lh.upsert("inference_log", frame)
        update = run_and_store(lh, settings)
    finally:
        server.shutdown()
        server.server_close()
    m = update.metrics.set_index("metric")
    assert m.loc["groundedness_judge", "count"] == m.loc["groundedness", "count"] == 6 == len(prompts)
    texts = lh.read("embeddings", ["chunk_id", "text"]).set_index("chunk_id")["text"]
    ok = frame[(frame["status"] == "ok") & frame["answer"].notna()].sort_values(["timestamp", "request_id"])
    from ragops.evaluation.metrics._text import is_abstention

    sample = ok[~ok["answer"].map(is_abstention)].head(6)
    expected = np.mean([1.0 if any("4317" in texts[i] for i in ids) else 0.0 for ids in sample["chunk_ids"]])
    assert 0 < expected < 1  # the sample cites both kinds of chunk: the value is not a constant
    assert m.loc["groundedness_judge", "value"] == pytest.approx(expected)
