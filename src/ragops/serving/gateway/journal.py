"""The lossless inference log: every gateway request → the ``inference_log`` Delta table.

A request must never wait for Delta, and no served request may be lost when the process dies. So
:meth:`InferenceLog.record` does one thing on the request path: a single ``write(2)`` of one JSON
line to an append-only journal file opened with ``O_APPEND``. Once ``write`` returns, the line is
in the kernel's page cache and survives ``kill -9`` of the process (only a crash of the machine
itself can lose it, and a background thread ``fsync``\\ s every :data:`FSYNC_EVERY_S` to bound that
window: group commit). Another background thread reads the journal from its checkpoint, upserts
batches into Delta (every ``flush_every_s`` or as soon as ``max_batch`` rows wait), then advances
the checkpoint: the byte offset of the first line not yet in Delta, in a small sidecar file
written atomically (write a temporary file, ``fsync``, ``rename``). With ``writer="process"`` (the
gateway's choice) that thread only reads the bytes and waits: a spawned writer process parses them
and commits, so the commit never holds the GIL of the process serving requests.

Recovery: Delta writes are idempotent (an upsert keyed by ``request_id`` and ``shadow``), so a
crash between the upsert and the checkpoint only replays rows that are already there. On
:meth:`InferenceLog.start` the process replays its predecessors: every journal in the directory
whose owner is dead. Each live process holds an exclusive ``flock`` on its own journal (released
by the kernel when the process dies, however it dies), so a journal that can be locked belongs to
nobody. Fully flushed journals are deleted; the own journal is rotated past ``rotate_bytes``.

Layout, under ``<settings.root>/gateway/journal/``::

    <pid>-<random>.jsonl   one per process: one JSON object per line (a row of inference_log)
    <pid>-<random>.ckpt    {"offset": N}: bytes [0, N) of the journal are in Delta
    rejected/              lines the table refused (kept for a person, never silently dropped)

Each worker process must create its own :class:`InferenceLog` after it has started (a forked
child would share its parent's lock).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import math
import os
import re
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from ragops.config import Settings
from ragops.errors import RagopsError
from ragops.lakehouse.schemas import spec, validate

log = logging.getLogger(__name__)

#: Where the flusher writes to Delta: ``thread`` (in this process) or ``process`` (a spawned writer
#: process; the gateway's choice, so a commit never holds the request path's GIL).
WRITERS = ("thread", "process")
TABLE = "inference_log"

#: How often the journal is fsync'd (group commit): the most a crash of the machine can lose.
FSYNC_EVERY_S = 0.05
#: Request ids this process remembers for :meth:`InferenceLog.seen` without asking Delta.
RECENT_IDS = 100_000
#: At most this many bytes of journal are read per step (a line is far smaller: fields are capped).
READ_CHUNK_BYTES = 16 << 20
#: A list longer than this (chunk ids, access groups) is cut and the row flagged ``truncated``.
MAX_LIST_ITEMS = 1000
#: Longest string kept inside one source once the sources JSON is over the size limit.
SOURCE_VALUE_CHARS = 200
#: Bearer tokens and ``api_key=…``-style secrets in free text (an upstream's error message can echo
#: the request's headers): replaced before anything is written.
_SECRET_PATTERNS = (
    re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=:-]{8,}"),
    re.compile(r"(?i)\b(api[_-]?key|authorization|x-api-key|token|secret|password)"
               r"(\"?'?\s*[:=]\s*\"?'?)(?!bearer\b|basic\b)[^\s\"',;}]{4,}"),
)


class InferenceLogError(RagopsError, RuntimeError):
    """The inference log cannot be used (not started, closed, or its directory is not writable)."""


@dataclass
class InferenceRecord:
    """One row of ``inference_log`` (schema: :data:`ragops.lakehouse.schemas.INFERENCE_LOG`)."""

    request_id: str
    timestamp: datetime
    key_name: str
    route: str
    target: str
    model_uri: str | None
    model_version: str | None
    lineage: dict
    question: str
    answer: str
    sources: list[dict]
    chunk_ids: list[str]
    status: str  # ok | error | timeout | refused (4xx) | fallback
    http_status: int
    error: str | None
    latency_ms: float
    ttft_ms: float | None
    prompt_tokens: int
    completion_tokens: int
    shadow: bool = False
    access_groups: list[str] | None = None  # the document filter that applied; None = no filter
    guardrails: list[dict] = field(default_factory=list)  # filled by the guardrails issue
    truncated: bool = False  # set by the log when a field was cut
    endpoint: str = "ragops-gateway"


# --- one record → one journal line -------------------------------------------------------------
def redact_secrets(text: str) -> str:
    """``text`` with bearer tokens and ``key=value`` secrets replaced by ``[REDACTED]``."""
    text = _SECRET_PATTERNS[0].sub(lambda m: f"{m.group(1)} [REDACTED]", text)
    return _SECRET_PATTERNS[1].sub(lambda m: f"{m.group(1)}{m.group(2)}[REDACTED]", text)


def model_name_of(model_uri: str | None) -> str | None:
    """``models:/rag_chain@champion`` and ``models:/rag_chain/3`` → ``rag_chain``."""
    if not model_uri or not model_uri.startswith("models:/"):
        return None
    return re.split(r"[@/]", model_uri[len("models:/"):], maxsplit=1)[0] or None


def _int(value: Any) -> int | None:
    """A count or status as an int; a value that is not one is null rather than a lost row."""
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None


def _float(value: Any) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


def _iso(ts: datetime | None) -> str:
    if ts is None:
        ts = datetime.now(timezone.utc)
    if ts.tzinfo is None:  # the gateway's clocks are UTC; a naive time is taken as UTC, not local
        ts = ts.replace(tzinfo=timezone.utc)
    return ts.astimezone(timezone.utc).isoformat()


def _cut(text: str | None, limit: int) -> tuple[str | None, bool]:
    if text is None or len(text) <= limit:
        return text, False
    return text[:limit], True


def _cut_sources(sources: list[dict], limit: int) -> tuple[str, bool]:
    """Sources as a JSON list of at most ``limit`` characters that is still valid JSON: long values
    are shortened first, then trailing sources go (the best-ranked come first)."""
    text = json.dumps(sources, ensure_ascii=False, default=str)
    if len(text) <= limit:
        return text, False
    short = [
        {k: (v[:SOURCE_VALUE_CHARS] if isinstance(v, str) else v) for k, v in s.items()} if isinstance(s, dict) else s
        for s in sources
    ]
    while short:
        text = json.dumps(short, ensure_ascii=False, default=str)
        if len(text) <= limit:
            return text, True
        short.pop()
    return "[]", True


def to_row(rec: InferenceRecord, max_field_chars: int) -> dict[str, Any]:
    """The ``inference_log`` row of a record: JSON-ready, fields capped at ``max_field_chars``. Lenient
    with odd values (a count that is not a number becomes null): the row is kept either way."""
    question, cut_q = _cut(None if rec.question is None else str(rec.question), max_field_chars)
    answer, cut_a = _cut(None if rec.answer is None else str(rec.answer), max_field_chars)
    error, cut_e = _cut(redact_secrets(str(rec.error)) if rec.error else None, max_field_chars)
    sources, cut_s = _cut_sources(list(rec.sources or []), max_field_chars)
    lineage, cut_l = _cut(redact_secrets(json.dumps(rec.lineage or {}, ensure_ascii=False, default=str)),
                          max_field_chars)
    guardrails, cut_g = _cut(json.dumps(rec.guardrails or [], ensure_ascii=False, default=str), max_field_chars)
    chunk_ids = [str(c) for c in (rec.chunk_ids or [])]
    groups = None if rec.access_groups is None else [str(g) for g in rec.access_groups]
    cut_lists = len(chunk_ids) > MAX_LIST_ITEMS or (groups is not None and len(groups) > MAX_LIST_ITEMS)
    # request_id first: seen() finds an un-flushed request by a byte search for this prefix.
    return {
        "request_id": str(rec.request_id),
        "shadow": bool(rec.shadow),
        "timestamp": _iso(rec.timestamp),
        "endpoint": rec.endpoint,
        "key_name": rec.key_name,
        "route": rec.route,
        "target": rec.target,
        "model_name": model_name_of(rec.model_uri),
        "model_uri": rec.model_uri,
        "model_version": None if rec.model_version is None else str(rec.model_version),
        "question": question,
        "answer": answer,
        "sources": sources,
        "chunk_ids": chunk_ids[:MAX_LIST_ITEMS],
        "status": rec.status,
        "http_status": _int(rec.http_status),
        "error": error,
        "latency_ms": _float(rec.latency_ms),
        "ttft_ms": _float(rec.ttft_ms),
        "prompt_tokens": _int(rec.prompt_tokens),
        "completion_tokens": _int(rec.completion_tokens),
        "lineage": lineage,
        "access_groups": None if groups is None else groups[:MAX_LIST_ITEMS],
        "guardrails": guardrails,
        "truncated": bool(rec.truncated or cut_q or cut_a or cut_e or cut_s or cut_l or cut_g or cut_lists),
    }


def _id_needle(request_id: str) -> bytes:
    return b'{"request_id":' + json.dumps(request_id, ensure_ascii=False).encode()


_DEFAULTS: dict[str, Any] = {"shadow": False, "truncated": False}


def rows_to_frame(rows: list[Mapping[str, Any]]) -> pd.DataFrame:
    """Journal rows → a frame in the table's columns and types. Columns a row lacks (a journal
    written by an older version) are null; keys the table does not know are ignored."""
    columns = spec(TABLE).columns
    frame = pd.DataFrame.from_records(
        [{c: row.get(c, _DEFAULTS.get(c)) for c in columns} for row in rows], columns=columns
    )
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True, format="ISO8601")
    for c in ("shadow", "truncated"):
        frame[c] = frame[c].astype("boolean").fillna(False).astype(bool)
    for c in ("http_status", "prompt_tokens", "completion_tokens"):
        frame[c] = frame[c].astype("Int32")
    for c in ("latency_ms", "ttft_ms"):
        frame[c] = frame[c].astype("float64")
    return frame


def _dedupe(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per table key, the last recorded winning (one upsert may not hold a key twice)."""
    keys = spec(TABLE).keys
    latest: dict[tuple, dict[str, Any]] = {}
    for row in rows:
        key = tuple(row.get(k, _DEFAULTS.get(k)) for k in keys)
        latest.pop(key, None)
        latest[key] = row
    return list(latest.values())


# --- writing a batch of journal lines to Delta (the flusher thread's, or the writer process's) -----
def batch_end(data: bytes, max_batch: int) -> int:
    """Bytes of ``data`` (complete lines) that hold its first ``max_batch`` non-empty lines."""
    pos = count = 0
    while pos < len(data) and count < max_batch:
        nl = data.index(b"\n", pos)
        count += bool(data[pos:nl].strip())
        pos = nl + 1
    return pos


def parse_lines(data: bytes) -> tuple[list[dict[str, Any]], list[bytes]]:
    """Journal lines → (rows, the non-empty lines that are not a row: torn or not JSON)."""
    rows: list[dict[str, Any]] = []
    bad: list[bytes] = []
    for line in data.split(b"\n"):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            row = None
        if isinstance(row, dict) and row.get("request_id"):
            rows.append(row)
        else:
            bad.append(line)
    return rows, bad


def write_lines(lh: Any, data: bytes) -> tuple[int, list[bytes], list[tuple[bytes, str]]]:
    """Upsert the journal lines ``data`` (complete lines) into ``inference_log``: (records
    written, unreadable lines, (line, why) of rows the table refused). A refused row would block
    every later one, so it is set aside and the others written; any other failure (Delta
    unreachable, commit conflicts past the retries) propagates and nothing is set aside."""
    rows, bad = parse_lines(data)
    if not rows:
        return 0, bad, []
    unique = _dedupe(rows)
    try:
        # upsert validates the batch before any commit; validating it here too would double the work
        lh.upsert(TABLE, rows_to_frame(unique))
        return len(rows), bad, []
    except (ValueError, TypeError) as exc:  # SchemaError is a ValueError; nothing was written
        log.error("inference log: %s refuses a batch of %d rows (%s); checking them one by one",
                  TABLE, len(unique), exc)
    good, refused = [], []
    for row in unique:
        try:
            validate(TABLE, rows_to_frame([row]))
            good.append(row)
        except (ValueError, TypeError) as row_exc:
            refused.append((json.dumps(row, ensure_ascii=False, default=str).encode(), str(row_exc)))
    if good:
        lh.upsert(TABLE, rows_to_frame(good))
    return len(rows), bad, refused


_WRITER_LAKEHOUSES: dict[str, Any] = {}


def _write_lines_in_writer(settings: Settings, data: bytes) -> tuple[int, list[bytes], list[tuple[bytes, str]]]:
    """:func:`write_lines` in the writer process, with its own lakehouse (opened once)."""
    key = str(settings.root)
    if key not in _WRITER_LAKEHOUSES:
        from ragops.lakehouse import open_lakehouse

        _WRITER_LAKEHOUSES[key] = open_lakehouse(settings)
    return write_lines(_WRITER_LAKEHOUSES[key], data)


# --- one journal file -----------------------------------------------------------------------------
def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            return False
        raise
    return True


@dataclass
class _Journal:
    """An open journal file whose flock this process holds, and how much of it is in Delta."""

    path: Path
    fd: int
    own: bool  # written by this process (its unflushed rows count in depth())
    offset: int = 0  # first byte not yet in Delta (the checkpoint)

    @property
    def checkpoint_path(self) -> Path:
        return self.path.with_suffix(".ckpt")

    @staticmethod
    def read_checkpoint(path: Path) -> int:
        try:
            return int(json.loads(path.with_suffix(".ckpt").read_text())["offset"])
        except FileNotFoundError:
            return 0
        except (ValueError, KeyError, TypeError, OSError) as exc:
            # A torn or garbled checkpoint only costs a replay from the start (upserts are idempotent).
            log.warning("journal checkpoint %s unreadable (%s); replaying the journal from the start",
                        path.with_suffix(".ckpt"), exc)
            return 0

    def write_checkpoint(self, offset: int) -> None:
        tmp = self.checkpoint_path.with_suffix(".ckpt.tmp")
        with open(tmp, "w") as f:
            f.write(json.dumps({"offset": offset}))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.checkpoint_path)
        self.offset = offset

    def size(self) -> int:
        return os.fstat(self.fd).st_size

    def remove(self) -> None:
        """Delete a fully flushed journal and its checkpoint, then let go of the lock."""
        for p in (self.path, self.checkpoint_path):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
        os.close(self.fd)


# --- the log ----------------------------------------------------------------------------------------
class InferenceLog:
    """Per-process inference log: :meth:`record` on the request path, Delta in the background.

    ``flush_every_s`` bounds how long a row waits before it is written to Delta (the issue's
    visibility target is 60 s at p99); ``max_batch`` rows trigger a write earlier. Text fields
    longer than ``max_field_chars`` are cut and the row is flagged ``truncated``. The own journal
    is rotated once it is over ``rotate_bytes`` (the old one is deleted once flushed).
    """

    def __init__(self, settings: Settings, journal_dir: Path | None = None, *,
                 flush_every_s: float = 5.0, max_batch: int = 2000, max_field_chars: int = 32_000,
                 rotate_bytes: int = 64 << 20, writer: str = "thread") -> None:
        if flush_every_s <= 0 or max_batch < 1 or max_field_chars < 1:
            raise InferenceLogError("flush_every_s, max_batch and max_field_chars must be positive")
        if writer not in WRITERS:
            raise InferenceLogError(f"writer={writer!r}: use one of {', '.join(WRITERS)}")
        self.settings = settings
        self.writer = writer
        self._pool = None  # writer="process": the writer process, started at the first flush
        self.journal_dir = Path(journal_dir) if journal_dir else settings.root / "gateway" / "journal"
        self.flush_every_s = flush_every_s
        self.max_batch = max_batch
        self.max_field_chars = max_field_chars
        self.rotate_bytes = rotate_bytes
        self._lh = None
        self._lock = threading.Lock()  # record(): the write and the counters
        self._flush_lock = threading.Lock()  # one drain at a time (flusher thread, flush(), close())
        self._sync_lock = threading.Lock()  # fsync never runs on a descriptor being closed
        self._own: _Journal | None = None
        self._draining: list[_Journal] = []  # rotated own journals and adopted dead ones
        self._recent: OrderedDict[str, None] = OrderedDict()
        self._recorded = 0  # rows recorded by this process
        self._flushed = 0  # of those, rows now in Delta (or set aside as rejected)
        self._dirty = False  # bytes written since the last fsync
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._closed = False
        self._write_errors = 0
        self.last_error: str | None = None  # the latest failed Delta write (for /ready and logs)

    # --- lifecycle ------------------------------------------------------------------------------
    @property
    def lakehouse(self):
        if self._lh is None:
            from ragops.lakehouse import open_lakehouse

            self._lh = open_lakehouse(self.settings)
        return self._lh

    def start(self) -> None:
        """Open this process's journal, replay every dead process's journal into Delta, and start the
        flusher and fsync threads. A replay that cannot reach Delta is logged and retried by the flusher."""
        if self._own is not None:
            return
        if self._closed:
            raise InferenceLogError("this InferenceLog is closed; create a new one")
        try:
            self.journal_dir.mkdir(parents=True, exist_ok=True)
            self._own = self._open_new_journal()
        except OSError as exc:
            raise InferenceLogError(f"inference journal directory {self.journal_dir} is not writable ({exc}); "
                                    "set root to a writable folder") from exc
        self._adopt_dead_journals()
        try:
            replayed = self._drain_adopted()
            if replayed:
                log.info("inference log: replayed %d journaled rows into %s", replayed, TABLE)
        except Exception as exc:
            self.last_error = f"{type(exc).__name__}: {exc}"
            log.warning("inference log: replay into %s failed (%s); the flusher retries", TABLE, exc)
        self._stop.clear()
        self._threads = [
            threading.Thread(target=self._flush_loop, name="inference-log-flusher", daemon=True),
            threading.Thread(target=self._fsync_loop, name="inference-log-fsync", daemon=True),
        ]
        for t in self._threads:
            t.start()

    def close(self) -> None:
        """Stop the threads and write everything to Delta (the SIGTERM path). A journal that could
        not be flushed stays on disk, locked by nobody: the next start replays it."""
        if self._closed:
            return
        self._stop.set()
        self._wake.set()
        for t in self._threads:
            t.join(timeout=60)
        self._threads = []
        if self._own is None:
            self._stop_writer()
            self._closed = True
            return
        self._fsync()
        try:
            self.flush()
        except Exception as exc:  # the journal keeps the rows: nothing is lost, it is only late
            log.error("inference log: final flush failed (%s); %d rows stay in the journal %s for the next start",
                      exc, self.depth(), self._own.path)
        self._stop_writer()
        with self._lock:
            self._closed = True
            own, self._own = self._own, None
        with self._sync_lock:
            for j in [own, *self._draining]:
                if j.offset >= j.size():
                    j.remove()
                else:
                    os.close(j.fd)
            self._draining = []

    def __enter__(self) -> InferenceLog:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the request path -------------------------------------------------------------------------
    def record(self, rec: InferenceRecord) -> None:
        """Append one row to the journal: one ``write(2)``, no fsync, no Delta. A failed write (a full
        disk) does not fail the request, which was served: it is logged and counted in
        :attr:`write_errors`. Raises :class:`InferenceLogError` only before :meth:`start` or after
        :meth:`close`."""
        line = (json.dumps(to_row(rec, self.max_field_chars), ensure_ascii=False, separators=(",", ":"))
                + "\n").encode("utf-8")
        with self._lock:
            if self._own is None:
                raise InferenceLogError("InferenceLog.record() before start() or after close()")
            try:
                written = os.write(self._own.fd, line)
                while written < len(line):  # a short write (a full disk, a signal): finish the line
                    written += os.write(self._own.fd, line[written:])
            except OSError as exc:
                self._write_errors += 1
                log.error("inference journal %s: write failed (%s); request %s is not in the log",
                          self._own.path, exc, rec.request_id)
                return
            self._recorded += 1
            self._dirty = True
            self._recent[rec.request_id] = None
            if len(self._recent) > RECENT_IDS:
                self._recent.popitem(last=False)
            full = self._recorded - self._flushed >= self.max_batch
        if full:
            self._wake.set()

    def depth(self) -> int:
        """Rows recorded by this process that are not in Delta yet (the /metrics gauge)."""
        return self._recorded - self._flushed

    @property
    def write_errors(self) -> int:
        """Journal writes that failed (a full disk): those requests are not in the log."""
        return self._write_errors

    def _unflushed(self) -> Iterator[bytes]:
        """What every journal on this machine holds past its checkpoint (not in Delta yet)."""
        for path in sorted(self.journal_dir.glob("*.jsonl")):
            try:
                with open(path, "rb") as f:
                    f.seek(_Journal.read_checkpoint(path))
                    yield f.read()
            except (FileNotFoundError, OSError):  # flushed and deleted meanwhile: then it is in Delta
                continue

    def pending_rows(self) -> list[dict[str, Any]]:
        """The rows recorded on this machine that are not in Delta yet, oldest journal first (a line
        being written right now is skipped)."""
        return [row for data in self._unflushed() for row in parse_lines(data)[0]]

    def seen(self, request_id: str) -> bool:
        """Whether a request was logged: recently by this process, in any process's un-flushed
        journal on this machine, or in the Delta table."""
        if request_id in self._recent:
            return True
        needle = _id_needle(request_id)
        if any(needle in data for data in self._unflushed()):
            return True
        lh = self.lakehouse
        if not lh.exists(TABLE):
            return False
        found = not lh.read(TABLE, ["request_id"], where={"request_id": [request_id]}).empty
        if found:
            with self._lock:
                self._recent[request_id] = None
        return found

    # --- the background --------------------------------------------------------------------------
    def flush(self) -> int:
        """Write every record journaled so far to Delta now; how many records that was (a request
        recorded twice counts twice and is one row, its latest)."""
        with self._flush_lock:
            written = self._drain_adopted() + self._drain_own()
            if self._rotate_if_big():
                written += self._drain_adopted()
            return written

    def _fsync(self) -> None:
        with self._sync_lock:
            if self._own is not None and self._dirty:
                self._dirty = False
                try:
                    os.fsync(self._own.fd)
                except OSError as exc:
                    log.error("inference journal %s: fsync failed (%s)", self._own.path, exc)

    def _fsync_loop(self) -> None:
        while not self._stop.wait(FSYNC_EVERY_S):
            self._fsync()

    def _flush_loop(self) -> None:
        failures = 0
        while not self._stop.is_set():
            if failures:
                # Delta unreachable: back off, deaf to "batch full" wake-ups (the journal holds the rows).
                self._stop.wait(min(self.flush_every_s * 2**failures, 60.0))
            else:
                self._wake.wait(self.flush_every_s)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self.flush()
                failures, self.last_error = 0, None
            except Exception as exc:
                failures += 1
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("inference log: writing to %s failed (%s); %d rows wait in the journal",
                            TABLE, exc, self.depth())

    # --- journals -------------------------------------------------------------------------------
    def _open_new_journal(self) -> _Journal:
        """Create and lock a fresh journal. It gets its final name only once locked, so another process
        scanning the directory never takes a live journal for a dead one."""
        name = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
        pending = self.journal_dir / f"{name}.jsonl.new"
        # Read and write: the flusher reads the journal back through the same descriptor (pread).
        fd = os.open(pending, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        path = self.journal_dir / f"{name}.jsonl"
        os.rename(pending, path)
        return _Journal(path, fd, own=True)

    def _adopt_dead_journals(self) -> None:
        for path in sorted(self.journal_dir.glob("*.jsonl")):
            if self._own is not None and path == self._own.path:
                continue
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:  # another process replayed and removed it meanwhile
                continue
            if not _try_lock(fd):  # its owner is alive
                os.close(fd)
                continue
            offset = _Journal.read_checkpoint(path)
            log.info("inference log: replaying %s from byte %d (its process is gone)", path.name, offset)
            self._draining.append(_Journal(path, fd, own=False, offset=offset))
        self._remove_stale_new_files()

    def _remove_stale_new_files(self, older_than_s: float = 60.0) -> None:
        """A process killed between creating and naming its journal leaves an empty ``.jsonl.new``."""
        for path in self.journal_dir.glob("*.jsonl.new"):
            with contextlib.suppress(OSError):
                if time.time() - path.stat().st_mtime > older_than_s:
                    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
                    try:
                        if _try_lock(fd):
                            path.unlink()
                    finally:
                        os.close(fd)

    def _rotate_if_big(self) -> bool:
        """Start a new own journal once the current one is big; the old one takes no more writes and
        is deleted once drained (its lock is held until then, so nobody else replays it)."""
        own = self._own
        if own is None or own.size() < self.rotate_bytes:
            return False
        fresh = self._open_new_journal()
        with self._lock:
            old, self._own = self._own, fresh
        with self._sync_lock:
            os.fsync(old.fd)
        self._draining.append(old)
        return True

    def _drain_adopted(self) -> int:
        written = 0
        for journal in list(self._draining):
            # Dead processes' journals and rotated own ones take no more writes.
            written += self._drain(journal, final=True)
            if journal.offset >= journal.size():
                with self._sync_lock:
                    self._draining.remove(journal)
                    journal.remove()
        return written

    def _drain_own(self) -> int:
        own = self._own
        return self._drain(own, final=False) if own is not None else 0

    def _drain(self, journal: _Journal, final: bool) -> int:
        """Upsert a journal's lines after its checkpoint in batches of ``max_batch``, advancing the
        checkpoint after each. ``final``: nobody writes to it any more, so a trailing fragment
        without a newline is a write torn by the owner's death (its record() never returned).

        Only what the journal held on entry: rows recorded meanwhile wait for the next round, so a
        busy log writes one batch per ``flush_every_s`` instead of a stream of tiny commits."""
        written = 0
        size = journal.size()
        while True:
            if journal.offset >= size:
                return written
            data = os.pread(journal.fd, min(size - journal.offset, READ_CHUNK_BYTES), journal.offset)
            end = data.rfind(b"\n") + 1
            if end == 0:
                if final or len(data) >= READ_CHUNK_BYTES:
                    log.warning("inference journal %s: skipping %d bytes without a line end at byte %d",
                                journal.path.name, len(data), journal.offset)
                    journal.write_checkpoint(journal.offset + len(data))
                    continue
                return written  # a line being written right now: the next round takes it
            consumed = batch_end(data[:end], self.max_batch)
            n, bad, refused = self._write_lines(data[:consumed])
            written += n
            # set aside once the batch is safe (a failed write re-reads these lines)
            if bad:
                self._reject(bad, journal, "unreadable journal line")
            for line, why in refused:
                self._reject([line], journal, why)
            journal.write_checkpoint(journal.offset + consumed)
            if journal.own:
                with self._lock:
                    self._flushed += n + len(bad)

    def _stop_writer(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def _write_lines(self, data: bytes) -> tuple[int, list[bytes], list[tuple[bytes, str]]]:
        """:func:`write_lines` here (``writer="thread"``) or in the writer process, so the parsing,
        the frame and the Delta commit do not hold this process's GIL while it serves requests."""
        if self.writer == "thread":
            return write_lines(self.lakehouse, data)
        from concurrent.futures.process import BrokenProcessPool

        if self._pool is None:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            # spawn: a process forked after deltalake is used panics (ARCHITECTURE.md)
            self._pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
        try:
            return self._pool.submit(_write_lines_in_writer, self.settings, data).result()
        except BrokenProcessPool:
            self._pool = None  # the writer died (killed, out of memory): a new one next round
            raise

    def _reject(self, lines: Iterable[bytes], journal: _Journal, why: str) -> None:
        folder = self.journal_dir / "rejected"
        folder.mkdir(exist_ok=True)
        with open(folder / journal.path.name, "ab") as f:
            for line in lines:
                f.write(line.rstrip(b"\n") + b"\n")
        log.error("inference journal %s: a line was set aside in %s: %s", journal.path.name, folder, why)


# --- Databricks inference tables ----------------------------------------------------------------
def newest_requests(lh: Any, n: int, columns: list[str]) -> pd.DataFrame:
    """The ``n`` most recent served (non-shadow) requests in the Delta ``inference_log``, ``columns``
    of them (``request_id`` and ``shadow`` included): two reads, the newest ids from three narrow
    columns, then only those rows. Empty when the table does not exist."""
    cols = list(dict.fromkeys(["request_id", "shadow", *columns]))
    if not lh.exists(TABLE):
        return pd.DataFrame(columns=cols)
    index = lh.read(TABLE, ["request_id", "timestamp", "shadow"])
    index = index[~index["shadow"].fillna(False).astype(bool)]
    newest = index.sort_values("timestamp", ascending=False).head(n)["request_id"].tolist()
    if not newest:
        return pd.DataFrame(columns=cols)
    rows = lh.read(TABLE, cols, where={"request_id": newest})
    return rows[~rows["shadow"].fillna(False).astype(bool)]


def _json_or_none(raw: Any) -> Any:
    if raw is None or (isinstance(raw, float) and math.isnan(raw)):
        return None
    if isinstance(raw, (dict, list)):
        return raw
    try:
        return json.loads(raw)
    except (TypeError, ValueError):
        return None


def _text(content: Any) -> str:
    """OpenAI message content: a string, or a list of parts of which the text ones count."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type", "text") == "text")
    return ""


def _question_of(request: Any) -> str:
    if not isinstance(request, dict):
        return ""
    messages = request.get("messages")
    if isinstance(messages, list):
        users = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"]
        if users:
            return _text(users[-1].get("content"))
    for records_key in ("dataframe_records", "inputs"):  # the chain served as a pyfunc model
        records = request.get(records_key)
        if isinstance(records, list) and records and isinstance(records[0], dict):
            return str(records[0].get("question") or records[0].get("query") or "")
    return str(request.get("question") or request.get("prompt") or "")


def _answer_of(response: Any) -> tuple[str, dict[str, Any]]:
    """(answer text, the answer's own record: sources, lineage, usage) of a chat completion or a
    pyfunc ``predictions`` response."""
    if not isinstance(response, dict):
        return "", {}
    choices = response.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        message = choices[0].get("message") or choices[0].get("delta") or {}
        return _text(message.get("content")), response
    predictions = response.get("predictions")
    if isinstance(predictions, list) and predictions:
        first = predictions[0]
        if isinstance(first, dict):
            return str(first.get("answer") or first.get("result") or ""), first
        return str(first), {}
    return "", response


def _ttft_ms(body: Mapping[str, Any]) -> float | None:
    """The chain's own time to first token, when the endpoint returned its timings (a pyfunc chain)."""
    timings = body.get("timings_ms")
    value = timings.get("time_to_first_token_ms") if isinstance(timings, dict) else None
    return float(value) if isinstance(value, (int, float)) else None


def from_databricks_payload(row: Mapping[str, Any], *, endpoint: str | None = None,
                            max_field_chars: int = 32_000) -> dict[str, Any]:
    """A row of a Databricks serving endpoint's (AI Gateway) inference table → an ``inference_log`` row.

    The payload table's columns: ``databricks_request_id``, ``client_request_id``, ``request_date``,
    ``request_time``, ``status_code``, ``sampling_fraction``, ``execution_duration_ms``, ``request``
    and ``response`` (raw JSON bodies; null when over the logging size limit, then
    ``logging_error_codes`` says so, e.g. ``MAX_RESPONSE_SIZE_EXCEEDED``), ``served_entity_id`` and
    ``requester`` (the calling user or service principal). ``request_id`` is Databricks' id, the one
    that is unique; the client's own id, when it sent one, goes to ``lineage``. The caller becomes ``key_name``; a body Databricks did not log is an empty text flagged ``truncated``.
    """
    request = _json_or_none(row.get("request"))
    response = _json_or_none(row.get("response"))
    answer, body = _answer_of(response)
    usage = body.get("usage") if isinstance(body.get("usage"), dict) else {}
    sources = body.get("sources") if isinstance(body.get("sources"), list) else []
    lineage = body.get("lineage") if isinstance(body.get("lineage"), dict) else {}
    codes = row.get("logging_error_codes")  # a list, or a numpy array when read through pandas
    codes = [] if codes is None or isinstance(codes, float) else [str(c) for c in codes]
    status_code = int(row.get("status_code") or 0)
    ts = row.get("request_time")
    if ts is None and row.get("timestamp_ms") is not None:  # the legacy (pre-AI Gateway) table
        ts = datetime.fromtimestamp(int(row["timestamp_ms"]) / 1000, tz=timezone.utc)
    if ts is None or not row.get("databricks_request_id"):
        raise InferenceLogError("a Databricks inference table row needs databricks_request_id and request_time; "
                                f"got columns {sorted(row)}")
    ts = pd.Timestamp(ts)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    served = row.get("served_entity_id")
    model_uri = body.get("model_uri") if isinstance(body.get("model_uri"), str) else None
    error = None
    if status_code >= 400:  # OpenAI's {"error": {"message"}} or Databricks' {"error_code", "message"}
        err = body.get("error")
        error = err.get("message") if isinstance(err, dict) else err if isinstance(err, str) else None
        error = error or body.get("message")
        error = str(error) if error else (json.dumps(response)[:1000] if response is not None else f"HTTP {status_code}")
    if codes:
        error = ((error + "; ") if error else "") + "not logged by Databricks: " + ", ".join(codes)
    rec = InferenceRecord(
        request_id=str(row["databricks_request_id"]),
        timestamp=ts.to_pydatetime(),
        key_name=row.get("requester") or "",
        route=endpoint or "",
        target=str(served) if served else "",
        model_uri=model_uri,
        model_version=body.get("model_version") if isinstance(body.get("model_version"), str) else None,
        lineage={**lineage, "client_request_id": row.get("client_request_id"),
                 "served_entity_id": served, "sampling_fraction": row.get("sampling_fraction")},
        question=_question_of(request),
        answer=answer,
        sources=[s for s in sources if isinstance(s, dict)],
        chunk_ids=[str(s["chunk_id"]) for s in sources if isinstance(s, dict) and s.get("chunk_id")],
        status="ok" if status_code < 400 else ("timeout" if status_code == 504 else
                                               "refused" if status_code < 500 else "error"),
        http_status=status_code,
        error=error,
        latency_ms=float(row.get("execution_duration_ms") or 0),
        ttft_ms=_ttft_ms(body),
        prompt_tokens=int(usage.get("prompt_tokens") or 0),
        completion_tokens=int(usage.get("completion_tokens") or 0),
        truncated=bool(codes),
        endpoint=endpoint or "databricks",
    )
    out = to_row(rec, max_field_chars)
    out["timestamp"] = ts
    return out


def import_databricks_payload(lh, rows: Iterable[Mapping[str, Any]], *, endpoint: str | None = None):
    """Upsert rows of an endpoint's inference table (e.g. ``spark.table("<catalog>.<schema>.
    <prefix>_payload").toPandas().to_dict("records")``) into ``inference_log``; idempotent like
    the gateway's own writes. Returns the lakehouse's ``WriteResult``."""
    mapped = _dedupe([from_databricks_payload(r, endpoint=endpoint) for r in rows])
    return lh.upsert(TABLE, rows_to_frame(mapped) if mapped else pd.DataFrame(columns=spec(TABLE).columns))


__all__ = [
    "InferenceLog",
    "InferenceLogError",
    "InferenceRecord",
    "from_databricks_payload",
    "import_databricks_payload",
    "redact_secrets",
    "rows_to_frame",
    "to_row",
]
