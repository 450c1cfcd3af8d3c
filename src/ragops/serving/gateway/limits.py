"""Per key requests/minute and tokens/minute that hold across every worker process.

LiteLLM keeps its counters per replica, so N replicas let a key through N times its limit (their
issues #40291, #27736). Here every worker of a host reads and updates one small shared record per
key: a 40-byte file under ``<root>/gateway/limits/``, memory-mapped and changed under an exclusive
``fcntl.flock``. A check is two system calls (lock, unlock) and a few loads and stores — a few
microseconds, against ~100 µs for a sqlite WAL transaction — and the lock is released by the
kernel if a worker dies holding it.

The count is a **sliding-window counter** (as Cloudflare's and nginx's limiters do): the current
and the previous minute's totals, the previous one weighted by how much of it still lies inside
the last 60 seconds. Unlike a fixed window it never lets twice the limit through across a minute
boundary, and unlike a token bucket it does not hand a fresh key a whole extra minute's burst;
it needs two counters, not a log of every request.

Requests are counted when admitted. Tokens are charged after the answer (prompt + completion: the
cost is only known then), so a request is admitted while the key has at least one token left in
its window and the answer may overdraw it; the next request then waits until the debt has slid out.
A refusal says how long to wait (``Retry-After``): the time until the estimate falls under the limit
if no other request arrives.
"""

from __future__ import annotations

import fcntl
import hashlib
import math
import mmap
import os
import struct
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ragops.errors import RagopsError

if TYPE_CHECKING:
    from ragops.serving.gateway.config import KeyConfig

WINDOW_S = 60.0
#: window index, requests (current, previous window), tokens (current, previous window)
_RECORD = struct.Struct("<qqqqq")


class RateLimited(RagopsError, RuntimeError):
    """A key over its requests or tokens per minute (HTTP 429 with ``Retry-After``)."""

    def __init__(self, key_name: str, limit_name: str, limit: int, retry_after_s: int) -> None:
        super().__init__(f"rate limit reached for key {key_name!r}: {limit} {limit_name.replace('_', ' ')}; "
                         f"retry after {retry_after_s} s")
        self.limit_name = limit_name
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    retry_after_s: int = 0
    limit_name: str | None = None   # requests_per_minute | tokens_per_minute: the limit that refused
    limit: int | None = None


ADMITTED = Verdict(True)


def _estimate(curr: int, prev: int, elapsed: float) -> float:
    return prev * (1.0 - elapsed) + curr


def seconds_until_room(curr: int, prev: int, elapsed: float, limit: int, cost: int, window_s: float) -> float:
    """Seconds until ``cost`` more fits under ``limit`` with no other traffic; 0 when it fits now.
    ``elapsed`` is the fraction of the current window already gone."""
    if limit - cost < 0:
        return window_s  # can never fit; ask again in a window
    room = limit - cost - curr
    if room >= 0:
        if prev <= 0 or _estimate(curr, prev, elapsed) <= limit - cost:
            return 0.0
        needed = 1.0 - room / prev  # the fraction of this window at which the previous one has slid out enough
        return max(0.0, (needed - elapsed) * window_s)
    # Not in this window: in the next one the current total becomes the previous one.
    needed = 1.0 - (limit - cost) / curr
    return (1.0 - elapsed) * window_s + needed * window_s


class _KeyCounter:
    """One key's shared record: the mapped file and a thread lock (flock does not exclude the
    threads of one process: they share the open file description)."""

    def __init__(self, path: Path) -> None:
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        try:
            if os.fstat(self.fd).st_size < _RECORD.size:
                os.ftruncate(self.fd, _RECORD.size)
        finally:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
        self.map = mmap.mmap(self.fd, _RECORD.size)
        self.lock = threading.Lock()

    def close(self) -> None:
        self.map.close()
        os.close(self.fd)


class RateLimiter:
    """Shared per-key limits. ``admit`` before answering, ``charge_tokens`` after."""

    def __init__(self, state_dir: Path, window_s: float = WINDOW_S) -> None:
        self.state_dir = Path(state_dir)
        self.window_s = float(window_s)
        self._counters: dict[str, _KeyCounter] = {}
        self._open_lock = threading.Lock()

    def _counter(self, key_name: str) -> _KeyCounter:
        counter = self._counters.get(key_name)
        if counter is None:
            with self._open_lock:
                counter = self._counters.get(key_name)
                if counter is None:
                    self.state_dir.mkdir(parents=True, exist_ok=True)
                    digest = hashlib.blake2b(key_name.encode("utf-8"), digest_size=12).hexdigest()
                    counter = self._counters[key_name] = _KeyCounter(self.state_dir / f"{digest}.bin")
        return counter

    def _update(self, key_name: str, now: float | None, change):
        """Run ``change(window_fraction, req_curr, req_prev, tok_curr, tok_prev)`` → (result, new
        counters or None) on the key's record, rolled over to the current window, under the lock."""
        counter = self._counter(key_name)
        now = time.time() if now is None else now
        window = math.floor(now / self.window_s)
        elapsed = (now - window * self.window_s) / self.window_s
        with counter.lock:
            fcntl.flock(counter.fd, fcntl.LOCK_EX)
            try:
                stored, req_c, req_p, tok_c, tok_p = _RECORD.unpack_from(counter.map, 0)
                if stored != window:
                    if stored == window - 1:
                        req_c, req_p, tok_c, tok_p = 0, req_c, 0, tok_c
                    else:  # idle for more than a window (or a fresh file)
                        req_c = req_p = tok_c = tok_p = 0
                result, new = change(elapsed, req_c, req_p, tok_c, tok_p)
                if new is not None:
                    _RECORD.pack_into(counter.map, 0, window, *new)
                elif stored != window:
                    _RECORD.pack_into(counter.map, 0, window, req_c, req_p, tok_c, tok_p)
            finally:
                fcntl.flock(counter.fd, fcntl.LOCK_UN)
        return result

    def admit(self, key: KeyConfig, now: float | None = None) -> Verdict:
        """Count one request for ``key`` if both its limits allow it; else a refusal with the wait."""
        rpm, tpm = key.requests_per_minute, key.tokens_per_minute
        if rpm is None and tpm is None:
            return ADMITTED  # no shared state to touch

        def change(elapsed, req_c, req_p, tok_c, tok_p):
            if rpm is not None:
                wait = seconds_until_room(req_c, req_p, elapsed, rpm, 1, self.window_s)
                if wait > 0:
                    return Verdict(False, max(1, math.ceil(wait)), "requests_per_minute", rpm), None
            if tpm is not None:
                wait = seconds_until_room(tok_c, tok_p, elapsed, tpm, 1, self.window_s)
                if wait > 0:
                    return Verdict(False, max(1, math.ceil(wait)), "tokens_per_minute", tpm), None
            return ADMITTED, (req_c + 1, req_p, tok_c, tok_p)

        return self._update(key.name, now, change)

    def charge_tokens(self, key: KeyConfig, tokens: int, now: float | None = None) -> None:
        """Add an answer's prompt + completion tokens to the key's window (only keys with a token limit)."""
        if key.tokens_per_minute is None or tokens <= 0:
            return
        self._update(key.name, now, lambda elapsed, req_c, req_p, tok_c, tok_p: (
            None, (req_c, req_p, tok_c + int(tokens), tok_p)))

    def close(self) -> None:
        with self._open_lock:
            for counter in self._counters.values():
                counter.close()
            self._counters.clear()


__all__ = ["RateLimited", "RateLimiter", "Verdict", "WINDOW_S", "seconds_until_room"]
