"""Per key requests/minute and tokens/minute that hold across every worker process.

LiteLLM keeps its counters per replica, so N replicas let a key through N times its limit (their
issues #40291, #27736). Here every worker of a host reads and updates one small shared record per
key: a file of 120 bytes under ``<root>/gateway/limits/``, memory-mapped and changed under an
exclusive ``fcntl.flock``. A check is two system calls (lock, unlock) and a few loads and stores —
a few microseconds, against ~100 µs for a sqlite WAL transaction — and the kernel releases the lock
if a worker dies holding it.

The count is a **sliding window** of 60 s kept in six 10-second buckets: the last five full
buckets, the current one, and the one that is sliding out, weighted by how much of it is still
inside the window. Unlike a fixed window it never lets twice the limit through across a minute
boundary; unlike a token bucket it gives a fresh key no extra minute of burst; unlike a log of
every request its state is fixed-size. The weighting only approximates within one bucket, so
after a burst a key waits at most ~10 s longer than an exact log would make it.

Requests are counted when admitted. Tokens are charged after the answer (prompt + completion: the
cost is known only then), so a request is admitted while the key has at least one token left in
its window and the answer may overdraw it; the next request then waits until the debt has slid
out. A refusal says how long to wait (``Retry-After``): the time until the request would fit if no
other request arrived.
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
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ragops.serving.gateway.config import KeyConfig

WINDOW_S = 60.0
BUCKETS = 6
_SLOTS = BUCKETS + 1  # the window's buckets + the one sliding out
#: the current bucket's index, then the requests ring, then the tokens ring
_RECORD = struct.Struct(f"<q{_SLOTS}q{_SLOTS}q")


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    retry_after_s: int = 0
    limit_name: str | None = None   # requests_per_minute | tokens_per_minute: the limit that refused
    limit: int | None = None


ADMITTED = Verdict(True)


def seconds_until_room(counts: Sequence[int], elapsed: float, limit: int, cost: int, bucket_s: float) -> float:
    """Seconds until ``cost`` more fits under ``limit`` if nothing else arrives; 0 when it fits now.

    ``counts`` are the window's buckets, oldest first: ``counts[0]`` is the bucket sliding out,
    ``counts[-1]`` the current one; ``elapsed`` is the fraction of the current bucket gone. At a
    time inside the current bucket the total is ``counts[0] * (1 - elapsed) + sum(counts[1:])``;
    later buckets shift the window one bucket on each time."""
    if cost > limit:
        return len(counts) * bucket_s  # never fits; ask again in a window
    n = len(counts)
    for step in range(n):  # step k: the window has moved k buckets on (the future ones are empty)
        sliding = counts[step]
        rest = sum(counts[step + 1:])
        room = limit - cost - rest
        start = elapsed if step == 0 else 0.0
        if room < 0:
            continue
        if sliding <= 0:
            return max(0.0, (step + start - elapsed) * bucket_s)
        needed = max(start, 1.0 - room / sliding)  # the fraction of this bucket at which it fits
        if needed < 1.0 or room >= sliding:
            return max(0.0, (step + needed - elapsed) * bucket_s)
    return (n - elapsed) * bucket_s


class _KeyCounter:
    """One key's shared record: the mapped file and a thread lock (``flock`` does not exclude the
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
    """Shared per-key limits: :meth:`admit` before answering, :meth:`charge_tokens` after."""

    def __init__(self, state_dir: Path, window_s: float = WINDOW_S) -> None:
        self.state_dir = Path(state_dir)
        self.bucket_s = float(window_s) / BUCKETS
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
        """``change(elapsed, requests, tokens)`` on the key's window (bucket lists, oldest first, rolled
        on to now) under the lock; it returns (result, changed) and may change the lists' last items."""
        counter = self._counter(key_name)
        with counter.lock:
            fcntl.flock(counter.fd, fcntl.LOCK_EX)
            try:
                # The clock is read under the lock, so the processes' updates are in time order.
                moment = (time.time() if now is None else now) / self.bucket_s
                current, elapsed = math.floor(moment), moment - math.floor(moment)
                values = _RECORD.unpack_from(counter.map, 0)
                stored, ring_req, ring_tok = values[0], list(values[1:1 + _SLOTS]), list(values[1 + _SLOTS:])
                if current < stored and stored - current < _SLOTS:  # a clock step back: never rewind the window
                    current, elapsed = stored, 0.0
                if current - stored >= _SLOTS or current < stored:  # idle for a window (or a fresh file)
                    ring_req, ring_tok = [0] * _SLOTS, [0] * _SLOTS
                else:
                    for index in range(stored + 1, current + 1):  # buckets started since: empty
                        ring_req[index % _SLOTS] = ring_tok[index % _SLOTS] = 0
                order = [(current - _SLOTS + 1 + i) % _SLOTS for i in range(_SLOTS)]  # oldest → current
                requests, tokens = [ring_req[i] for i in order], [ring_tok[i] for i in order]
                result, changed = change(elapsed, requests, tokens)
                if changed or stored != current:
                    for pos, i in enumerate(order):
                        ring_req[i], ring_tok[i] = requests[pos], tokens[pos]
                    _RECORD.pack_into(counter.map, 0, current, *ring_req, *ring_tok)
            finally:
                fcntl.flock(counter.fd, fcntl.LOCK_UN)
        return result

    def admit(self, key: KeyConfig, now: float | None = None) -> Verdict:
        """Count one request for ``key`` if both its limits allow it; else a refusal with the wait."""
        rpm, tpm = key.requests_per_minute, key.tokens_per_minute
        if rpm is None and tpm is None:
            return ADMITTED  # no shared state to touch

        def change(elapsed: float, requests: list[int], tokens: list[int]):
            for name, limit, counts in (("requests_per_minute", rpm, requests), ("tokens_per_minute", tpm, tokens)):
                if limit is None:
                    continue
                wait = seconds_until_room(counts, elapsed, limit, 1, self.bucket_s)
                if wait > 0:
                    return Verdict(False, max(1, math.ceil(wait)), name, limit), False
            requests[-1] += 1
            return ADMITTED, True

        return self._update(key.name, now, change)

    def charge_tokens(self, key: KeyConfig, tokens: int, now: float | None = None) -> None:
        """Add an answer's prompt + completion tokens to the key's window (keys with a token limit only)."""
        if key.tokens_per_minute is None or tokens <= 0:
            return

        def change(elapsed: float, requests: list[int], counts: list[int]):
            counts[-1] += int(tokens)
            return None, True

        self._update(key.name, now, change)

    def close(self) -> None:
        with self._open_lock:
            for counter in self._counters.values():
                counter.close()
            self._counters.clear()


__all__ = ["BUCKETS", "RateLimiter", "Verdict", "WINDOW_S", "seconds_until_room"]
