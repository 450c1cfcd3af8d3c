"""The monitor's traffic metrics on 1,000,000 log rows: a full run, then an incremental one after 1% new rows.

    .venv/bin/python benchmarks/bench_monitor.py
    .venv/bin/python benchmarks/bench_monitor.py --rows 1000000 --new-rows 10000 --days 7 --scenarios both

The issue's targets: the full run ≤ 60 s on this machine, the incremental run ≤ 5% of the full one.

1. ``write``: ``--rows`` synthetic rows (``ragops.monitoring.simulate.synthetic_log``: 2 routes × 2
   model versions, 5% shadow answers, over ``--days`` days of 1-hour windows) appended to a local
   Delta ``inference_log`` in chunks of ``--chunk`` rows, plus ratings on ``--feedback-share`` of
   them in ``feedback``. Generation and the Delta writes are timed apart.
2. ``full``: ``update_traffic(since None)`` — read every row, aggregate, build the metric rows;
   then (timed apart) their upsert into ``monitoring_metrics``.
3. ``incremental``: ``--new-rows`` more rows (and their ratings) appended over the last hours,
   then ``update_traffic(since = the full run's versions)`` — the change feed, the stored states
   of the touched windows, merge — and the upsert; then a run with nothing new (``unchanged``).

Each step runs in its own process so that its peak RSS (``ru_maxrss``) is its own. By default
groundedness is skipped (no ``embeddings`` table): it scores at most ``monitor_groundedness_sample``
(50) answers per window, route and version with the evaluation's Python scorer, a cost that follows
the number of windows, not rows. A second scenario (``with_groundedness`` in the result; ``--scenarios``
picks) writes an ``embeddings`` table for the 200 synthetic chunks (~1,200 characters each), so both
runs score their samples too. Writes under
``--root`` (a temporary folder, removed afterwards unless ``--keep``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import loadavg, machine_info, now_iso, peak_rss_mib, safe_rmtree, write_result  # noqa: E402

START = "2026-01-05T00:00:00+00:00"
ROUTES = ("rag_chain", "rag_chain_ft")
VERSIONS = ("3", "4")
SHADOW_SHARE = 0.05


def _settings(root: Path):
    from ragops.config import Settings

    return Settings.from_variables({"root": str(root), "monitor_prices": "rag_chain=0.002,*=0.001"})


def _write_embeddings(lh) -> None:
    import numpy as np
    import pandas as pd

    from ragops.monitoring.simulate import chunk_ids_pool

    ids = chunk_ids_pool()
    filler = ("Raw samples are kept for {k} days before they are downsampled to five-minute averages. "
              "Collectors listen on port {p} and retry with back-off when the ingest node is unavailable. ")
    lh.upsert("embeddings", pd.DataFrame({
        "chunk_id": ids, "doc_id": [i.split("-")[0] for i in ids], "content_hash": "h",
        "text": [(filler.format(k=k % 90, p=4000 + k) * 7)[:1200] for k in range(len(ids))], "title": None,
        "source_uri": None, "section": None, "model": "synthetic", "dimension": np.int32(2),
        "vector": [np.array([1.0, 0.0], dtype=np.float32)] * len(ids), "embedded_at": pd.Timestamp(START),
    }))


def phase_write(args) -> dict:
    import pandas as pd

    from ragops.lakehouse import open_lakehouse
    from ragops.monitoring.simulate import synthetic_feedback, synthetic_log

    lh = open_lakehouse(_settings(args.root))
    hours = args.days * 24
    chunks = max(1, -(-args.rows // args.chunk))
    hours_per_chunk = hours / chunks
    gen_s = write_s = 0.0
    written = ratings = 0
    if args.groundedness:
        _write_embeddings(lh)
    for i in range(chunks):
        n = round(min(args.chunk, args.rows - i * args.chunk) / (1 + SHADOW_SHARE))  # shadows on top
        t0 = time.perf_counter()
        start = pd.Timestamp(START) + pd.Timedelta(hours=i * hours_per_chunk)
        frame = synthetic_log(n, start=start, windows=1, window_seconds=int(hours_per_chunk * 3600),
                              routes=ROUTES, model_versions=VERSIONS, seed=i, shadow_share=SHADOW_SHARE, id_prefix=f"b{i}")
        feedback = synthetic_feedback(frame, share=args.feedback_share, up_rate=0.8, seed=i)
        t1 = time.perf_counter()
        lh.append("inference_log", frame)
        lh.append("feedback", feedback)
        t2 = time.perf_counter()
        gen_s, write_s = gen_s + t1 - t0, write_s + t2 - t1
        written, ratings = written + len(frame), ratings + len(feedback)
    return {"rows": written, "feedback_rows": ratings, "chunks": chunks, "generate_s": round(gen_s, 2),
            "write_s": round(write_s, 2), "write_rows_per_s": round(written / write_s),
            "inference_log_version": lh.version("inference_log"), "peak_rss_mib": peak_rss_mib()}


def _run(lh, settings, since) -> tuple[object, dict]:
    from ragops.monitoring.traffic import update_traffic

    t0 = time.perf_counter()
    update = update_traffic(lh, settings, since_log_version=since[0], since_feedback_version=since[1])
    seconds = time.perf_counter() - t0
    t1 = time.perf_counter()
    lh.upsert("monitoring_metrics", update.metrics)
    upsert_s = time.perf_counter() - t1
    return update, {"mode": update.mode, "seconds": round(seconds, 3), "rows_read": update.rows_read,
                    "rows_per_s": round(update.rows_read / seconds) if seconds else None,
                    "windows": len(update.windows), "metric_rows": len(update.metrics),
                    "metrics_upsert_s": round(upsert_s, 3), "log_version": update.log_version,
                    "feedback_version": update.feedback_version}


def phase_full(args) -> dict:
    from ragops.lakehouse import open_lakehouse

    settings = _settings(args.root)
    lh = open_lakehouse(settings)
    _, out = _run(lh, settings, (None, None))
    out["peak_rss_mib"] = peak_rss_mib()
    return out


def phase_incremental(args) -> dict:
    import pandas as pd

    from ragops.lakehouse import open_lakehouse
    from ragops.monitoring.simulate import synthetic_feedback, synthetic_log

    settings = _settings(args.root)
    lh = open_lakehouse(settings)
    since = (args.since_log, args.since_feedback)
    end = pd.Timestamp(START) + pd.Timedelta(days=args.days)
    frame = synthetic_log(round(args.new_rows / (1 + SHADOW_SHARE)), start=end - pd.Timedelta(hours=5), windows=6,
                          routes=ROUTES, model_versions=VERSIONS, seed=10_000, shadow_share=SHADOW_SHARE,
                          id_prefix="new")
    t0 = time.perf_counter()
    lh.append("inference_log", frame)
    lh.append("feedback", synthetic_feedback(frame, share=args.feedback_share, up_rate=0.8, seed=10_000))
    append_s = time.perf_counter() - t0
    update, out = _run(lh, settings, since)
    out["append_s"] = round(append_s, 3)
    out["new_rows"] = len(frame)
    out["peak_rss_mib"] = peak_rss_mib()
    _, again = _run(lh, settings, (update.log_version, update.feedback_version))
    out["unchanged_run"] = {"mode": again["mode"], "seconds": again["seconds"], "metric_rows": again["metric_rows"]}
    return out


def child(phase: str, args, extra: list[str] = ()) -> dict:
    cmd = [sys.executable, __file__, "--phase", phase, "--root", str(args.root), "--rows", str(args.rows),
           "--chunk", str(args.chunk), "--days", str(args.days), "--new-rows", str(args.new_rows),
           "--feedback-share", str(args.feedback_share), *(["--groundedness"] if args.groundedness else []), *extra]
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "RAGOPS_PROGRESS": "0"})
    if done.returncode:
        raise SystemExit(f"phase {phase} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def scenario(args, groundedness: bool) -> dict:
    """write → full → incremental in child processes, under a root of its own."""
    args.groundedness = groundedness
    own_root = args.root is None
    root = args.root or Path(tempfile.mkdtemp(prefix="ragops-bench-monitor-"))
    args_root, args.root = args.root, root
    out: dict = {"groundedness": ("on: an embeddings table for the synthetic chunks, monitor_groundedness_sample 50"
                                  if groundedness else "skipped: no embeddings table")}
    try:
        out["write"] = child("write", args)
        out["full"] = child("full", args)
        out["incremental"] = child("incremental", args, ["--since-log", str(out["full"]["log_version"]),
                                                         "--since-feedback", str(out["full"]["feedback_version"])])
    finally:
        args.root = args_root
        if own_root and not args.keep:
            safe_rmtree(root)
    full_s, inc_s = out["full"]["seconds"], out["incremental"]["seconds"]
    out["incremental_over_full"] = round(inc_s / full_s, 4)
    out["targets"] = {"full_s_max": 60, "incremental_over_full_max": 0.05,
                      "full_ok": full_s <= 60, "incremental_ok": inc_s / full_s <= 0.05}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--chunk", type=int, default=100_000)
    p.add_argument("--days", type=int, default=7)
    p.add_argument("--new-rows", type=int, default=10_000)
    p.add_argument("--feedback-share", type=float, default=0.01)
    p.add_argument("--scenarios", choices=("default", "groundedness", "both"), default="both",
                   help="default: no embeddings table (groundedness skipped); groundedness: with one; both (default)")
    p.add_argument("--root", type=Path, default=None, help="scratch root (one scenario only)")
    p.add_argument("--keep", action="store_true")
    p.add_argument("--groundedness", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--phase", choices=("write", "full", "incremental"), help=argparse.SUPPRESS)
    p.add_argument("--since-log", type=int, help=argparse.SUPPRESS)
    p.add_argument("--since-feedback", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.phase:
        run = {"write": phase_write, "full": phase_full, "incremental": phase_incremental}[args.phase]
        print(json.dumps(run(args)))
        return
    if args.root is not None and args.scenarios == "both":
        raise SystemExit("--root holds one scenario: give --scenarios default or groundedness with it")

    # machine_info() imports torch: only after the children have run, or they would inherit its RSS as
    # their peak (ru_maxrss survives fork + exec).
    result: dict = {"benchmark": "bench_monitor", "started_at": now_iso(), "load_before": loadavg(),
                    "rows": args.rows, "new_rows": args.new_rows, "days": args.days, "routes": list(ROUTES),
                    "model_versions": list(VERSIONS), "shadow_share": SHADOW_SHARE, "window": "1h"}
    if args.scenarios in ("default", "both"):
        result.update(scenario(args, groundedness=False))  # the headline numbers
    if args.scenarios in ("groundedness", "both"):
        result["with_groundedness"] = scenario(args, groundedness=True)
    result["load_after"] = loadavg()
    result["machine"] = machine_info()
    result["machine"]["note"] = ("2 CPU cores shared with other sessions' helpers running tests at the same time: "
                                 "compare load_before / load_after")
    write_result("bench_monitor", result, args.out)


if __name__ == "__main__":
    main()
