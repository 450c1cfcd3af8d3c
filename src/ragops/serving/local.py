"""Answer from a registered chain on this machine: one question in-process (``ragops ask``), or
MLflow's scoring server over HTTP (``ragops serve``). The CLI only parses flags and prints.

``ask`` takes a warm path (BENCHMARKS.md, "Cold ragops ask"): of the ~20 s a cold ``ragops ask``
spent, ~2.5 s was importing MLflow, ~2 s opening its sqlite store (twice: alias → version), ~11 s in
``mlflow.pyfunc.load_model`` (environment checks, then the embedder, the LLM and the index), and
the rest answering. So ``ask``:

1. resolves the alias → version with :func:`ragops.models.registry.resolve_version` (one read-only
   query of a local sqlite registry; MLflow's own client for any other);
2. downloads the model version's artifacts once, into ``<root>/cache/models/<name>/<version>/``
   (MLflow's ``download_artifacts``), then reuses that folder — a version's artifacts never change;
   the cache records the version's ``source`` and is refreshed if the registry says otherwise
   (a re-created registry that numbers a different model "1");
3. builds the chain from that folder with the same code the pyfunc's ``load_context`` runs
   (:func:`ragops.models.loading.chain_from_model_dir`), so both answer alike (a test checks);
4. records an MLflow trace only when asked (``trace=True``, ``ragops ask --trace``): tracing
   means importing MLflow and opening its store, seconds on a cold process.

``mlflow.pyfunc.load_model`` stays the path for serving and Python users (:func:`ask_pyfunc`).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from ragops.config import Settings
from ragops.models.registry import ModelVersionRef, resolve_version

SOURCE_FIELDS = ("doc_id", "source_uri", "chunk_id", "score")
CACHE_MARKER = "ragops-cache.json"


def model_cache_dir(settings: Settings, ref: ModelVersionRef) -> Path:
    return settings.root / "cache" / "models" / ref.name / ref.version


def cached_model(settings: Settings, ref: ModelVersionRef) -> tuple[Path, bool]:
    """The model version's folder in the local cache, downloading it on first use: (folder, downloaded)."""
    final = model_cache_dir(settings, ref)
    marker = final / CACHE_MARKER
    if marker.exists() and json.loads(marker.read_text()).get("source") == ref.source:
        return final / "model", False
    import mlflow

    from ragops.tracking import configure_mlflow

    configure_mlflow(settings, experiment=False)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one model, local copies: quick
    tmp = final.parent / f".tmp-{ref.version}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True)
    try:
        mlflow.artifacts.download_artifacts(artifact_uri=ref.uri, dst_path=str(tmp / "model"))
        (tmp / CACHE_MARKER).write_text(json.dumps({"source": ref.source, "model_uri": ref.uri}))
        if final.exists():  # stale (another source under the same name and number)
            shutil.rmtree(final)
        try:
            os.replace(tmp, final)
        except OSError:  # another process cached it first
            if not (final / CACHE_MARKER).exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final / "model", True


_CHAINS: dict[Path, Any] = {}


def load_chain(model_dir: Path):
    """The chain of a cached model folder, built once per process."""
    from ragops.models.loading import chain_from_model_dir

    if model_dir not in _CHAINS:
        _CHAINS[model_dir] = chain_from_model_dir(model_dir).load()
    return _CHAINS[model_dir]


def _answer(out: dict[str, Any], model_uri: str, version: str | None, timings: dict[str, float]) -> dict[str, Any]:
    return {
        "answer": out["answer"],
        "sources": [{k: s[k] for k in SOURCE_FIELDS} for s in out["sources"]],
        "model_uri": model_uri,
        "model_version": version,
        "trace_id": out.get("trace_id"),
        "usage": out.get("usage", {}),
        "timings": {**out.get("timings", {}), **{k: round(v, 4) for k, v in timings.items()}},
        "lineage": out.get("lineage", {}),  # index snapshot, prompt version, config hash, the LLM (rag_llm version)
    }


def ask(settings: Settings, question: str, model_uri: str | None = None, *, trace: bool = False) -> dict[str, Any]:
    """Answer one question from ``model_uri`` (default: ``@champion``, else ``@challenger``): answer,
    sources, model version, usage, timings (``ttft_s``, ``total_s`` of the model call; ``resolve_s``,
    ``load_s`` before it), the lineage it was built from and, with ``trace=True``, the MLflow trace id."""
    started = time.perf_counter()
    ref, shown = resolve_version(settings, model_uri)
    resolved = time.perf_counter()
    if ref is not None:
        model_dir, _ = cached_model(settings, ref)
    elif (Path(shown) / "MLmodel").exists():  # a model folder on disk
        model_dir = Path(shown)
    else:  # runs:/ and other URIs: no registry version to cache under
        return ask_pyfunc(settings, question, shown, trace=trace)
    chain = load_chain(model_dir)
    loaded = time.perf_counter()
    if trace:
        from ragops.tracking import configure_mlflow

        configure_mlflow(settings)
    out = chain.invoke(question, [], trace=trace)
    return _answer(out, shown, ref.version if ref else None,
                   {"resolve_s": resolved - started, "load_s": loaded - resolved})


def ask_pyfunc(settings: Settings, question: str, model_uri: str, *, trace: bool = True) -> dict[str, Any]:
    """The same answer through ``mlflow.pyfunc.load_model`` (what serving and Python users run)."""
    import mlflow

    from ragops.models.registry import resolve_model_uri
    from ragops.tracking import configure_mlflow

    started = time.perf_counter()
    configure_mlflow(settings)
    model = mlflow.pyfunc.load_model(model_uri)
    loaded = time.perf_counter()
    out = model.predict({"messages": [{"role": "user", "content": question}]})
    if not trace:
        out = {**out, "trace_id": None}
    return _answer(out, model_uri, resolve_model_uri(settings, model_uri)[1], {"load_s": loaded - started})


def worker_threads(workers: int) -> int:
    """CPU threads each scoring-server worker's model may use: the cores shared out, at least one."""
    from ragops.cpu import available_cores

    return max(1, available_cores() // max(1, workers))


def scoring_server_command(settings: Settings, model_uri: str, host: str, port: int, workers: int = 1,
                           request_timeout_s: int = 600, batching: bool = True) -> tuple[list[str], dict[str, str]]:
    """The ``mlflow models serve`` command line and environment that serve ``model_uri`` from this venv."""
    from ragops.tracking import configure_mlflow

    configure_mlflow(settings, experiment=False)
    bin_dir = str(Path(sys.executable).parent)  # mlflow execs `uvicorn` from PATH: use this venv's
    env = {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
           "MLFLOW_TRACKING_URI": settings.tracking_uri,
           # CPU generation can take a while; MLflow's default request timeout is 60 s.
           "MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT": str(request_timeout_s),
           # MLflow answers each request on its own thread: llm_backend=openvino then puts concurrent
           # requests into shared forward passes (ragops.llm.openvino_batching)
           "RAGOPS_LLM_BATCHING": "1" if batching else "0"}
    if workers > 1:
        # N workers each running a model on every core would fight over them: share the cores out
        # (torch reads OMP_NUM_THREADS; llama.cpp RAGOPS_LLM_THREADS). One worker keeps each
        # backend's own default (llama.cpp's is half the cores, see ragops.llm.llamacpp).
        threads = str(worker_threads(workers))
        env.setdefault("OMP_NUM_THREADS", threads)
        env.setdefault("RAGOPS_LLM_THREADS", threads)
    cmd = [sys.executable, "-m", "mlflow", "models", "serve", "-m", model_uri, "--env-manager", "local",
           "-h", host, "-p", str(port), "-w", str(workers)]
    return cmd, env


def serve(settings: Settings, model_uri: str, host: str = "127.0.0.1", port: int = 5050, workers: int = 1,
          request_timeout_s: int = 600, batching: bool = True) -> int:
    """Run MLflow's scoring server in the foreground until it exits (or Ctrl-C); its exit code."""
    cmd, env = scoring_server_command(settings, model_uri, host, port, workers, request_timeout_s, batching)
    try:
        return subprocess.call(cmd, env=env)
    except KeyboardInterrupt:
        return 0


__all__ = ["ModelVersionRef", "ask", "ask_pyfunc", "cached_model", "resolve_version", "serve"]
