"""Per-key limits: the sliding window's arithmetic, the shared state across processes, and
``ragops gateway --workers 2`` holding one key's limit over both workers (429 + Retry-After),
reloading on SIGHUP and flushing its log on SIGTERM."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from ragops.serving.gateway.auth import hash_key
from ragops.serving.gateway.config import KeyConfig
from ragops.serving.gateway.limits import RateLimiter, seconds_until_room
from tests.serving.gateway.test_app import FakeUpstream

T0 = 60.0 * 1_000_000  # the start of a minute (and of a 10 s bucket)


def key(rpm: int | None = None, tpm: int | None = None, name: str = "k") -> KeyConfig:
    return KeyConfig(name=name, sha256=hash_key(name), requests_per_minute=rpm, tokens_per_minute=tpm)


def test_a_key_gets_exactly_its_requests_per_minute_and_the_wait_is_told(tmp_path):
    limiter, k = RateLimiter(tmp_path), key(rpm=3)
    assert [limiter.admit(k, now=T0 + i).allowed for i in range(3)] == [True, True, True]
    refused = limiter.admit(k, now=T0 + 3)
    assert not refused.allowed and refused.limit_name == "requests_per_minute" and refused.limit == 3
    # the first request leaves the minute at T0 + 60; the window's 10 s buckets may add up to 10 s
    assert 57 <= refused.retry_after_s <= 70
    assert not limiter.admit(k, now=T0 + 3 + refused.retry_after_s - 2).allowed
    assert limiter.admit(k, now=T0 + 3 + refused.retry_after_s).allowed


def test_no_second_burst_across_a_minute_boundary(tmp_path):
    limiter, k = RateLimiter(tmp_path), key(rpm=10)
    assert all(limiter.admit(k, now=T0 + 55 + i * 0.1).allowed for i in range(10))
    # a fixed per-minute window would let ten more through at T0 + 61
    assert not limiter.admit(k, now=T0 + 61).allowed
    assert not limiter.admit(k, now=T0 + 100).allowed
    assert limiter.admit(k, now=T0 + 125).allowed


def test_a_key_just_under_its_rate_is_never_refused_and_a_burst_on_top_is(tmp_path):
    limiter, k = RateLimiter(tmp_path), key(rpm=60)
    times = [T0 + 0.5 + i * 1.05 for i in range(180)]  # 57 a minute, for three minutes
    assert [t for t in times if not limiter.admit(k, now=t).allowed] == []
    burst = [limiter.admit(k, now=times[-1] + 0.01 * (i + 1)).allowed for i in range(10)]
    assert 1 <= sum(burst) <= 4  # the three left in the minute (give or take the bucket estimate)


def test_tokens_are_charged_after_the_answer_and_the_debt_slides_out(tmp_path):
    limiter, k = RateLimiter(tmp_path), key(tpm=100)
    assert limiter.admit(k, now=T0).allowed  # the cost is not known yet: admitted with tokens left
    limiter.charge_tokens(k, 150, now=T0 + 1)  # the answer overdrew the minute
    refused = limiter.admit(k, now=T0 + 2)
    assert not refused.allowed and refused.limit_name == "tokens_per_minute" and refused.retry_after_s <= 70
    assert limiter.admit(k, now=T0 + 2 + refused.retry_after_s).allowed


def test_keys_without_limits_touch_no_shared_state(tmp_path):
    limiter = RateLimiter(tmp_path / "limits")
    assert all(limiter.admit(key()).allowed for _ in range(1000))
    limiter.charge_tokens(key(), 10_000)
    assert not (tmp_path / "limits").exists()


def test_the_wait_is_the_first_moment_the_request_fits():
    # one bucket of 3 sliding out, the rest empty: fits once a third of it has slid out
    assert seconds_until_room([3, 0, 0, 0, 0, 0, 0], 0.0, 3, 1, 10.0) == pytest.approx(10 / 3)
    assert seconds_until_room([0, 0, 0, 0, 0, 0, 2], 0.5, 3, 1, 10.0) == 0.0
    assert seconds_until_room([0, 0, 0, 0, 0, 0, 5], 0.0, 3, 10, 10.0) == 70.0  # a cost over the limit never fits


def _hammer(state_dir: str, attempts: int, start_at: float) -> int:
    """A worker process's share: admit as fast as it can from ``start_at``; how many got through."""
    limiter = RateLimiter(Path(state_dir))
    k = key(rpm=30, name="shared")
    while time.time() < start_at:
        time.sleep(0.001)
    return sum(limiter.admit(k).allowed for _ in range(attempts))


def test_two_processes_share_one_limit(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    start_at = time.time() + 5  # both started and importing done: they race from here
    with ctx.Pool(2) as pool:
        admitted = pool.starmap(_hammer, [(str(tmp_path), 200, start_at)] * 2, chunksize=1)
    assert sum(admitted) == 30  # per-process counters would let 60 through


# --- the real server, two workers ----------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if predicate():
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout_s} s")
        time.sleep(0.1)


def write_config(path: Path, upstream: str, extra_route: bool = False) -> None:
    routes = [{"name": "rag_chain", "targets": [{"name": "upstream", "upstream": f"{upstream}/v1"}]}]
    if extra_route:
        routes.append({"name": "second", "targets": [{"name": "upstream", "upstream": f"{upstream}/v1"}]})
    path.write_text(json.dumps({"keys": [{"name": "bob", "key": "env:BOB_KEY", "requests_per_minute": 4}],
                                "routes": routes}))  # JSON is YAML


def spawn_gateway(config: Path, port: int, root: Path, key: str, *, workers: int = 1,
                  output=subprocess.PIPE) -> subprocess.Popen:
    """``ragops gateway`` in a child process, with ``key`` as the config's ``env:BOB_KEY``."""
    env = {**os.environ, "BOB_KEY": key, "RAGOPS_LOG_LEVEL": "WARNING"}
    env.pop("RAGOPS_API_KEYS", None)
    return subprocess.Popen([sys.executable, "-m", "ragops.cli.main", "gateway", "--config", str(config),
                             "--port", str(port), *(["--workers", str(workers)] if workers > 1 else []),
                             "--var", f"root={root}"],
                            env=env, stdout=output, stderr=subprocess.STDOUT, text=True)


def test_two_workers_hold_one_limit_reload_on_sighup_and_flush_on_sigterm(tmp_path):
    from ragops.config import Settings
    from ragops.lakehouse import open_lakehouse

    root, port, config = tmp_path / "state", free_port(), tmp_path / "gateway.yml"
    bob = "sk-bob-two-workers-0123"
    with FakeUpstream() as upstream:
        write_config(config, upstream.url)
        proc = spawn_gateway(config, port, root, bob, workers=2)
        url = f"http://127.0.0.1:{port}"
        try:
            wait_until(lambda: httpx.get(f"{url}/ready", timeout=2).status_code == 200, 90, "gateway ready")
            workers: set[int] = set()  # fresh connections land on either worker
            wait_until(lambda: workers.add(httpx.get(f"{url}/health", timeout=2).json()["worker"]) or len(workers) == 2,
                       60, "both workers answering")

            auth = {"Authorization": f"Bearer {bob}"}
            body = {"model": "rag_chain", "messages": [{"role": "user", "content": "hello?"}]}
            # one fresh connection per request, so both workers take some
            responses = [httpx.post(f"{url}/v1/chat/completions", headers=auth, json=body, timeout=10)
                         for _ in range(20)]
            statuses = [r.status_code for r in responses]
            assert statuses.count(200) == 4 and statuses.count(429) == 16, statuses  # not 4 per worker
            assert all(1 <= int(r.headers["retry-after"]) <= 70 for r in responses if r.status_code == 429)
            assert responses[0].json()["choices"][0]["message"]["content"] == "upstream says: hello?"
            # each worker journals what it served: both served some of these requests
            journals = [p.read_text() for p in (root / "gateway" / "journal").glob("*.jsonl")]
            per_worker = [sum(r.headers["x-request-id"] in text for r in responses) for text in journals]
            assert sum(per_worker) == 20 and len([n for n in per_worker if n]) == 2, per_worker
            # /metrics adds up both workers' samples, whichever of them answers the scrape
            from prometheus_client.parser import text_string_to_metric_families

            counted = {}
            for family in text_string_to_metric_families(httpx.get(f"{url}/metrics", timeout=5).text):
                for sample in family.samples:
                    if sample.name == "ragops_gateway_requests_total":
                        counted[sample.labels["status"]] = counted.get(sample.labels["status"], 0) + sample.value
            assert counted == {"200": 4, "429": 16}

            # SIGHUP: every worker reloads the file (a new route) without restarting
            write_config(config, upstream.url, extra_route=True)
            proc.send_signal(signal.SIGHUP)

            def both_reloaded() -> bool:
                seen = [("second" in [m["id"] for m in httpx.get(f"{url}/v1/models", headers=auth,
                                                                  timeout=2).json()["data"]]) for _ in range(10)]
                return all(seen)

            wait_until(both_reloaded, 30, "the new route in every worker")
            assert {httpx.get(f"{url}/health", timeout=2).json()["worker"] for _ in range(20)} <= workers
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                output, _ = proc.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                output, _ = proc.communicate()
                raise AssertionError(f"the gateway did not stop on SIGTERM:\n{output[-3000:]}") from None
    assert proc.returncode == 0, output[-3000:]
    rows = open_lakehouse(Settings.from_variables({"root": str(root)})).read("inference_log")
    assert sorted(rows["request_id"]) == sorted(r.headers["x-request-id"] for r in responses)  # flushed on SIGTERM
    assert sorted(rows["http_status"].tolist()) == [200] * 4 + [429] * 16


def test_one_worker_reloads_on_sighup_and_flushes_on_sigterm(tmp_path):
    """Without a supervisor process the app itself handles SIGHUP; uvicorn's SIGTERM flushes the log."""
    from ragops.config import Settings
    from ragops.lakehouse import open_lakehouse

    root, port, config = tmp_path / "state", free_port(), tmp_path / "gateway.yml"
    bob = "sk-bob-one-worker-0123"
    with FakeUpstream() as upstream:
        write_config(config, upstream.url)
        proc = spawn_gateway(config, port, root, bob)
        url, auth = f"http://127.0.0.1:{port}", {"Authorization": f"Bearer {bob}"}
        try:
            wait_until(lambda: httpx.get(f"{url}/ready", timeout=2).status_code == 200, 90, "gateway ready")
            pid = httpx.get(f"{url}/health", timeout=2).json()["worker"]
            served = httpx.post(f"{url}/v1/chat/completions", headers=auth, timeout=10,
                                json={"messages": [{"role": "user", "content": "hello?"}]})
            assert served.status_code == 200
            write_config(config, upstream.url, extra_route=True)
            proc.send_signal(signal.SIGHUP)
            wait_until(lambda: "second" in [m["id"] for m in httpx.get(f"{url}/v1/models", headers=auth,
                                                                         timeout=2).json()["data"]],
                       30, "the new route")
            assert httpx.get(f"{url}/health", timeout=2).json()["worker"] == pid  # reloaded, not restarted
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                output, _ = proc.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                output, _ = proc.communicate()
                raise AssertionError(f"the gateway did not stop on SIGTERM:\n{output[-3000:]}") from None
    assert proc.returncode == 0, output[-3000:]
    rows = open_lakehouse(Settings.from_variables({"root": str(root)})).read("inference_log")
    assert rows["request_id"].tolist() == [served.headers["x-request-id"]]
