"""Answer from a registered chain on this machine: one question in-process (``ragops ask``), or
MLflow's scoring server over HTTP (``ragops serve``). The CLI only parses flags and prints."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from ragops.config import Settings
from ragops.tracking import configure_mlflow

SOURCE_FIELDS = ("doc_id", "source_uri", "chunk_id", "score")


def ask(settings: Settings, question: str, model_uri: str) -> dict[str, Any]:
    """Load ``model_uri`` and answer one question: answer, sources, model version and trace id."""
    import mlflow

    from ragops.models.registry import resolve_model_uri

    configure_mlflow(settings)
    model = mlflow.pyfunc.load_model(model_uri)
    out = model.predict({"messages": [{"role": "user", "content": question}]})
    return {
        "answer": out["answer"],
        "sources": [{k: s[k] for k in SOURCE_FIELDS} for s in out["sources"]],
        "model_uri": model_uri,
        "model_version": resolve_model_uri(settings, model_uri)[1],
        "trace_id": out.get("trace_id"),
    }


def scoring_server_command(settings: Settings, model_uri: str, host: str, port: int, workers: int = 1,
                           request_timeout_s: int = 600) -> tuple[list[str], dict[str, str]]:
    """The ``mlflow models serve`` command line and environment that serve ``model_uri`` from this venv."""
    configure_mlflow(settings, experiment=False)
    bin_dir = str(Path(sys.executable).parent)  # mlflow execs `uvicorn` from PATH: use this venv's
    env = {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
           "MLFLOW_TRACKING_URI": settings.tracking_uri,
           # CPU generation can take a while; MLflow's default request timeout is 60 s.
           "MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT": str(request_timeout_s)}
    cmd = [sys.executable, "-m", "mlflow", "models", "serve", "-m", model_uri, "--env-manager", "local",
           "-h", host, "-p", str(port), "-w", str(workers)]
    return cmd, env


def serve(settings: Settings, model_uri: str, host: str = "127.0.0.1", port: int = 5050, workers: int = 1,
          request_timeout_s: int = 600) -> int:
    """Run MLflow's scoring server in the foreground until it exits (or Ctrl-C); its exit code."""
    cmd, env = scoring_server_command(settings, model_uri, host, port, workers, request_timeout_s)
    try:
        return subprocess.call(cmd, env=env)
    except KeyboardInterrupt:
        return 0
