"""The gateway's own cost: the same fast upstream called directly and through ``ragops gateway``, in one run.

    benchmarks/setup.sh                       # once: apt-get install -y wrk
    .venv/bin/python benchmarks/bench_gateway.py
    .venv/bin/python benchmarks/bench_gateway.py --rate 100 --block-seconds 10 --rounds 3 \\
        --high-rate 500 --high-seconds 10 --wrk-seconds 15 --wrk-connections 16

What runs, all on 127.0.0.1 (every server is a subprocess, stopped at the end):

- ``benchmarks/fake_openai_upstream.py``: an OpenAI-compatible ``/v1/chat/completions`` that answers
  a fixed completion at once (a bare asyncio protocol, ~50k requests/s under wrk).
- ``ragops gateway --config <tmp>/gateway.yml --workers N`` with one route ``bench`` forwarding to
  that upstream (``kind: openai``), one API key from ``RAGOPS_API_KEYS``, no limits, and its
  inference log ON (it always is): every request is journaled and flushed to the ``inference_log``
  Delta table under a scratch root.

Phases (``direct`` = the upstream itself, ``gateway`` = the same body through the gateway, with the
Bearer key):

1. **Fixed rate** (open loop, this script's asyncio client): ``--rate`` requests/s for
   ``--block-seconds``, alternating direct / gateway blocks for ``--rounds`` rounds, so both see the
   same background load. Requests are sent on a constant schedule whatever the answers do; latency
   is measured **from the scheduled send time** (no coordinated omission) and, separately, from the
   actual send (service time). Overhead = gateway − direct at the same percentile.
2. **High fixed rate**: ``--high-rate`` requests/s for ``--high-seconds``, direct then gateway:
   errors, 5xx and latency at that rate.
3. **Max throughput** (closed loop, ``wrk`` with a Lua script for the POST body and the
   Authorization header): ``--wrk-connections`` connections for ``--wrk-seconds``, direct then
   gateway: requests/s, latency percentiles, non-2xx.

Then the gateway's ``/metrics`` counters are read, the gateway is stopped with SIGTERM (it flushes its
log) and the ``inference_log`` table is counted: rows, distinct request ids, and whether every
request id the fixed-rate client received (``X-Request-Id``) is in it.

``--injection-encoder``: the route's policy adds the semantic injection check (an embedding per
request, ``ragops.guardrails.injection_encoder``) to the default guardrails.

Result: ``benchmarks/results/bench_gateway.json`` (``--out`` to change).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    BENCH_DIR,
    RESULTS_DIR,
    loadavg,
    machine_info,
    now_iso,
    safe_rmtree,
    write_result,
)

HOST = "127.0.0.1"
ROUTE = "bench"
QUESTION = "Which port does the collector listen on?"
BODY = json.dumps({"model": ROUTE, "messages": [{"role": "user", "content": QUESTION}]},
                  separators=(",", ":")).encode()
PATH = "/v1/chat/completions"
#: Longest a single request may take before it counts as an error (timeout).
REQUEST_TIMEOUT_S = 10.0
#: Connections the fixed-rate client opens before a block (more are opened when all are busy).
PREOPEN = 16
MAX_CONNECTIONS = 256

WRK_LUA = r"""
-- POST a chat completion with a Bearer key; count statuses per class; print one JSON line.
wrk.method = "POST"
wrk.body = os.getenv("BENCH_BODY")
wrk.headers["Content-Type"] = "application/json"
local auth = os.getenv("BENCH_AUTH")
if auth and auth ~= "" then wrk.headers["Authorization"] = auth end
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) s2, s4, s5 = 0, 0, 0 end
function response(status, headers, body)
  if status >= 500 then s5 = s5 + 1 elseif status >= 400 then s4 = s4 + 1 elseif status < 300 then s2 = s2 + 1 end
end
function done(summary, latency, requests)
  local t2, t4, t5 = 0, 0, 0
  for _, t in ipairs(threads) do t2 = t2 + t:get("s2"); t4 = t4 + t:get("s4"); t5 = t5 + t:get("s5") end
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"status_2xx":%d,"status_4xx":%d,"status_5xx":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"p50":%d,"p90":%d,"p99":%d,"p999":%d,"max":%d,"mean":%.1f}}\n',
    summary.requests, summary.duration, t2, t4, t5, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9),
    latency.max, latency.mean))
end
"""


# --- servers ---------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def http_get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def wait_until(url: str, deadline_s: float, proc: subprocess.Popen, what: str) -> float:
    """Poll ``url`` until it answers 200 (at most ``deadline_s``); seconds it took."""
    started = time.monotonic()
    while time.monotonic() - started < deadline_s:
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited with {proc.returncode} before it was ready (see its log)")
        with contextlib.suppress(OSError):
            if http_get(url, timeout=2)[0] == 200:
                return time.monotonic() - started
        time.sleep(0.2)
    raise SystemExit(f"{what} not ready at {url} after {deadline_s} s")


def stop(proc: subprocess.Popen, timeout_s: float = 60.0) -> tuple[int | None, float]:
    """SIGTERM, wait (bounded), SIGKILL if needed; (exit code, seconds to exit)."""
    started = time.monotonic()
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    return proc.returncode, round(time.monotonic() - started, 2)


def tree_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process and its live children (the gateway's workers)."""
    import psutil

    try:
        proc = psutil.Process(pid)
        procs = [proc, *proc.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0.0
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            t = p.cpu_times()
            total += t.user + t.system
    return total


class CpuMeter:
    """CPU milliseconds per request of the gateway and the upstream over one phase: a cost that a busy
    machine inflates far less than latency (waiting for a core is not counted)."""

    def __init__(self, gateway_pid: int, upstream_pid: int) -> None:
        self.pids = {"gateway": gateway_pid, "upstream": upstream_pid}
        self.start = {name: tree_cpu_s(pid) for name, pid in self.pids.items()}

    def per_request(self, requests: int) -> dict:
        used = {name: tree_cpu_s(pid) - self.start[name] for name, pid in self.pids.items()}
        return {f"{name}_cpu_ms_per_request": round(1000 * cpu / requests, 3) if requests else None
                for name, cpu in used.items()}


# --- the fixed-rate (open-loop) client ---------------------------------------------------------------

class Conn:
    __slots__ = ("reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()


async def connect(port: int) -> Conn:
    reader, writer = await asyncio.open_connection(HOST, port)
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return Conn(reader, writer)


def request_bytes(port: int, auth: str | None) -> bytes:
    head = (f"POST {PATH} HTTP/1.1\r\nHost: {HOST}:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(BODY)}\r\n")
    if auth:
        head += f"Authorization: {auth}\r\n"
    return (head + "\r\n").encode() + BODY


async def exchange(conn: Conn, payload: bytes) -> tuple[int, str | None, bool]:
    """One request on a keep-alive connection: (status, X-Request-Id, connection still usable)."""
    conn.writer.write(payload)
    head = await conn.reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length, request_id, keep = 0, None, True
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        if name == "content-length":
            length = int(value.strip())
        elif name == "x-request-id":
            request_id = value.strip()
        elif name == "connection" and value.strip().lower() == "close":
            keep = False
        elif name == "transfer-encoding":
            raise RuntimeError("chunked answers are not expected from a non-streamed completion")
    if length:
        await conn.reader.readexactly(length)
    return status, request_id, keep


async def open_loop(port: int, auth: str | None, rate: float, seconds: float) -> dict:
    """``rate`` requests/s for ``seconds`` on a fixed schedule; latencies from the scheduled time.
    A request finds an idle keep-alive connection, or opens one (up to MAX_CONNECTIONS), or waits
    for one: the wait counts in its latency, as it would for a real client."""
    payload = request_bytes(port, auth)
    n = max(1, int(rate * seconds))
    idle: asyncio.Queue[Conn] = asyncio.Queue()
    for _ in range(PREOPEN):
        idle.put_nowait(await connect(port))
    opened = PREOPEN
    scheduled_lat: list[float] = []
    service_lat: list[float] = []
    statuses: dict[str, int] = {}
    ids: list[str] = []
    errors: dict[str, int] = {}
    late_sends = 0  # sends more than 1 ms after their scheduled time (the client fell behind)
    last_done = 0.0
    tasks: set[asyncio.Task] = set()

    async def one(scheduled: float) -> None:
        nonlocal opened, last_done
        conn = None
        try:
            if not idle.empty() or opened >= MAX_CONNECTIONS:
                conn = await asyncio.wait_for(idle.get(), REQUEST_TIMEOUT_S)
            else:
                opened += 1
                conn = await connect(port)
            sent = time.perf_counter()
            status, request_id, keep = await asyncio.wait_for(exchange(conn, payload), REQUEST_TIMEOUT_S)
        except Exception as exc:  # noqa: BLE001 - counted, never raised
            name = type(exc).__name__
            errors[name] = errors.get(name, 0) + 1
            if conn is not None:
                conn.close()
                opened -= 1
            return
        done = time.perf_counter()
        last_done = max(last_done, done)
        scheduled_lat.append(done - scheduled)
        service_lat.append(done - sent)
        statuses[str(status)] = statuses.get(str(status), 0) + 1
        if request_id:
            ids.append(request_id)
        if keep:
            idle.put_nowait(conn)
        else:
            conn.close()
            opened -= 1

    start = time.perf_counter() + 0.02
    for i in range(n):
        scheduled = start + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        elif delay < -0.001:
            late_sends += 1
        task = asyncio.get_running_loop().create_task(one(scheduled))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    wall_send = time.perf_counter() - start
    if tasks:
        await asyncio.wait(set(tasks), timeout=2 * REQUEST_TIMEOUT_S + 5)
    while not idle.empty():
        idle.get_nowait().close()
    return {"scheduled": scheduled_lat, "service": service_lat, "statuses": statuses, "ids": ids,
            "errors": errors, "sent": n, "late_sends": late_sends, "connections": opened,
            "offered_rps": rate, "achieved_send_rps": round(n / wall_send, 1) if wall_send > 0 else None,
            "span_s": round(last_done - start, 3) if last_done else None}


def run_open_loop(port: int, auth: str | None, rate: float, seconds: float) -> dict:
    try:
        from uvloop import run
    except ImportError:  # pragma: no cover
        run = asyncio.run
    return run(open_loop(port, auth, rate, seconds))


def pct_ms(values_s: list[float]) -> dict:
    import numpy as np

    if not values_s:
        return {"samples": 0}
    a = np.asarray(values_s) * 1000.0
    return {"p50_ms": round(float(np.percentile(a, 50)), 3), "p90_ms": round(float(np.percentile(a, 90)), 3),
            "p99_ms": round(float(np.percentile(a, 99)), 3), "max_ms": round(float(a.max()), 3),
            "mean_ms": round(float(a.mean()), 3), "samples": int(a.size)}


def merge(blocks: list[dict]) -> dict:
    out = {"scheduled": [], "service": [], "statuses": {}, "ids": [], "errors": {}, "sent": 0, "late_sends": 0,
           "span_s": None}
    for b in blocks:
        out["scheduled"] += b["scheduled"]
        out["service"] += b["service"]
        out["ids"] += b["ids"]
        out["sent"] += b["sent"]
        out["late_sends"] += b["late_sends"]
        for k in ("statuses", "errors"):
            for name, count in b[k].items():
                out[k][name] = out[k].get(name, 0) + count
    return out


def summarise(raw: dict, seconds: float) -> dict:
    """``answered_rps``: 2xx answers over the time from the first scheduled send to the last answer
    (``seconds`` when that is not known): below the offered rate when the server fell behind."""
    five = sum(v for k, v in raw["statuses"].items() if k.startswith("5"))
    ok = sum(v for k, v in raw["statuses"].items() if k.startswith("2"))
    span = raw.get("span_s") or seconds
    return {"sent": raw["sent"], "ok_2xx": ok, "status_5xx": five, "statuses": raw["statuses"],
            "errors": raw["errors"], "late_sends_over_1ms": raw["late_sends"],
            "answered_rps": round(ok / max(span, seconds), 1) if seconds else None,
            "latency_from_schedule": pct_ms(raw["scheduled"]), "service_time": pct_ms(raw["service"])}


def overhead(gateway: dict, direct: dict, kind: str) -> dict:
    g, d = gateway[kind], direct[kind]
    return {f"{p}_ms": round(g[f"{p}_ms"] - d[f"{p}_ms"], 3) for p in ("p50", "p90", "p99")
            if f"{p}_ms" in g and f"{p}_ms" in d}


# --- wrk (closed loop, max throughput) ---------------------------------------------------------------

def run_wrk(port: int, auth: str | None, seconds: int, connections: int, threads: int, lua: Path) -> dict:
    wrk = shutil.which("wrk")
    if wrk is None:
        return {"skipped": "wrk is not installed (benchmarks/setup.sh: apt-get install -y wrk)"}
    env = {**os.environ, "BENCH_BODY": BODY.decode(), "BENCH_AUTH": auth or ""}
    cmd = [wrk, f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--timeout", f"{int(REQUEST_TIMEOUT_S)}s",
           "-s", str(lua), f"http://{HOST}:{port}{PATH}"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=seconds + 60)
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("WRK_JSON ")), None)
    if line is None:
        return {"error": f"wrk exited {done.returncode}: {done.stdout[-500:]} {done.stderr[-500:]}"}
    out = json.loads(line[len("WRK_JSON "):])
    out["rps"] = round(out["requests"] / (out["duration_us"] / 1e6), 1)
    out["latency_ms"] = {k: round(v / 1000, 3) for k, v in out.pop("latency_us").items()}
    out["command"] = " ".join(cmd[:-3] + ["-s", "<lua>", cmd[-1]])
    return out


# --- gateway metrics and the inference log -------------------------------------------------------------

def scrape_metrics(port: int) -> dict:
    status, body = http_get(f"http://{HOST}:{port}/metrics")
    text = body.decode()
    by_status: dict[str, float] = {}
    for m in re.finditer(r'^ragops_gateway_requests_total\{([^}]*)\} ([0-9.e+]+)$', text, re.MULTILINE):
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
        by_status[labels.get("status", "?")] = by_status.get(labels.get("status", "?"), 0) + float(m.group(2))
    depth = re.search(r"^ragops_gateway_inference_log_queue_depth(?:\{[^}]*\})? ([0-9.e+]+)$", text, re.MULTILINE)
    return {"http_status": status, "requests_by_status": by_status, "requests_total": int(sum(by_status.values())),
            "log_queue_depth": float(depth.group(1)) if depth else None}


def count_log(root: Path, client_ids: list[str]) -> dict:
    from ragops.config import Settings
    from ragops.lakehouse import open_lakehouse

    settings = Settings.from_variables({"root": str(root)})
    with open_lakehouse(settings) as lh:
        if not lh.exists("inference_log"):
            return {"rows": 0, "table": "missing"}
        frame = lh.read("inference_log", ["request_id", "shadow", "http_status", "status", "latency_ms", "key_name"])
    ids = set(frame["request_id"])
    missing = [i for i in client_ids if i not in ids]
    journal = root / "gateway" / "journal"
    left = sorted(p.name for p in journal.glob("*.jsonl")) if journal.exists() else []
    return {"rows": int(len(frame)), "distinct_request_ids": len(ids),
            "by_http_status": {str(k): int(v) for k, v in frame["http_status"].value_counts().items()},
            "key_names": sorted(set(frame["key_name"])),
            "client_ids_checked": len(client_ids), "client_ids_missing": len(missing),
            "journals_left": left,
            "gateway_latency_ms_as_logged": pct_ms([v / 1000 for v in frame["latency_ms"].dropna()])}


# --- main ----------------------------------------------------------------------------------------------

def markdown_table(result: dict) -> str:
    rows = ["| phase | path | sent | 2xx | 5xx | errors | rps | p50 ms | p90 ms | p99 ms | max ms |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    for phase in ("fixed_rate", "high_rate"):
        for path in ("direct", "gateway"):
            s = result[phase][path]
            lat = s["latency_from_schedule"]
            rows.append(f"| {phase} {result[phase]['rate']}/s | {path} | {s['sent']} | {s['ok_2xx']} | "
                        f"{s['status_5xx']} | {sum(s['errors'].values())} | {s['answered_rps']} | "
                        f"{lat.get('p50_ms')} | {lat.get('p90_ms')} | {lat.get('p99_ms')} | {lat.get('max_ms')} |")
    for path in ("direct", "gateway"):
        w = result["max_throughput"][path]
        if "rps" in w:
            lat = w["latency_ms"]
            errs = sum(w["errors"].values())
            rows.append(f"| wrk -c{result['max_throughput']['connections']} | {path} | {w['requests']} | "
                        f"{w['status_2xx']} | {w['status_5xx']} | {errs} | {w['rps']} | {lat['p50']} | "
                        f"{lat['p90']} | {lat['p99']} | {lat['max']} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rate", type=float, default=100.0, help="fixed-rate phase: requests/s")
    p.add_argument("--block-seconds", type=float, default=10.0, help="fixed-rate phase: seconds per block")
    p.add_argument("--rounds", type=int, default=3, help="fixed-rate phase: direct/gateway block pairs")
    p.add_argument("--high-rate", type=float, default=500.0)
    p.add_argument("--high-seconds", type=float, default=10.0)
    p.add_argument("--wrk-seconds", type=int, default=15)
    p.add_argument("--wrk-connections", type=int, default=16)
    p.add_argument("--wrk-threads", type=int, default=1)
    p.add_argument("--workers", type=int, default=1, help="gateway worker processes")
    p.add_argument("--warmup", type=int, default=300, help="requests per path before measuring (at --rate)")
    p.add_argument("--root", type=Path, default=None, help="scratch state root under /tmp (default: a fresh one)")
    p.add_argument("--keep", action="store_true", help="keep the scratch root")
    p.add_argument("--out", type=Path, default=RESULTS_DIR / "bench_gateway.json")
    p.add_argument("--injection-encoder", action="store_true",
                   help="the route runs the semantic injection check too (guardrails: {injection: {encoder: true}})")
    args = p.parse_args(argv)

    started_at = now_iso()
    load_before = loadavg()
    root = (args.root or Path(tempfile.mkdtemp(prefix="bench-gateway-", dir="/tmp"))).resolve()
    if root.exists() and args.root is not None:
        safe_rmtree(root)
    root.mkdir(parents=True, exist_ok=True)
    key = "sk-bench-" + secrets.token_hex(16)
    auth = f"Bearer {key}"
    up_port, gw_port = free_port(), free_port()
    (root / "gateway.yml").write_text(
        "routes:\n"
        f"  - name: {ROUTE}\n"
        "    timeout_s: 10\n"
        f"    targets: [{{name: fast, upstream: \"http://{HOST}:{up_port}/v1\", kind: openai}}]\n"
        + ("    guardrails: {injection: {encoder: true}}\n" if args.injection_encoder else ""))
    lua = root / "post.lua"
    lua.write_text(WRK_LUA)
    ragops = Path(sys.executable).parent / "ragops"
    gateway_cmd = [str(ragops) if ragops.exists() else "ragops", "gateway", "--config", str(root / "gateway.yml"),
                   "--host", HOST, "--port", str(gw_port), "--workers", str(args.workers),
                   "--var", f"root={root}", "--log-level", "WARNING"]
    env = {**os.environ, "RAGOPS_API_KEYS": f"bench:{key}", "RAGOPS_PROGRESS": "0",
           "MLFLOW_DISABLE_TELEMETRY": "true", "PYTHONUNBUFFERED": "1"}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    logs = contextlib.ExitStack()
    up_log = logs.enter_context(open(root / "upstream.log", "w"))  # noqa: SIM115 - closed in the finally below
    gw_log = logs.enter_context(open(root / "gateway.log", "w"))  # noqa: SIM115
    upstream = subprocess.Popen([sys.executable, str(BENCH_DIR / "fake_openai_upstream.py"), "--host", HOST,
                                 "--port", str(up_port), "--max-seconds", "600"],
                                stdout=up_log, stderr=subprocess.STDOUT)
    gateway = subprocess.Popen(gateway_cmd, env=env, stdout=gw_log, stderr=subprocess.STDOUT, cwd=str(root))
    git = {}
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        git = {"commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                        cwd=BENCH_DIR, timeout=10).stdout.strip(),
               "uncommitted_gateway_files": subprocess.run(
                   ["git", "status", "--porcelain", "src/ragops/serving/gateway", "src/ragops/cli/gateway.py"],
                   capture_output=True, text=True, cwd=BENCH_DIR.parent, timeout=10).stdout.split("\n")[:-1]}
    result: dict = {"benchmark": "bench_gateway", "started_at": started_at, "machine": machine_info(), "git": git,
                    "loadavg_before": load_before, "argv": sys.argv[1:],
                    "gateway_command": " ".join(gateway_cmd), "gateway_workers": args.workers}
    try:
        wait_until(f"http://{HOST}:{up_port}/health", 30, upstream, "the fake upstream")
        result["gateway_ready_s"] = round(wait_until(f"http://{HOST}:{gw_port}/ready", 120, gateway, "the gateway"), 2)
        gateway_cpu_at_ready = tree_cpu_s(gateway.pid)
        direct = (up_port, None)
        through = (gw_port, auth)
        client_ids: list[str] = []
        gateway_sent = 0

        warm = max(1.0, args.warmup / args.rate)
        for port, a in (direct, through):
            w = run_open_loop(port, a, args.rate, warm)
            if a is not None:
                client_ids += w["ids"]
                gateway_sent += w["sent"]
        print(f"warm-up done ({args.warmup} requests per path)", flush=True)

        blocks: dict[str, list[dict]] = {"direct": [], "gateway": []}
        for r in range(args.rounds):
            for name, (port, a) in (("direct", direct), ("gateway", through)):
                meter = CpuMeter(gateway.pid, upstream.pid)
                b = run_open_loop(port, a, args.rate, args.block_seconds)
                b["cpu"] = meter.per_request(b["sent"])
                blocks[name].append(b)
                if name == "gateway":
                    client_ids += b["ids"]
                    gateway_sent += b["sent"]
                print(f"fixed rate round {r + 1} {name}: {summarise(b, args.block_seconds)['latency_from_schedule']}",
                      flush=True)
        fixed = {"rate": args.rate, "block_seconds": args.block_seconds, "rounds": args.rounds}
        for name in blocks:
            fixed[name] = summarise(merge(blocks[name]), args.block_seconds * args.rounds)
            fixed[name]["cpu_per_block"] = [b["cpu"] for b in blocks[name]]
        fixed["overhead_from_schedule"] = overhead(fixed["gateway"], fixed["direct"], "latency_from_schedule")
        fixed["overhead_service_time"] = overhead(fixed["gateway"], fixed["direct"], "service_time")
        result["fixed_rate"] = fixed
        result["loadavg_after_fixed_rate"] = loadavg()

        high = {"rate": args.high_rate, "seconds": args.high_seconds}
        for name, (port, a) in (("direct", direct), ("gateway", through)):
            meter = CpuMeter(gateway.pid, upstream.pid)
            b = run_open_loop(port, a, args.high_rate, args.high_seconds)
            if name == "gateway":
                client_ids += b["ids"]
                gateway_sent += b["sent"]
            high[name] = summarise(b, args.high_seconds)
            high[name]["cpu"] = meter.per_request(b["sent"])
            print(f"high rate {name}: {high[name]['latency_from_schedule']} errors {high[name]['errors']}", flush=True)
        high["overhead_from_schedule"] = overhead(high["gateway"], high["direct"], "latency_from_schedule")
        result["high_rate"] = high
        result["loadavg_after_high_rate"] = loadavg()

        wrk = {"connections": args.wrk_connections, "threads": args.wrk_threads, "seconds": args.wrk_seconds}
        for name, (port, a) in (("direct", direct), ("gateway", through)):
            meter = CpuMeter(gateway.pid, upstream.pid)
            wrk[name] = run_wrk(port, a, args.wrk_seconds, args.wrk_connections, args.wrk_threads, lua)
            wrk[name]["cpu"] = meter.per_request(wrk[name].get("requests", 0))
            print(f"wrk {name}: {wrk[name].get('rps')} req/s {wrk[name].get('latency_ms')}", flush=True)
        result["max_throughput"] = wrk
        result["gateway_sent_by_fixed_rate_client"] = gateway_sent

        time.sleep(0.5)  # the last requests' records
        result["gateway_metrics_before_stop"] = scrape_metrics(gw_port)
        served_total = result["gateway_metrics_before_stop"]["requests_total"]
        # every request's cost, the background Delta flushes included (direct phases: the gateway idles)
        result["gateway_cpu_ms_per_request_whole_run"] = round(
            1000 * (tree_cpu_s(gateway.pid) - gateway_cpu_at_ready) / max(1, served_total), 3)
    finally:
        result["gateway_exit"], result["gateway_stop_s"] = stop(gateway)
        result["upstream_exit"], _ = stop(upstream, 10)
        logs.close()
    result["loadavg_after"] = loadavg()

    log_rows = count_log(root, client_ids)
    served = result["gateway_metrics_before_stop"]["requests_total"]
    wrk_counted = result["max_throughput"]["gateway"].get("requests", 0)
    log_rows["requests_served_by_gateway_metrics"] = served
    log_rows["rows_equal_requests_served"] = log_rows["rows"] == served == log_rows["distinct_request_ids"]
    # wrk counts only completed requests: up to --wrk-connections in flight at its end are served but not counted
    log_rows["client_counted_requests"] = gateway_sent + wrk_counted
    result["inference_log"] = log_rows
    fixed, high = result["fixed_rate"], result["high_rate"]
    five = (fixed["gateway"]["status_5xx"] + high["gateway"]["status_5xx"]
            + result["max_throughput"]["gateway"].get("status_5xx", 0))
    result["targets"] = {
        "overhead_p50_le_2ms_at_100rps": fixed["overhead_from_schedule"].get("p50_ms", 99) <= 2.0,
        "overhead_p99_le_6ms_at_100rps": fixed["overhead_from_schedule"].get("p99_ms", 99) <= 6.0,
        "500rps_no_errors": high["gateway"]["ok_2xx"] == high["gateway"]["sent"],
        "zero_5xx": five == 0,
        "log_rows_equal_requests_served": log_rows["rows_equal_requests_served"]
        and log_rows["client_ids_missing"] == 0,
    }
    log_text = (root / "gateway.log").read_text(errors="replace")
    result["gateway_log_tail"] = log_text[-2000:]
    result["finished_at"] = now_iso()
    result["markdown"] = markdown_table(result)
    write_result("bench_gateway", result, args.out)
    print(result["markdown"])
    if not args.keep:
        safe_rmtree(root)
    return result


if __name__ == "__main__":
    main()
