"""Which target answers a request: weighted split, sticky users/sessions, shadow and fallback.

:class:`Router` picks a route's target for each request:

* **weighted split**: each target's share of requests is its weight over the route's total;
* **sticky** (``sticky: user`` / ``session`` on the route, with a ``sticky_key``): the target is a pure
  function of sha256(route, key), mapped to [0, 1) and looked up in the cumulative weights, so the
  same user keeps the same target in every worker process and after a restart (Python's ``hash()``
  is salted per process, so it is not used). Changing weights only moves the keys whose point
  crosses a moved boundary: raising the challenger from 10 to 20 moves 10 % of users to it and
  leaves everyone else where they were;
* without a key (or on a route with ``sticky: none``): weighted random, from a seeded RNG when
  ``seed`` is given (reproducible tests and benchmarks).

The :class:`Decision` also carries the route's shadow and its fallback target (None when the
fallback is the chosen target itself: falling back to the target that just failed is pointless).

:meth:`Router.reload` swaps the whole routing table with one reference assignment, and
:meth:`Router.choose` reads that reference once per call, so a request routed during a reload sees
either the old config or the new one, never a mix. :func:`install_reload_on_sighup` hooks that to
SIGHUP; a new config that fails to load is logged and the old one stays in service.
"""

from __future__ import annotations

import bisect
import hashlib
import logging
import random
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ragops.errors import RagopsError
from ragops.serving.gateway.config import GatewayConfig, RouteConfig, Target

log = logging.getLogger("ragops.serving.gateway")

_TWO_64 = float(1 << 64)


class UnknownRoute(RagopsError, LookupError):
    """A request named a route (``model``) the config does not have; the message lists the known ones."""

    def __init__(self, route: str, known: tuple[str, ...]) -> None:
        self.route, self.known = route, known
        super().__init__(f"unknown route (model) {route!r}; known routes: {', '.join(known) or '(none)'}")


@dataclass(frozen=True)
class Decision:
    target: Target
    shadow: Target | None
    fallback: Target | None        # None when no fallback or the fallback is the chosen target


@dataclass(frozen=True)
class _RouteTable:
    """One route, precomputed for choosing: cumulative weight boundaries in (0, 1]."""

    route: RouteConfig
    targets: tuple[Target, ...]
    boundaries: tuple[float, ...]
    decisions: tuple[Decision, ...]  # one per target, built once: choose() allocates nothing

    @classmethod
    def build(cls, route: RouteConfig) -> _RouteTable:
        total = sum(t.weight for t in route.targets)
        running, boundaries = 0.0, []
        for t in route.targets:
            running += t.weight
            boundaries.append(running / total)
        boundaries[-1] = 1.0  # no float gap at the top: every point in [0, 1) lands on a target
        fallback = next((t for t in route.targets if t.name == route.fallback), None)
        decisions = tuple(Decision(target=t, shadow=route.shadow,
                                   fallback=None if fallback is None or fallback.name == t.name else fallback)
                          for t in route.targets)
        return cls(route=route, targets=route.targets, boundaries=tuple(boundaries), decisions=decisions)

    def pick(self, point: float) -> Decision:
        # bisect_right: a point exactly on a boundary belongs to the next target, so [0, b0) is the
        # first target's, [b0, b1) the second's, ... matching the shares b0, b1 - b0, ...
        return self.decisions[bisect.bisect_right(self.boundaries, point)]


@dataclass(frozen=True)
class _Table:
    config: GatewayConfig
    routes: dict[str, _RouteTable]
    known: tuple[str, ...]

    @classmethod
    def build(cls, config: GatewayConfig) -> _Table:
        return cls(config=config, routes={name: _RouteTable.build(r) for name, r in config.routes.items()},
                   known=tuple(config.routes))


def sticky_point(route: str, key: str) -> float:
    """The key's fixed point in [0, 1) for ``route``: the first 8 bytes of sha256(route NUL key)."""
    digest = hashlib.sha256(f"{route}\0{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / _TWO_64


class Router:
    """Routes requests over a :class:`GatewayConfig`; safe to use from many threads."""

    def __init__(self, config: GatewayConfig, seed: int | None = None) -> None:
        self._table = _Table.build(config)
        self._rng = random.Random(seed)
        self._reload_lock = threading.Lock()

    @property
    def config(self) -> GatewayConfig:
        return self._table.config

    def choose(self, route: str, sticky_key: str | None = None) -> Decision:
        """The decision for one request to ``route``. ``sticky_key`` (the user or session id) is used
        only when the route is sticky. Raises :class:`UnknownRoute` for a route not in the config."""
        table = self._table  # read once: the whole call sees one config even if reload() runs now
        entry = table.routes.get(route)
        if entry is None:
            raise UnknownRoute(route, table.known)
        if len(entry.decisions) == 1:
            return entry.decisions[0]
        if sticky_key is not None and entry.route.sticky != "none":
            return entry.pick(sticky_point(route, sticky_key))
        # random.Random.random() is one C call, atomic under the GIL: no lock needed for threads.
        return entry.pick(self._rng.random())

    def reload(self, config: GatewayConfig) -> None:
        """Swap in ``config``: requests routed from now on use it; none sees a mix of old and new."""
        table = _Table.build(config)  # built before the swap, so the swap itself is one assignment
        with self._reload_lock:
            self._table = table
        log.info("gateway routes reloaded from %s: %s", config.source or "(defaults)", ", ".join(table.known))


def reload_router(router: Router, load: Callable[[], GatewayConfig]) -> bool:
    """Load a new config and swap it in; on any failure log it and keep the old one. True when swapped."""
    try:
        config = load()
    except Exception as exc:  # noqa: BLE001 - a reload must never take the server down
        log.error("gateway config reload failed; still serving the previous config (%s): %s",
                  router.config.source or "(defaults)", exc)
        return False
    router.reload(config)
    return True


def install_reload_on_sighup(router: Router, load: Callable[[], GatewayConfig]) -> Any:
    """On SIGHUP, reload ``router`` from ``load()`` (a bad config is logged, the old one kept).

    Returns the previous SIGHUP handler so a caller (or a test) can restore it with
    ``signal.signal(signal.SIGHUP, previous)``. Must be called from the main thread (Python only
    delivers signals there); each worker process installs its own.
    """
    def on_sighup(signum, frame) -> None:
        log.info("SIGHUP: reloading the gateway config")
        reload_router(router, load)

    return signal.signal(signal.SIGHUP, on_sighup)


__all__ = ["Decision", "Router", "UnknownRoute", "install_reload_on_sighup", "reload_router", "sticky_point"]
