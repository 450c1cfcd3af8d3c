"""Point MLflow at the target's tracking store and registry (sqlite under root locally)."""

from __future__ import annotations

import logging
import os
import re

from ragops.config import Settings

log = logging.getLogger(__name__)

#: MLflow error codes that mean "no such model / version / alias / prompt" (local stores and Unity
#: Catalog). The local sqlite store answers a missing *alias* with INVALID_PARAMETER_VALUE and a
#: message "... alias X not found" (MLflow 3.17), matched by text; every other error — auth,
#: network, server — is not "not found" and must surface.
NOT_FOUND_CODES = frozenset({"RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"})
_LOCAL_MISSING_ALIAS = re.compile(r"alias \S+ not found", re.IGNORECASE)


def is_not_found(exc: Exception) -> bool:
    """Whether an ``MlflowException`` says the model, version, alias or prompt does not exist."""
    code = getattr(exc, "error_code", "")
    if code in NOT_FOUND_CODES:
        return True
    return code == "INVALID_PARAMETER_VALUE" and bool(_LOCAL_MISSING_ALIAS.search(str(exc)))


def experiment_name(settings: Settings) -> str:
    """The MLflow experiment of this target (workspace experiments live under /Shared)."""
    uri = settings.tracking_uri
    return settings.experiment if not uri.startswith("databricks") else f"/Shared/{settings.experiment}"


def configure_mlflow(settings: Settings, experiment: bool = True):
    """Set tracking/registry URIs (and the experiment) for this process; returns an MlflowClient."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    import mlflow
    from mlflow import MlflowClient

    uri = settings.tracking_uri
    if uri.startswith("sqlite:"):
        settings.root.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri("databricks-uc" if uri.startswith("databricks") else uri)
    if experiment:
        name = experiment_name(settings)
        if mlflow.get_experiment_by_name(name) is None:
            location = settings.artifact_root.as_uri() if uri.startswith("sqlite:") else None
            mlflow.create_experiment(name, artifact_location=location)
        mlflow.set_experiment(name)
    return MlflowClient()


def span_table(trace_id: str):
    """A trace's spans as a table (name, type, duration) — what a notebook shows for one answer."""
    import mlflow
    import pandas as pd

    trace = mlflow.get_trace(trace_id)
    if trace is None:
        raise LookupError(f"trace {trace_id} not found in {mlflow.get_tracking_uri()}")
    rows = [{"span": s.name, "type": s.span_type, "ms": round((s.end_time_ns - s.start_time_ns) / 1e6, 1),
             "parent": s.parent_id} for s in trace.data.spans]
    return pd.DataFrame(rows)
