"""Probe: what the gateway's upstream HTTP client costs — httpx (today's UpstreamBackend) against aiohttp.

    .venv/bin/python benchmarks/probe_gateway_client.py
    .venv/bin/python benchmarks/probe_gateway_client.py --requests 2000 --wrk-seconds 5 --out /tmp/probe.json

Two measurements against ``fake_openai_upstream.py`` (127.0.0.1, stopped at the end):

1. the bare client: ``--requests`` POSTs with ``httpx.AsyncClient`` (the gateway's settings: 256
   connections, 64 kept alive) and with ``aiohttp.ClientSession``, 1 and 16 at a time; µs per request.
2. the real gateway app (``create_app``, inference log on) served by uvicorn in a child process,
   once with the real :class:`UpstreamBackend` and once with a subclass whose ``complete`` uses
   aiohttp (everything else unchanged); ``wrk`` at 1 and 16 connections for ``--wrk-seconds``:
   requests/s, latency, and the gateway process's CPU ms per request (from /proc, so a busy
   machine inflates it less than latency).

A probe for the gateway's owner, not a target: it says how much of the gateway's cost is its HTTP
client. Result: ``benchmarks/results/probe_gateway_client.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import BENCH_DIR, RESULTS_DIR, loadavg, machine_info, now_iso, write_result  # noqa: E402
from bench_gateway import HOST, free_port, stop, tree_cpu_s, wait_until  # noqa: E402

BODY = json.dumps({"model": "bench", "messages": [{"role": "user", "content": "hi"}]})

#: The child process: the real gateway app with the real or the aiohttp upstream backend.
CHILD = r'''
import json, os, sys, time
import uvicorn
from ragops.config import Settings
from ragops.serving.gateway.app import create_app
from ragops.serving.gateway.backends import BackendError, UpstreamBackend, make_backend
from ragops.serving.gateway.config import load_gateway_config


class AiohttpUpstream(UpstreamBackend):
    """UpstreamBackend with complete() on aiohttp (streaming unchanged: this probe does not stream)."""

    session = None

    async def complete(self, question):
        import aiohttp
        if self.session is None:
            self.session = aiohttp.ClientSession(headers={"Content-Type": "application/json"},
                                                 connector=aiohttp.TCPConnector(limit=256))
        started = time.perf_counter()
        try:
            async with self.session.post(self.url, data=json.dumps(self._body(question, False))) as r:
                if r.status >= 400:
                    raise BackendError(f"target {self.target.name!r} answered HTTP {r.status}")
                data = await r.json(content_type=None)
        except BackendError:
            raise
        except Exception as exc:
            raise self._failure(exc) from exc
        answer = self._answer(data)
        answer.ttft_ms = (time.perf_counter() - started) * 1000
        return answer


variant, port, root, config = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
settings = Settings.from_variables({"root": root})
factory = make_backend if variant == "httpx" else (lambda target, s: AiohttpUpstream(target, s))
app = create_app(load_gateway_config(config, settings), settings, backend_factory=factory)
uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
'''


async def bare_httpx(url: str, n: int, concurrency: int) -> float:
    import httpx

    async with httpx.AsyncClient(headers={"Content-Type": "application/json"},
                                 timeout=httpx.Timeout(None, connect=5.0),
                                 limits=httpx.Limits(max_connections=256, max_keepalive_connections=64)) as c:
        async def worker(k: int) -> None:
            for _ in range(k):
                (await c.post(url, content=BODY)).json()

        await worker(50)  # warm
        t = time.perf_counter()
        await asyncio.gather(*(worker(n // concurrency) for _ in range(concurrency)))
        return time.perf_counter() - t


async def bare_aiohttp(url: str, n: int, concurrency: int) -> float:
    import aiohttp

    async with aiohttp.ClientSession(headers={"Content-Type": "application/json"}) as s:
        async def worker(k: int) -> None:
            for _ in range(k):
                async with s.post(url, data=BODY) as r:
                    await r.json()

        await worker(50)
        t = time.perf_counter()
        await asyncio.gather(*(worker(n // concurrency) for _ in range(concurrency)))
        return time.perf_counter() - t


def wrk(port: int, seconds: int, connections: int, lua: Path) -> dict:
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(lua),
                          f"http://{HOST}:{port}/v1/chat/completions"], capture_output=True, text=True,
                         timeout=seconds + 60).stdout
    n = re.search(r"(\d+) requests in", out)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    lat = dict(re.findall(r"^\s+(50|99)%\s+([\d.]+\w+)", out, re.MULTILINE))
    return {"requests": int(n.group(1)) if n else 0, "rps": float(rps.group(1)) if rps else None,
            "p50": lat.get("50"), "p99": lat.get("99"), "non_2xx": "Non-2xx" in out}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", type=int, default=2000)
    p.add_argument("--wrk-seconds", type=int, default=5)
    p.add_argument("--out", type=Path, default=RESULTS_DIR / "probe_gateway_client.json")
    args = p.parse_args(argv)
    result: dict = {"probe": "probe_gateway_client", "started_at": now_iso(), "machine": machine_info(),
                    "loadavg_before": loadavg(), "argv": sys.argv[1:]}
    work = Path(tempfile.mkdtemp(prefix="probe-gateway-", dir="/tmp"))
    up_port = free_port()
    upstream = subprocess.Popen([sys.executable, str(BENCH_DIR / "fake_openai_upstream.py"), "--port", str(up_port),
                                 "--max-seconds", "300"], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        wait_until(f"http://{HOST}:{up_port}/health", 30, upstream, "the fake upstream")
        url = f"http://{HOST}:{up_port}/v1/chat/completions"
        bare = {}
        for name, fn in (("httpx", bare_httpx), ("aiohttp", bare_aiohttp)):
            for c in (1, 16):
                seconds = asyncio.run(fn(url, args.requests, c))
                bare[f"{name}_c{c}_us_per_request"] = round(seconds / args.requests * 1e6, 1)
        result["bare_client"] = bare
        print(bare, flush=True)

        config = work / "gw.yml"
        config.write_text(f'routes:\n  - name: bench\n    targets: [{{name: fast, upstream: "http://{HOST}:{up_port}/v1"}}]\n')
        child = work / "child.py"
        child.write_text(CHILD)
        lua = work / "post.lua"
        lua.write_text(f"wrk.method = 'POST'\nwrk.body = '{BODY}'\nwrk.headers['Content-Type'] = 'application/json'\n"
                       "wrk.headers['Authorization'] = 'Bearer sk-probe'\n")
        through = {}
        if shutil.which("wrk") is None:
            through["skipped"] = "wrk is not installed (benchmarks/setup.sh)"
        for variant in ("httpx", "aiohttp") if shutil.which("wrk") else ():
            port = free_port()
            env = {**os.environ, "RAGOPS_API_KEYS": "probe:sk-probe", "RAGOPS_PROGRESS": "0"}
            gw = subprocess.Popen([sys.executable, str(child), variant, str(port), str(work / f"root-{variant}"),
                                   str(config)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
            try:
                wait_until(f"http://{HOST}:{port}/ready", 120, gw, f"the gateway ({variant})")
                for c in (1, 16):
                    cpu0 = tree_cpu_s(gw.pid)
                    w = wrk(port, args.wrk_seconds, c, lua)
                    w["gateway_cpu_ms_per_request"] = round(1000 * (tree_cpu_s(gw.pid) - cpu0) / max(1, w["requests"]), 3)
                    through[f"{variant}_c{c}"] = w
                    print(variant, c, w, flush=True)
            finally:
                stop(gw)
        result["gateway"] = through
    finally:
        stop(upstream, 10)
        shutil.rmtree(work, ignore_errors=True)
    result["loadavg_after"] = loadavg()
    result["finished_at"] = now_iso()
    write_result("probe_gateway_client", result, args.out)
    return result


if __name__ == "__main__":
    main()
