"""``max_concurrent_runs`` for local job runs: N slot files per job and state root, held with ``flock``.

A job that allows N concurrent runs has N slot files ``<root>/runs/locks/<job>.<i>.lock``; a run
holds one with an exclusive, non-blocking ``fcntl.flock`` for as long as it runs. The OS drops a
``flock`` when its process dies, so a crashed or killed holder never leaves a stale lock behind
(the file stays, the lock does not). The holder writes its pid, run id and start time into the slot
so the refusal can say who holds it.

A second run *fails fast* with :class:`JobLocked` rather than waiting: a queued local run would
look hung, and Databricks itself skips (does not queue) a run over ``max_concurrent_runs`` unless
queueing is switched on. Unset means 1, the Jobs API default; 0 means every run is skipped.

Locks are per state root (the job's ``root`` parameter): two runs on different roots share no
tables, so they may run at once. POSIX only (``fcntl``), as is the rest of the local runner.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

from ragops.errors import RagopsError


class JobLocked(RagopsError, RuntimeError):
    """A run refused because the job already runs ``max_concurrent_runs`` times on this root."""

    def __init__(self, message: str, job: str, root: Path, holders: list[dict]) -> None:
        super().__init__(message)
        self.job, self.root, self.holders = job, root, holders


def _holder(fd: int) -> dict:
    with contextlib.suppress(OSError, ValueError):
        os.lseek(fd, 0, os.SEEK_SET)
        return json.loads(os.read(fd, 4096).decode() or "{}")
    return {}


@contextlib.contextmanager
def job_slot(job: str, root: Path, max_concurrent_runs: int | None, run_id: str = "") -> Iterator[int]:
    """Hold one of the job's ``max_concurrent_runs`` slots on ``root`` while the block runs; yields
    the slot number. Raises :class:`JobLocked` at once when every slot is held."""
    limit = 1 if max_concurrent_runs is None else int(max_concurrent_runs)
    root = Path(root)
    if limit < 1:
        raise JobLocked(f"{job} has max_concurrent_runs: {limit}, so every run is skipped", job, root, [])
    folder = root / "runs" / "locks"
    folder.mkdir(parents=True, exist_ok=True)
    holders: list[dict] = []
    for slot in range(limit):
        fd = os.open(folder / f"{job}.{slot}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holders.append(_holder(fd))
            os.close(fd)
            continue
        try:
            os.ftruncate(fd, 0)
            os.write(fd, json.dumps({"pid": os.getpid(), "run_id": run_id,
                                     "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}).encode())
            yield slot
        finally:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
        return
    first = holders[0] if holders else {}
    held = f"held by pid {first.get('pid', '?')} since {first.get('since', '?')}"
    if len(holders) > 1:
        held += f" and {len(holders) - 1} more"
    raise JobLocked(f"{job} is already running on {root} (max_concurrent_runs: {limit}, {held}); "
                    f"wait for it or pass --var root=<another folder> to run on other state", job, root, holders)
