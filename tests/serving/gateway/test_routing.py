"""The router at scale, without any model: weighted shares, sticky keys, shadow/fallback, reloads."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter

import pytest

from ragops.config import Settings
from ragops.serving.gateway.config import GatewayConfig, RouteConfig, Target, load_gateway_config
from ragops.serving.gateway.routing import Decision, Router, UnknownRoute, install_reload_on_sighup
from tests.conftest import REPO

N = 10_000
TOLERANCE_POINTS = 1.5


def route(name: str, weights: dict[str, float], *, sticky: str = "none", shadow: str | None = None,
          fallback: str | None = None) -> RouteConfig:
    return RouteConfig(
        name=name,
        targets=tuple(Target(name=t, model=f"models:/rag_chain@{t}", weight=w) for t, w in weights.items()),
        sticky=sticky, shadow=Target(name=shadow, model="models:/rag_chain/7") if shadow else None,
        fallback=fallback)


def config(*routes: RouteConfig, source: str | None = None) -> GatewayConfig:
    return GatewayConfig(routes={r.name: r for r in routes}, keys=(), default_route=routes[0].name, source=source)


AB = route("rag_chain", {"champion": 90, "challenger": 10}, shadow="candidate", fallback="champion")
THREE = route("three", {"a": 50, "b": 30, "c": 20})
STICKY = route("sticky", {"champion": 90, "challenger": 10}, sticky="user")
STICKY3 = route("sticky3", {"a": 1, "b": 1, "c": 2}, sticky="session")
CONFIG = config(AB, THREE, STICKY, STICKY3)


def assert_shares(counts: Counter, weights: dict[str, float]) -> None:
    total = sum(counts.values())
    weight_sum = sum(weights.values())
    for name, weight in weights.items():
        observed = 100.0 * counts[name] / total
        expected = 100.0 * weight / weight_sum
        assert abs(observed - expected) <= TOLERANCE_POINTS, (name, observed, expected, counts)
    assert set(counts) <= set(weights)


# --- weighted split ----------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, None])
def test_ninety_ten_split_over_ten_thousand_requests(seed):
    router = Router(CONFIG, seed=seed)
    counts = Counter(router.choose("rag_chain").target.name for _ in range(N))
    assert_shares(counts, {"champion": 90, "challenger": 10})


@pytest.mark.parametrize("seed", [0, 1, None])
def test_three_way_split_over_ten_thousand_requests(seed):
    router = Router(CONFIG, seed=seed)
    counts = Counter(router.choose("three").target.name for _ in range(N))
    assert_shares(counts, {"a": 50, "b": 30, "c": 20})


def test_weights_need_not_sum_to_one_hundred():
    router = Router(config(route("r", {"x": 3, "y": 1})), seed=5)
    assert_shares(Counter(router.choose("r").target.name for _ in range(N)), {"x": 75, "y": 25})


def test_a_seed_makes_the_sequence_reproducible():
    a, b, c = Router(CONFIG, seed=42), Router(CONFIG, seed=42), Router(CONFIG, seed=43)
    sequence = [a.choose("three").target.name for _ in range(200)]
    assert sequence == [b.choose("three").target.name for _ in range(200)]
    assert sequence != [c.choose("three").target.name for _ in range(200)]


def test_a_single_target_always_answers():
    router = Router(config(route("only", {"champion": 1})))
    assert {router.choose("only", sticky_key=f"u{i}").target.name for i in range(100)} == {"champion"}


def test_unknown_route_lists_the_known_ones():
    with pytest.raises(UnknownRoute) as err:
        Router(CONFIG).choose("gpt-4")
    assert "'gpt-4'" in str(err.value) and "rag_chain, three, sticky, sticky3" in str(err.value)
    assert isinstance(err.value, LookupError) and err.value.known == ("rag_chain", "three", "sticky", "sticky3")


# --- sticky ------------------------------------------------------------------------------------------


def test_the_same_key_always_gets_the_same_target_across_instances():
    first, second = Router(CONFIG, seed=1), Router(CONFIG, seed=2)
    keys = [f"user-{i}" for i in range(2000)]
    picks = [first.choose("sticky", sticky_key=k).target.name for k in keys]
    assert picks == [first.choose("sticky", sticky_key=k).target.name for k in keys]  # again: same
    assert picks == [second.choose("sticky", sticky_key=k).target.name for k in keys]  # other router: same
    assert len(set(picks)) == 2


def test_sticky_keys_spread_per_the_weights():
    router = Router(CONFIG)
    assert_shares(Counter(router.choose("sticky", sticky_key=f"user-{i}").target.name for i in range(N)),
                  {"champion": 90, "challenger": 10})
    assert_shares(Counter(router.choose("sticky3", sticky_key=f"session-{i}").target.name for i in range(N)),
                  {"a": 25, "b": 25, "c": 50})


def test_the_same_key_is_spread_independently_per_route():
    # Keys are hashed with the route name, so challenger users of one route are not the same users
    # everywhere.
    other = route("other", {"champion": 90, "challenger": 10}, sticky="user")
    router = Router(config(STICKY, other))
    keys = [f"user-{i}" for i in range(N)]
    challenger_here = {k for k in keys if router.choose("sticky", sticky_key=k).target.name == "challenger"}
    challenger_there = {k for k in keys if router.choose("other", sticky_key=k).target.name == "challenger"}
    overlap = len(challenger_here & challenger_there) / len(challenger_here)
    assert overlap < 0.2  # independent: ~10 %, not ~100 %


def test_sticky_key_is_ignored_on_a_route_that_is_not_sticky():
    router = Router(CONFIG, seed=3)
    picks = Counter(router.choose("rag_chain", sticky_key="always-the-same-user").target.name for _ in range(N))
    assert_shares(picks, {"champion": 90, "challenger": 10})


def test_raising_the_challenger_weight_only_moves_users_to_the_challenger():
    before = Router(config(STICKY))
    after = Router(config(route("sticky", {"champion": 80, "challenger": 20}, sticky="user")))
    moved = Counter()
    for i in range(N):
        key = f"user-{i}"
        old, new = before.choose("sticky", key).target.name, after.choose("sticky", key).target.name
        if old != new:
            moved[(old, new)] += 1
    assert set(moved) == {("champion", "challenger")}
    assert abs(100.0 * moved[("champion", "challenger")] / N - 10.0) <= TOLERANCE_POINTS


STICKY_SCRIPT = """
import json, sys
from ragops.serving.gateway.config import GatewayConfig, RouteConfig, Target
from ragops.serving.gateway.routing import Router
route = RouteConfig(name="sticky", sticky="user", targets=(
    Target(name="champion", model="models:/rag_chain@champion", weight=90),
    Target(name="challenger", model="models:/rag_chain@challenger", weight=10)))
router = Router(GatewayConfig(routes={"sticky": route}, keys=(), default_route="sticky"))
print(json.dumps([router.choose("sticky", sticky_key=f"user-{i}").target.name for i in range(500)]))
"""


def test_sticky_assignment_is_identical_in_a_fresh_process():
    here = Router(CONFIG)
    expected = [here.choose("sticky", sticky_key=f"user-{i}").target.name for i in range(500)]
    env = {**os.environ, "PYTHONHASHSEED": "12345"}  # a different str hash than this process's
    out = subprocess.run([sys.executable, "-c", STICKY_SCRIPT], capture_output=True, text=True, env=env,
                         cwd=REPO, timeout=120, check=True)
    assert json.loads(out.stdout) == expected


# --- shadow and fallback -----------------------------------------------------------------------------


def test_decisions_carry_the_shadow_and_the_fallback():
    router = Router(CONFIG, seed=0)
    decisions = {d.target.name: d for d in (router.choose("rag_chain") for _ in range(500))}
    challenger, champion = decisions["challenger"], decisions["champion"]
    assert challenger.shadow == AB.shadow and challenger.shadow.name == "candidate"
    assert challenger.fallback is not None and challenger.fallback.name == "champion"
    assert champion.shadow == AB.shadow
    assert champion.fallback is None  # the fallback is the chosen target: nothing to fall back to
    assert isinstance(champion, Decision)


def test_no_shadow_and_no_fallback_when_not_configured():
    decision = Router(CONFIG, seed=0).choose("three")
    assert decision.shadow is None and decision.fallback is None


# --- reload ------------------------------------------------------------------------------------------


def generation(tag: str) -> GatewayConfig:
    """A config whose every target, shadow and fallback name carries ``tag``: a mixed decision shows."""
    r = RouteConfig(name="rag_chain",
                    targets=(Target(name=f"{tag}-x", model="models:/rag_chain/1", weight=1),
                             Target(name=f"{tag}-y", model="models:/rag_chain/2", weight=1)),
                    shadow=Target(name=f"{tag}-shadow", model="models:/rag_chain/3"), fallback=f"{tag}-x")
    return GatewayConfig(routes={"rag_chain": r}, keys=(), default_route="rag_chain", source=tag)


def test_reload_swaps_atomically_under_concurrent_choose():
    router = Router(generation("old"), seed=0)
    stop = threading.Event()
    seen: list[set[str]] = []
    mixed: list[Decision] = []

    def worker():
        tags: set[str] = set()
        while not stop.is_set():
            d = router.choose("rag_chain")
            names = {d.target.name.split("-")[0], d.shadow.name.split("-")[0]}
            if d.fallback is not None:
                names.add(d.fallback.name.split("-")[0])
            if len(names) != 1:
                mixed.append(d)
            tags |= names
        seen.append(tags)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for i in range(60):
        router.reload(generation("new" if i % 2 == 0 else "old"))
        time.sleep(0.0005)  # lets the workers route some requests under each config
    router.reload(generation("new"))
    stop.set()
    for t in threads:
        t.join(timeout=10)
    assert mixed == []
    assert any({"old", "new"} <= tags for tags in seen)  # the workers really ran across reloads
    assert {router.choose("rag_chain").target.name for _ in range(100)} == {"new-x", "new-y"}
    assert router.config.source == "new"


def test_reload_drops_removed_routes_and_adds_new_ones():
    router = Router(CONFIG)
    router.reload(config(route("fresh", {"only": 1})))
    assert router.choose("fresh").target.name == "only"
    with pytest.raises(UnknownRoute, match="known routes: fresh"):
        router.choose("rag_chain")


@pytest.fixture
def restore_sighup():
    previous = signal.getsignal(signal.SIGHUP)
    yield
    signal.signal(signal.SIGHUP, previous)


def send_sighup_and_wait(until, timeout_s: float = 5.0) -> None:
    os.kill(os.getpid(), signal.SIGHUP)
    deadline = time.monotonic() + timeout_s
    while not until() and time.monotonic() < deadline:
        time.sleep(0.01)


def test_sighup_reloads_the_file(tmp_path, restore_sighup):
    settings = Settings(root=tmp_path / "state")
    path = tmp_path / "gateway.yml"
    path.write_text('routes: [{name: rag_chain, targets: [{name: v1, model: "models:/rag_chain/1"}]}]\n')
    router = Router(load_gateway_config(path, settings, environ={}))
    install_reload_on_sighup(router, lambda: load_gateway_config(path, settings, environ={}))

    path.write_text('routes: [{name: rag_chain, targets: [{name: v2, model: "models:/rag_chain/2"}]}]\n')
    send_sighup_and_wait(lambda: router.choose("rag_chain").target.name == "v2")
    assert router.choose("rag_chain").target.name == "v2"


def test_a_bad_config_on_sighup_keeps_the_old_one(tmp_path, restore_sighup, caplog):
    settings = Settings(root=tmp_path / "state")
    path = tmp_path / "gateway.yml"
    path.write_text('routes: [{name: rag_chain, targets: [{name: v1, model: "models:/rag_chain/1"}]}]\n')
    router = Router(load_gateway_config(path, settings, environ={}))
    attempts = []

    def load():
        attempts.append(1)
        return load_gateway_config(path, settings, environ={})

    previous = install_reload_on_sighup(router, load)
    assert previous is not None
    path.write_text('routes: [{name: rag_chain, targets: [{name: v2, model: "models:/rag_chain/2", weight: 0}]}]\n')
    with caplog.at_level(logging.ERROR, logger="ragops.serving.gateway"):
        send_sighup_and_wait(lambda: attempts)
    assert attempts, "the SIGHUP handler did not run"
    assert router.choose("rag_chain").target.name == "v1"  # still serving the old config
    assert "reload failed" in caplog.text and "routes[0].targets[0].weight: must be > 0" in caplog.text
