"""Cold ``ragops ask`` (issue 10): wall time of a fresh ``ragops ask`` process, before and after the
warm path, with the old (transformers + torch) and the fast (llama.cpp + ONNX) backends.

    .venv/bin/python benchmarks/bench_ask.py [--root /tmp/ragops-bench/ask] [--runs 3] \\
        [--before-commit d88c816] [--fast-vars llm_backend=local,embedding_runtime=onnx]

One index (the sample corpus) and one registry under ``--root``; a chain is registered per
configuration, then each is asked the same question in ``--runs`` fresh processes (after one
untimed run that fills the OS page cache and, for the warm path, the model cache):

- ``before``: the code at ``--before-commit`` (a detached ``git worktree`` under /tmp, put first on
  PYTHONPATH), i.e. ``mlflow.pyfunc.load_model`` + ``predict`` with its default backends
  (transformers, torch);
- ``warm path, old backends``: this tree, ``llm_backend=transformers``, ``embedding_runtime=torch``;
- ``warm path, fast backends``: this tree with ``--fast-vars``.

The median wall time and, for this tree, the breakdown ``ask --json`` reports (resolve, load,
time to first token, generation) go to ``benchmarks/results/bench_ask.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO_ROOT, loadavg, machine_info, now_iso, settings_for, write_result  # noqa: E402

QUESTION = "Which port does the collector listen on?"
RAGOPS = str(Path(sys.executable).with_name("ragops"))


def _env(pythonpath: str | None = None) -> dict[str, str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "MLFLOW_DISABLE_TELEMETRY": "true"}
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    return env


def register(root: Path, variables: dict[str, str], pythonpath: str | None = None) -> str:
    """Register a chain with ``variables`` (in a child process, so ``pythonpath`` picks the code)."""
    code = ("import json, sys; from ragops.config import Settings; from ragops.models.log import log_chain; "
            "s = Settings.from_variables(json.loads(sys.argv[1])); print(log_chain(s).model_uri)")
    variables = {"root": str(root), "source_path": str(REPO_ROOT / "data" / "corpus"), **variables}
    proc = subprocess.run([sys.executable, "-c", code, json.dumps(variables)], capture_output=True, text=True,
                          env=_env(pythonpath), cwd="/tmp", timeout=900, check=True)
    return proc.stdout.strip().splitlines()[-1]


def timed_ask(root: Path, model_uri: str, pythonpath: str | None) -> tuple[float, dict]:
    cmd = [RAGOPS, "ask", QUESTION, "--json", "--model-uri", model_uri, "--var", f"root={root}"]
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_env(pythonpath), cwd=REPO_ROOT, timeout=600)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {proc.stderr[-2000:]}")
    return wall, json.loads(proc.stdout.strip().splitlines()[-1])


def measure(name: str, root: Path, model_uri: str, runs: int, pythonpath: str | None = None) -> dict:
    first_wall, _ = timed_ask(root, model_uri, pythonpath)  # page cache (and the model cache) filled
    rows = []
    for _ in range(runs):
        load = os.getloadavg()[0]
        wall, out = timed_ask(root, model_uri, pythonpath)
        rows.append({"wall_s": round(wall, 2), "load_1m": round(load, 2), "answer": out["answer"],
                     "timings": out.get("timings"), "usage": out.get("usage")})
        print(name, json.dumps(rows[-1]), flush=True)
    median = statistics.median(r["wall_s"] for r in rows)
    breakdown = {}
    if rows[0]["timings"]:
        for key in ("resolve_s", "load_s", "ttft_s", "total_s"):
            values = [r["timings"][key] for r in rows if r["timings"].get(key) is not None]
            if values:
                breakdown[key] = round(statistics.median(values), 2)
    return {"name": name, "model_uri": model_uri, "first_run_wall_s": round(first_wall, 2),
            "median_wall_s": median, "breakdown_median": breakdown, "runs": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", type=Path, default=Path("/tmp/ragops-bench/ask"))
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--before-commit", default="d88c816")
    ap.add_argument("--fast-vars", default="", help="variables of the fast configuration (default: the project defaults)")
    ap.add_argument("--only", default="before,old,fast", help="which configurations to measure")
    ap.add_argument("--out", type=Path, default=None, help="result file (default results/bench_ask.json)")
    args = ap.parse_args()

    from ragops.index.build import build_index

    settings = settings_for(args.root, REPO_ROOT / "data" / "corpus")
    if not (settings.index_root / "CURRENT").exists():
        build_index(settings)
    result = {"benchmark": "bench_ask", "date": now_iso(), "argv": sys.argv, "question": QUESTION,
              "load_before": loadavg(), "machine": machine_info(), "configs": []}
    only = args.only.split(",")
    if "before" in only:
        worktree = Path(f"/tmp/ragops-before-{args.before_commit}")
        if not worktree.exists():
            subprocess.run(["git", "worktree", "add", "--detach", str(worktree), args.before_commit], cwd=REPO_ROOT,
                           check=True, capture_output=True)
        src = str(worktree / "src")
        uri = register(args.root, {}, pythonpath=src)
        result["configs"].append({**measure("before (pyfunc.load_model; transformers, torch)", args.root, uri,
                                            args.runs, pythonpath=src), "commit": args.before_commit})
    if "old" in only:
        uri = register(args.root, {"llm_backend": "transformers", "embedding_runtime": "torch"})
        result["configs"].append(measure("warm path; transformers, torch", args.root, uri, args.runs))
    if "fast" in only:
        fast = dict(pair.split("=", 1) for pair in args.fast_vars.split(",") if pair)
        uri = register(args.root, fast)
        result["configs"].append({**measure(f"warm path; {args.fast_vars or 'defaults (llama.cpp F16, ONNX fp32)'}", args.root, uri, args.runs),
                                  "vars": fast})
    result["load_after"] = loadavg()
    write_result("bench_ask", result, args.out)


if __name__ == "__main__":
    main()
