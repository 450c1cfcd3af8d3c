"""RAG chain benchmark (issue 3): latency split, tokens/s vs a bare ``model.generate``, time to
first token, model load time, and served throughput of the MLflow scoring server.

    .venv/bin/python benchmarks/bench_chain.py [--root /tmp/ragops-bench/sample] [--questions 20]
    .venv/bin/python benchmarks/bench_chain.py served --backends transformers,local --workers 1,2 \
        --concurrency 1,4,8 [--var embedding_runtime=onnx]

``served`` only measures the scoring server: for each LLM backend it logs a chain with that
backend (what a model answers with is fixed when it is logged), serves it with each worker count
(``ragops serve --workers N``; each worker's model gets cores / N threads) and sends the same
bounded batch of requests at each concurrency. Servers listen on 127.0.0.1 and are stopped at the end.

Uses the project's sample corpus and eval questions (data/). In the same run and on the same
prompts, the chain's generation tokens/s is compared with a bare ``model.generate`` of the same
model and generation settings (target ratio ≥ 0.95), and retrieval + prompt time is reported as a
share of total latency (target ≤ 5%).
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO_ROOT, loadavg, machine_info, now_iso, percentiles, settings_for, write_result  # noqa: E402

os.environ.setdefault("MLFLOW_ENABLE_ASYNC_TRACE_LOGGING", "false")


def questions(n: int) -> list[str]:
    rows = [json.loads(line) for line in (REPO_ROOT / "data" / "eval" / "questions.jsonl").read_text().splitlines() if line]
    answerable = [r["question"] for r in rows if r["expected_doc_ids"]]
    return answerable[:n]


def bare_generate_tps(chain, prompts_msgs, max_new_tokens: int) -> list[float]:
    """tokens/s of model.generate on exactly the chain's prompts, same generation settings."""
    import torch

    from ragops.llm.local import load_transformers_model
    from ragops.llm.messages import to_dicts

    model, tok = load_transformers_model(chain.llm.model_name, chain.llm.device)
    kwargs = chain.llm._generation_kwargs(tok, max_new_tokens=max_new_tokens)
    rates = []
    for msgs in prompts_msgs:
        enc = tok.apply_chat_template(to_dicts(msgs), add_generation_prompt=True, return_tensors="pt", return_dict=True)
        enc = {k: v.to(model.device) for k, v in dict(enc).items()}
        t = time.perf_counter()
        with torch.inference_mode():
            out = model.generate(**enc, **kwargs)
        dt = time.perf_counter() - t
        rates.append((out.shape[1] - enc["input_ids"].shape[1]) / dt)
    return rates


def served_throughput(settings, n_requests: int, concurrencies: list[int], qs: list[str], *,
                      model_uri: str | None = None, workers: int = 1, batching: bool = True) -> dict:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [str(Path(sys.executable).with_name("ragops")), "serve", "--port", str(port), "--workers", str(workers),
           "--var", f"root={settings.root}"] + (["--model-uri", model_uri] if model_uri else []) + (
           [] if batching else ["--no-batching"])
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        t0 = time.perf_counter()
        while True:
            try:
                urllib.request.urlopen(f"{base}/ping", timeout=2)
                break
            except Exception:  # noqa: BLE001
                if time.perf_counter() - t0 > 300 or proc.poll() is not None:
                    raise RuntimeError("scoring server did not start") from None
                time.sleep(1)
        startup = time.perf_counter() - t0

        tokens: list[int] = []

        def ask(q: str) -> float:
            body = json.dumps({"messages": [{"role": "user", "content": q}]}).encode()
            t = time.perf_counter()
            req = urllib.request.Request(f"{base}/invocations", data=body, headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=600) as resp:
                assert resp.status == 200
                answer = json.loads(resp.read())
            tokens.append(int(answer.get("usage", {}).get("completion_tokens", 0)))
            return time.perf_counter() - t

        for _ in range(workers):  # warm every worker (each loads its own model on its first request)
            ask(qs[0])
        out = {"server_startup_s": round(startup, 2), "workers": workers, "batching": batching}
        for c in concurrencies:
            batch = [qs[i % len(qs)] for i in range(n_requests)]
            tokens.clear()
            t = time.perf_counter()
            with cf.ThreadPoolExecutor(c) as pool:
                lat = list(pool.map(ask, batch))
            wall = time.perf_counter() - t
            out[f"concurrency_{c}"] = {"requests": n_requests, "wall_s": round(wall, 2),
                                       "requests_per_s": round(n_requests / wall, 3), "latency": percentiles(lat),
                                       "completion_tokens_mean": round(sum(tokens) / max(1, len(tokens)), 1)}
        return out
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=30)


def served_main(argv: list[str]) -> None:
    """Served req/s per LLM backend and worker count, in one run on one index (see the docstring)."""
    from ragops.index.build import build_index
    from ragops.models.log import log_chain

    ap = argparse.ArgumentParser(prog="bench_chain.py served")
    ap.add_argument("--root", type=Path, default=Path("/tmp/ragops-bench/served"))
    ap.add_argument("--backends", default="transformers,local")
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--concurrency", default="1,4,8")
    ap.add_argument("--requests", type=int, default=16)
    ap.add_argument("--batching", default="on", help="on, off or on,off: `ragops serve` with or without "
                    "--no-batching (only llm_backend=openvino batches; the others are run once)")
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--var", action="append", default=[], metavar="NAME=VALUE")
    ap.add_argument("--out", type=Path, default=None, help="result file (default results/bench_chain_served.json)")
    args = ap.parse_args(argv)
    extra = dict(v.split("=", 1) for v in args.var)
    result = {"benchmark": "bench_chain_served", "date": now_iso(), "argv": sys.argv, "load_before": loadavg(),
              "machine": machine_info(), "requests": args.requests, "max_new_tokens": args.max_new_tokens, "runs": []}
    qs = questions(20)
    for backend in args.backends.split(","):
        settings = settings_for(args.root, REPO_ROOT / "data" / "corpus", llm_max_new_tokens=args.max_new_tokens,
                                llm_backend=backend, **extra)
        if not (settings.index_root / "CURRENT").exists():
            build_index(settings)
        logged = log_chain(settings)
        modes = [m == "on" for m in args.batching.split(",")] if backend == "openvino" else [False]
        for batching in modes:
            for workers in [int(w) for w in args.workers.split(",")]:
                run = served_throughput(settings, args.requests, [int(c) for c in args.concurrency.split(",")], qs,
                                        model_uri=logged.model_uri, workers=workers, batching=batching)
                result["runs"].append({"llm_backend": backend, "model_uri": logged.model_uri, "load": loadavg(), **run})
                print(json.dumps(result["runs"][-1]), flush=True)
    result["load_after"] = loadavg()
    write_result("bench_chain_served", result, args.out)


def main() -> None:
    if sys.argv[1:2] == ["served"]:
        served_main(sys.argv[2:])
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", type=Path, default=Path("/tmp/ragops-bench/sample"))
    ap.add_argument("--questions", type=int, default=20)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--served-requests", type=int, default=8)
    args = ap.parse_args()

    import mlflow
    import numpy as np

    from ragops.index.build import build_index
    from ragops.models.log import log_chain
    from ragops.models.registry import promote

    result = {"benchmark": "bench_chain", "date": now_iso(), "argv": sys.argv, "load_before": loadavg(),
              "machine": machine_info()}
    # Chain vs bare model.generate on the same prompts is a transformers comparison (bare_generate_tps).
    settings = settings_for(args.root, REPO_ROOT / "data" / "corpus", llm_max_new_tokens=args.max_new_tokens,
                            llm_backend="transformers")
    if not (settings.index_root / "CURRENT").exists():
        build_index(settings)
    logged = log_chain(settings)
    promote(settings, logged.version)
    result["model_uri"] = logged.model_uri

    t = time.perf_counter()
    model = mlflow.pyfunc.load_model(logged.model_uri)  # load_context warms the embedder and the LLM
    result["model_load_s"] = round(time.perf_counter() - t, 2)
    chain = model.unwrap_python_model().chain

    qs = questions(args.questions)
    chain.invoke(qs[0])  # warm-up
    rows = []
    for q in qs:
        # Interleaved: the bare generate runs right after the chain on the same prompt, so both
        # see the same machine load (this box is shared; a block-by-block comparison is not fair).
        results = chain.retrieve(q)
        bare_tps = bare_generate_tps(chain, [chain.messages(q, [], results)], args.max_new_tokens)[0] if results else None
        t = time.perf_counter()
        out = chain.invoke(q)
        total = time.perf_counter() - t
        tm = out["timings_ms"]
        n_out = out["usage"].get("completion_tokens", 0)
        rows.append({"total_s": total, "retrieval_s": tm["retrieval_ms"] / 1000, "prompt_s": tm["prompt_ms"] / 1000,
                     "generation_s": tm["generation_ms"] / 1000, "output_tokens": n_out,
                     "tps": n_out / (tm["generation_ms"] / 1000) if tm["generation_ms"] else None,
                     "bare_tps": bare_tps})
    paired = [r for r in rows if r["tps"] and r["bare_tps"]]
    chain_tps = [r["tps"] for r in paired]
    bare = [r["bare_tps"] for r in paired]
    overhead = sum(r["retrieval_s"] + r["prompt_s"] for r in rows) / sum(r["total_s"] for r in rows)
    result["latency"] = {k: percentiles([r[f"{k}_s"] for r in rows]) for k in ("total", "retrieval", "prompt", "generation")}
    result["tokens"] = {"output_tokens_mean": round(float(np.mean([r["output_tokens"] for r in rows])), 1),
                        "chain_tokens_per_s_mean": round(float(np.mean(chain_tps)), 2),
                        "bare_generate_tokens_per_s_mean": round(float(np.mean(bare)), 2)}
    result["ratio_chain_vs_bare_tps"] = round(float(np.mean(chain_tps) / np.mean(bare)), 3)
    result["ratio_chain_vs_bare_tps_paired_median"] = round(float(np.median(np.array(chain_tps) / np.array(bare))), 3)
    result["retrieval_plus_prompt_share_of_latency"] = round(overhead, 4)
    result["targets"] = {"ratio_chain_vs_bare_tps": ">= 0.95", "retrieval_plus_prompt_share_of_latency": "<= 0.05"}

    ttft = []
    for q in qs[:10]:
        final = list(chain.stream(q))[-1]
        ttft.append(final["timings_ms"]["time_to_first_token_ms"] / 1000)
    result["time_to_first_token"] = percentiles(ttft)
    del model, chain
    result["served"] = served_throughput(settings, args.served_requests, [1, 4], qs)
    result["load_after"] = loadavg()
    write_result("bench_chain", result)


if __name__ == "__main__":
    main()
