"""The inference log's two costs: ``InferenceLog.record()`` on the request path, and Delta throughput.

    .venv/bin/python benchmarks/bench_journal.py
    .venv/bin/python benchmarks/bench_journal.py --rows 20000 --answer-chars 2000 --out benchmarks/results/bench_journal.json

(a) record(): ``--rows`` realistic rows (a question, an answer of ``--answer-chars``, five sources,
    lineage), one call at a time, timed with ``perf_counter_ns``, while the background flusher
    writes to Delta every ``--flush-every-s`` (so the numbers include the flusher competing for
    the GIL, as in the gateway). p50 / p99 / p99.9 / max in microseconds.
(b) flush throughput: ``--rows`` more rows journaled with the flusher idle, then one ``flush()``
    into the same (now non-empty) table: rows/s of journal → Delta, and the time one batch of
    ``--max-batch`` rows takes (what bounds the visibility delay together with ``--flush-every-s``).
(c) replay: a child process journals ``--rows`` rows and dies without flushing (``os._exit``, as
    after ``kill -9``); the time a fresh ``InferenceLog.start()`` takes to replay them into Delta.

Writes under a temporary root (``--root`` to keep it).
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
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=10_000)
    p.add_argument("--answer-chars", type=int, default=1500)
    p.add_argument("--flush-every-s", type=float, default=1.0)
    p.add_argument("--max-batch", type=int, default=2000)
    p.add_argument("--root", type=Path, default=None, help="state root (default: a temporary folder, removed)")
    p.add_argument("--out", type=Path, default=None, help="also write the result JSON here")
    p.add_argument("--child-record", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child_record:  # (c)'s child: journal rows, then die without flushing them
        child = InferenceLog(Settings.from_variables({"root": str(args.root)}), flush_every_s=3600)
        child.start()
        for i in range(args.child_record):
            child.record(make_record(i, args.answer_chars, "c"))
        os._exit(0)

    root = args.root or Path(tempfile.mkdtemp(prefix="bench-journal-"))
    settings = Settings.from_variables({"root": str(root)})
    result: dict = {"rows": args.rows, "answer_chars": args.answer_chars, "flush_every_s": args.flush_every_s,
                    "max_batch": args.max_batch, "cpus": os.cpu_count(),
                    "loadavg_1m": round(os.getloadavg()[0], 2), "python": sys.version.split()[0]}
    try:
        # (a) record() latency with the flusher running
        log = InferenceLog(settings, flush_every_s=args.flush_every_s, max_batch=args.max_batch)
        log.start()
        for i in range(200):  # warm-up: imports, first table creation
            log.record(make_record(i, args.answer_chars, "warm"))
        log.flush()
        times_us = []
        t_all = time.perf_counter()
        for i in range(args.rows):
            rec = make_record(i, args.answer_chars, "a")
            t = time.perf_counter_ns()
            log.record(rec)
            times_us.append((time.perf_counter_ns() - t) / 1000)
        wall = time.perf_counter() - t_all
        flushed_during = args.rows - log.depth()
        result["record_us"] = {"p50": round(statistics.median(times_us), 1), "p99": round(pct(times_us, 99), 1),
                               "p99_9": round(pct(times_us, 99.9), 1), "max": round(max(times_us), 1),
                               "mean": round(statistics.fmean(times_us), 1)}
        result["record_loop_rows_per_s"] = round(args.rows / wall)
        result["rows_flushed_while_recording"] = flushed_during
        journal_bytes = sum(f.stat().st_size for f in log.journal_dir.glob("*.jsonl"))
        result["journal_bytes_per_row"] = round(journal_bytes / max(log.depth(), 1)) if log.depth() else None
        log.close()

        # (b) flush throughput into a non-empty table
        log = InferenceLog(settings, flush_every_s=3600, max_batch=args.max_batch)
        log.start()
        for i in range(args.rows):
            log.record(make_record(i, args.answer_chars, "b"))
        t = time.perf_counter()
        n = log.flush()
        dt = time.perf_counter() - t
        result["flush"] = {"rows": n, "seconds": round(dt, 2), "rows_per_s": round(n / dt),
                           "seconds_per_batch": round(dt / max(1, -(-n // args.max_batch)), 2)}
        log.close()

        # (c) replay of a dead process's journal
        subprocess.run([sys.executable, __file__, "--child-record", str(args.rows), "--root", str(root),
                        "--answer-chars", str(args.answer_chars)], check=True)
        t = time.perf_counter()
        replay = InferenceLog(settings, flush_every_s=3600, max_batch=args.max_batch)
        replay.start()
        dt = time.perf_counter() - t
        result["replay"] = {"rows": args.rows, "seconds": round(dt, 2), "rows_per_s": round(args.rows / dt)}
        replay.close()
        lh = open_lakehouse(settings)
        ids = lh.read("inference_log", ["request_id"])["request_id"]
        result["table_rows"] = len(ids)
        result["table_rows_unique"] = int(ids.nunique())
        result["table_rows_expected"] = 200 + 3 * args.rows
    finally:
        if args.root is None:
            shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
