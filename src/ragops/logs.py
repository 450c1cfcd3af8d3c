"""Logging set-up shared by the CLI, jobs and notebooks: one readable line per event."""

from __future__ import annotations

import logging
import os
import warnings


def setup_logging(level: str | int | None = None) -> None:
    level = level or os.environ.get("RAGOPS_LOG_LEVEL", "INFO")
    root = logging.getLogger()
    if not any(getattr(h, "_ragops", False) for h in root.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S"))
        handler._ragops = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(level)
    # Third-party chatter that buries the pipeline's own log lines.
    for noisy in ("faiss.loader", "bm25s", "sentence_transformers", "httpx", "urllib3", "py4j", "filelock",
                  "transformers", "huggingface_hub"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # Traces are written before the command returns (a trace id we print can be opened at once).
    os.environ.setdefault("MLFLOW_ENABLE_ASYNC_TRACE_LOGGING", "false")
