"""The inference log's costs: ``InferenceLog.record()`` on the request path, Delta visibility, replay.

    .venv/bin/python benchmarks/bench_journal.py
    .venv/bin/python benchmarks/bench_journal.py --rows 10000 --paced-s 30 --out benchmarks/results/bench_journal.json

Rows are realistic (a question, an answer of ``--answer-chars``, five sources, lineage), ~8 KB of JSON.

(a) ``record_idle_us``: ``--rows`` calls back to back, the flusher idle (no Delta write during the
    loop): the call's own cost (one ``json.dumps`` + one ``write(2)``) plus the machine's noise.
(b) ``record_busy_us``: the same with the flusher writing to Delta every ``--flush-every-s`` and at
    every ``--max-batch`` rows: what the flusher's Python work (GIL) adds to the request thread.
(c) ``paced``: ``--rate`` requests/s for ``--paced-s`` seconds with the default ``flush_every_s``
    (5 s): record() latency at a gateway-like load, and ``visibility_s``, the time from record()
    to the row being readable in Delta, observed by a separate process polling the table every
    0.25 s (so its reads do not compete for this process's GIL). The issue's target: 60 s at p99.
(d) ``replay``: a child process journals ``--rows`` rows and dies without flushing (``os._exit``,
    as after ``kill -9``); a fresh ``InferenceLog.start()`` replays them: journal → Delta rows/s in
    batches of ``--max-batch`` (the flusher's throughput: the same code path).

Percentiles are nearest-rank over every call. Writes under a temporary root (``--root`` keeps it).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

os.environ.setdefault("RAGOPS_PROGRESS", "0")

from ragops.config import Settings  # noqa: E402
from ragops.lakehouse import open_lakehouse  # noqa: E402
from ragops.serving.gateway.journal import InferenceLog, InferenceRecord  # noqa: E402


def make_record(i: int, answer_chars: int, prefix: str) -> InferenceRecord:
    return InferenceRecord(
        request_id=f"{prefix}-{i:08d}", timestamp=datetime.now(timezone.utc), key_name="bench", route="rag_chain",
        target="champion", model_uri="models:/rag_chain@champion", model_version="3",
        lineage={"index_snapshot": "snap-000042", "prompt_version": "v2", "chain_config_hash": "9f2c1e7a"},
        question="How long are raw samples kept before downsampling, and can that be changed per tenant?",
        answer=("Raw samples are kept for 30 days. " * (answer_chars // 34 + 1))[:answer_chars],
        sources=[{"doc_id": f"guides/doc-{k}.md", "source_uri": f"file:///corpus/guides/doc-{k}.md",
                  "chunk_id": f"chunk-{i}-{k}", "title": "Retention", "score": 0.9 - k / 10} for k in range(5)],
        chunk_ids=[f"chunk-{i}-{k}" for k in range(5)], status="ok", http_status=200, error=None,
        latency_ms=812.5, ttft_ms=120.0, prompt_tokens=312, completion_tokens=40, access_groups=["eng"])


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, max(0, int(-(-q / 100 * len(values) // 1)) - 1))]


def summary(values: list[float], digits: int = 1) -> dict[str, float]:
    return {"p50": round(pct(values, 50), digits), "p99": round(pct(values, 99), digits),
            "p99_9": round(pct(values, 99.9), digits), "max": round(max(values), digits),
            "mean": round(statistics.fmean(values), digits)}


def timed_records(log: InferenceLog, n: int, answer_chars: int, prefix: str) -> list[float]:
    times_us = []
    for i in range(n):
        rec = make_record(i, answer_chars, prefix)
        t = time.perf_counter_ns()
        log.record(rec)
        times_us.append((time.perf_counter_ns() - t) / 1000)
    return times_us


def poll_table(root: str, prefix: str, expected: int, timeout_s: float) -> None:
    """Child process of (c): print {request_id: first time seen in Delta} once all are seen."""
    lh = open_lakehouse(Settings.from_variables({"root": root}))
    first_seen: dict[str, float] = {}
    deadline = time.time() + timeout_s
    while len(first_seen) < expected and time.time() < deadline:
        if lh.exists("inference_log"):
            now = time.time()
            for rid in lh.read("inference_log", ["request_id"])["request_id"]:
                if rid.startswith(prefix) and rid not in first_seen:
                    first_seen[rid] = now
        time.sleep(0.25)
    print(json.dumps(first_seen))


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=10_000)
    p.add_argument("--answer-chars", type=int, default=1500)
    p.add_argument("--flush-every-s", type=float, default=1.0, help="(b)'s flush interval")
    p.add_argument("--max-batch", type=int, default=2000)
    p.add_argument("--rate", type=float, default=100.0, help="(c)'s requests per second")
    p.add_argument("--paced-s", type=float, default=20.0, help="(c)'s duration")
    p.add_argument("--root", type=Path, default=None, help="state root (default: a temporary folder, removed)")
    p.add_argument("--out", type=Path, default=None, help="also write the result JSON here")
    p.add_argument("--child", choices=["record", "poll"], default=None, help=argparse.SUPPRESS)
    p.add_argument("--child-n", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child == "record":  # (d)'s child: journal rows, then die without flushing them
        child = InferenceLog(Settings.from_variables({"root": str(args.root)}), flush_every_s=3600,
                             max_batch=10**9)
        child.start()
        for i in range(args.child_n):
            child.record(make_record(i, args.answer_chars, "d"))
        os._exit(0)
    if args.child == "poll":
        poll_table(str(args.root), "c-", args.child_n, timeout_s=args.paced_s + 180)
        return {}

    root = args.root or Path(tempfile.mkdtemp(prefix="bench-journal-"))
    settings = Settings.from_variables({"root": str(root)})
    result: dict = {"rows": args.rows, "answer_chars": args.answer_chars, "max_batch": args.max_batch,
                    "cpus": os.cpu_count(), "loadavg_1m_at_start": round(os.getloadavg()[0], 2),
                    "python": sys.version.split()[0]}
    try:
        # warm-up: imports, the table's creation
        with InferenceLog(settings, flush_every_s=3600) as log:
            timed_records(log, 200, args.answer_chars, "warm")
            log.flush()
            size = sum(f.stat().st_size for f in log.journal_dir.glob("*.jsonl"))
            result["journal_bytes_per_row"] = round(size / 200)

        # (a) the flusher idle
        with InferenceLog(settings, flush_every_s=3600, max_batch=10**9) as log:
            result["record_idle_us"] = summary(timed_records(log, args.rows, args.answer_chars, "a"))
            result["record_idle_us"]["depth_after"] = log.depth()

        # (b) the flusher busy
        with InferenceLog(settings, flush_every_s=args.flush_every_s, max_batch=args.max_batch) as log:
            t = time.perf_counter()
            times = timed_records(log, args.rows, args.answer_chars, "b")
            result["record_busy_us"] = summary(times)
            result["record_busy_us"]["rows_per_s"] = round(args.rows / (time.perf_counter() - t))
            result["record_busy_us"]["flushed_during_loop"] = args.rows - log.depth()

        # (c) paced, default flush interval, visibility seen from another process
        n = int(args.rate * args.paced_s)
        poller = subprocess.Popen([sys.executable, __file__, "--child", "poll", "--child-n", str(n), "--root",
                                   str(root), "--paced-s", str(args.paced_s)], stdout=subprocess.PIPE, text=True)
        recorded_at: dict[str, float] = {}
        times = []
        with InferenceLog(settings) as log:
            start = time.perf_counter()
            for i in range(n):
                delay = start + i / args.rate - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                rec = make_record(i, args.answer_chars, "c")
                t = time.perf_counter_ns()
                log.record(rec)
                times.append((time.perf_counter_ns() - t) / 1000)
                recorded_at[rec.request_id] = time.time()
            out, _ = poller.communicate(timeout=args.paced_s + 240)
        first_seen = json.loads(out)
        visibility = [first_seen[r] - at for r, at in recorded_at.items() if r in first_seen]
        result["paced"] = {"rate": args.rate, "seconds": args.paced_s, "requests": n,
                           "flush_every_s": InferenceLog(settings).flush_every_s,
                           "record_us": summary(times), "seen_in_delta": len(visibility),
                           "visibility_s": summary(visibility, 2) if visibility else None}

        # (d) replay of a dead process's journal
        subprocess.run([sys.executable, __file__, "--child", "record", "--child-n", str(args.rows), "--root",
                        str(root), "--answer-chars", str(args.answer_chars)], check=True)
        t = time.perf_counter()
        replay = InferenceLog(settings, flush_every_s=3600, max_batch=args.max_batch)
        replay.start()
        dt = time.perf_counter() - t
        replay.close()
        result["replay"] = {"rows": args.rows, "seconds": round(dt, 2), "rows_per_s": round(args.rows / dt),
                            "seconds_per_batch": round(dt / -(-args.rows // args.max_batch), 2)}

        ids = open_lakehouse(settings).read("inference_log", ["request_id"])["request_id"]
        result["table"] = {"rows": len(ids), "unique": int(ids.nunique()),
                           "expected": 200 + 3 * args.rows + n}
        result["loadavg_1m_at_end"] = round(os.getloadavg()[0], 2)
    finally:
        if args.root is None:
            shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
