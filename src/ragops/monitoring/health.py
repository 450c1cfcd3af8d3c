"""Index freshness and pipeline health: whether what serves is as new as what was ingested, and
whether the jobs that keep it so are running.

Model-quality monitors watch answers; they do not notice that the answers come from an index built
last week while ingestion kept running. Two views close that gap:

**Index freshness** (:func:`index_freshness`) compares the ``embeddings`` table with the index
snapshot that serves. The serving snapshot is the one the ``@champion`` chain was logged with (its
registry version's ``index_snapshot`` / ``index_source_version`` lineage tags, written by
:func:`ragops.models.log.log_chain`), because the chain packs its snapshot and serves that one,
whatever the store's ``CURRENT`` pointer says since; with no champion (nothing promoted, or no
registry yet) it is the store's current snapshot. :attr:`Freshness.serving` says which.
The lag is counted in ``embeddings`` versions committed after the snapshot's ``source_version``
and in seconds since the first of them (from ``lh.history("embeddings")``). Documents in
``raw_documents`` with no chunk in the snapshot are *unsearchable*: ingested after it was built, or
never chunked/embedded. (A document that was rejected is not in ``raw_documents``; one whose new
content is not yet re-embedded is stale, not unsearchable, and is not counted.) The snapshot's
doc ids come from its ``rows.parquet``; when the champion's snapshot has been pruned from the store
they come from ``embeddings`` as of its source version, which is what it was built from.

**Pipeline health** (:func:`pipeline_health`) is the latest run of each bundle job. Locally that is
the runner's records, ``<runs_dir>/<job>/<run_id>/run.json`` (:class:`ragops.bundle.runner.JobRun`;
a ``run_job_task`` child writes a record of its own, so it shows as its own job). A record is
written when the run ends, so a run in progress is not seen, and it has no start time: the start is
the file's modification time minus the run's ``seconds``. On Databricks the Jobs API answers
instead (``jobs.list`` / ``jobs.list_runs``, latest completed run), checked against databricks-sdk
0.162 types. :func:`rejected_metrics` counts documents rejected at ingestion per reason.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ragops.config import Settings
from ragops.index.snapshot import Manifest, SnapshotStore
from ragops.monitoring.catalog import metric_row

log = logging.getLogger(__name__)

#: How many unsearchable doc ids a result (and its metric row's state) names.
SAMPLE_SIZE = 10
#: Databricks result states that count as a successful run or task.
_DATABRICKS_OK = frozenset({"SUCCESS", "EXCLUDED"})
#: Task result states that make a task "failed" (UPSTREAM_* tasks were skipped, as the local runner says).
_DATABRICKS_TASK_FAILED = frozenset({"FAILED", "TIMEDOUT", "CANCELED"})
#: A bundle job deployed by ``databricks bundle deploy``: ``ragops-<words>-<target>``, with a
#: ``[dev <user>] `` prefix in development mode.
_DEPLOYED_NAME = re.compile(r"^(?:\[[^\]]*\]\s*)?(?P<name>.+)$")


def _ts(value: Any) -> pd.Timestamp | None:
    if value is None:
        return None
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def _iso(ts: pd.Timestamp | None) -> str | None:
    return None if ts is None else ts.isoformat()


# --- index freshness ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Freshness:
    embeddings_version: int | None
    embeddings_committed_at: pd.Timestamp | None
    snapshot_id: str | None
    snapshot_source_version: int | None
    snapshot_built_at: pd.Timestamp | None
    #: which snapshot this is about: "champion" (the @champion chain's), "current snapshot" (the
    #: store's CURRENT: no champion), or "none" (nothing has been indexed)
    serving: str
    lag_versions: int | None
    #: seconds since the first embeddings commit after the snapshot's version (0 when there is none)
    lag_seconds: float | None
    unsearchable_documents: int
    unsearchable_sample: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("embeddings_committed_at", "snapshot_built_at"):
            out[key] = _iso(out[key])
        return out


def _champion_snapshot(settings: Settings) -> tuple[str, int | None] | None:
    """(snapshot id, embeddings source version) the @champion chain was logged with; None when
    there is no registry, no champion, or a champion without that lineage. Registry errors other
    than "not found" propagate."""
    uri = settings.tracking_uri
    if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///"):]).exists():
        return None  # no local registry yet: do not create one just to find it empty
    from ragops.models.registry import alias_model_version, model_name

    name = model_name(settings)
    version = alias_model_version(settings, "champion", name)
    if version is None:
        return None
    snapshot = version.tags.get("index_snapshot")
    if not snapshot:
        log.warning("freshness: %s v%s (@champion) has no index_snapshot tag (logged before lineage tags); "
                    "using the store's current snapshot", name, version.version)
        return None
    source = version.tags.get("index_source_version")
    return snapshot, int(source) if source not in (None, "", "None") else None


def _snapshot_doc_ids(lh, store: SnapshotStore, snapshot_id: str, source_version: int | None) -> set[str] | None:
    """The documents a snapshot holds chunks of: its rows, else embeddings at its source version."""
    if (store.snapshots / snapshot_id / "rows.parquet").exists():
        return set(store.read_rows(snapshot_id, ["doc_id"])["doc_id"])
    if source_version is not None and lh.exists("embeddings"):
        log.info("freshness: snapshot %s is not in %s (pruned); reading its documents from embeddings v%s",
                 snapshot_id, store.snapshots, source_version)
        return set(lh.read("embeddings", ["doc_id"], version=source_version)["doc_id"])
    return None


def index_freshness(lh, settings: Settings, *, now: pd.Timestamp | None = None) -> Freshness:
    """How far the serving index snapshot is behind the ``embeddings`` table (see the module
    docstring). ``now`` fixes the clock (tests)."""
    now = _ts(now) if now is not None else pd.Timestamp.now(tz="UTC")
    store = SnapshotStore(settings.index_root)

    champion = _champion_snapshot(settings)
    manifest: Manifest | None
    if champion is not None:
        serving, (snapshot_id, source_version) = "champion", champion
        manifest = store.manifest(snapshot_id) if (store.snapshots / snapshot_id / "manifest.json").exists() else None
        if manifest is not None and source_version is None:
            source_version = manifest.source_version
    else:
        manifest = store.manifest()
        serving = "current snapshot" if manifest else "none"
        snapshot_id = manifest.snapshot_id if manifest else None
        source_version = manifest.source_version if manifest else None
    built_at = _ts(manifest.created_at) if manifest else None

    history = lh.history("embeddings") if lh.exists("embeddings") else []
    commits = {int(h["version"]): pd.Timestamp(int(h["timestamp"]), unit="ms", tz="UTC") for h in history
               if h.get("version") is not None and h.get("timestamp") is not None}
    version = lh.version("embeddings")
    committed_at = commits.get(version) if version is not None else None

    lag_versions: int | None = None
    lag_seconds: float | None = None
    if version is not None and snapshot_id is None and lh.read("embeddings", ["chunk_id"]).empty:
        lag_versions, lag_seconds = 0, 0.0  # nothing embedded yet: nothing to be behind on
    elif version is not None:
        served = source_version if source_version is not None else -1  # nothing served: every commit lags
        if snapshot_id is None or source_version is not None:
            lag_versions = max(0, version - served)
            unserved = [ts for v, ts in commits.items() if v > served]
            lag_seconds = max(0.0, (now - min(unserved)).total_seconds()) if unserved else 0.0

    raw = set(lh.read("raw_documents", ["doc_id"])["doc_id"]) if lh.exists("raw_documents") else set()
    indexed = _snapshot_doc_ids(lh, store, snapshot_id, source_version) if snapshot_id else set()
    if indexed is None:
        log.warning("freshness: the documents of snapshot %s are unknown (not in the store, no source version)",
                    snapshot_id)
        indexed = raw
    missing = sorted(raw - indexed)
    return Freshness(
        embeddings_version=version, embeddings_committed_at=committed_at, snapshot_id=snapshot_id,
        snapshot_source_version=source_version, snapshot_built_at=built_at, serving=serving,
        lag_versions=lag_versions, lag_seconds=lag_seconds, unsearchable_documents=len(missing),
        unsearchable_sample=missing[:SAMPLE_SIZE],
    )


def freshness_metrics(f: Freshness, *, window_start, window_end) -> list[dict[str, Any]]:
    """``index_lag_versions``, ``index_lag_s`` and ``unsearchable_documents`` rows (route "")."""
    state = {"serving": f.serving, "snapshot_id": f.snapshot_id, "snapshot_source_version": f.snapshot_source_version,
             "embeddings_version": f.embeddings_version}
    version = f.embeddings_version
    return [
        metric_row(window_start, window_end, "index_lag_versions", f.lag_versions, state=state, source_version=version),
        metric_row(window_start, window_end, "index_lag_s", f.lag_seconds, state=state, source_version=version),
        metric_row(window_start, window_end, "unsearchable_documents", f.unsearchable_documents,
                   f.unsearchable_documents, state={**state, "sample": f.unsearchable_sample},
                   source_version=version),
    ]


# --- pipeline health ----------------------------------------------------------------------------

@dataclass(frozen=True)
class JobHealth:
    job: str
    run_id: str
    status: str  # succeeded | failed
    started_at: pd.Timestamp
    seconds: float
    failed_tasks: list[str] = field(default_factory=list)
    error: str = ""

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["started_at"] = _iso(self.started_at)
        return out


def default_runs_dir(settings: Settings) -> Path:
    """``monitor_jobs_root``, else ``<cwd>/.ragops/runs`` (where ``ragops bundle run`` writes from the bundle root)."""
    root = settings.monitoring.jobs_root
    return Path(root) if root else Path.cwd() / ".ragops" / "runs"


def _local_run(path: Path) -> JobHealth | None:
    try:
        record = json.loads(path.read_text())
    except json.JSONDecodeError as exc:  # a record cut short by a crash while it was written
        log.warning("pipeline health: %s is not valid JSON (%s); skipped", path, exc)
        return None
    tasks = record.get("tasks") or []
    ok = all(t.get("status") in ("succeeded", "excluded") for t in tasks)
    failed = [t for t in tasks if t.get("status") == "failed"]
    seconds = float(record.get("seconds") or 0.0)
    started = pd.Timestamp(path.stat().st_mtime - seconds, unit="s", tz="UTC")
    return JobHealth(job=str(record.get("job") or path.parent.parent.name),
                     run_id=str(record.get("run_id") or path.parent.name),
                     status="succeeded" if ok else "failed", started_at=started, seconds=seconds,
                     failed_tasks=[str(t.get("task_key")) for t in failed],
                     error="; ".join(f"{t.get('task_key')}: {t.get('error')}" for t in failed if t.get("error")))


def local_pipeline_health(runs_dir: Path) -> list[JobHealth]:
    """The latest run of each job under the local runner's ``runs_dir``, by job name."""
    latest: dict[str, JobHealth] = {}
    for path in sorted(Path(runs_dir).glob("*/*/run.json")):
        run = _local_run(path)
        if run is not None and (run.job not in latest or run.started_at > latest[run.job].started_at):
            latest[run.job] = run
    return [latest[j] for j in sorted(latest)]


def _on_databricks(settings: Settings) -> bool:
    return settings.engine == "spark" and bool(
        os.environ.get("DATABRICKS_RUNTIME_VERSION") or settings.mlflow_tracking_uri.startswith("databricks"))


def bundle_job_names(settings: Settings) -> dict[str, str] | None:
    """``{bundle job key: deployed job name}`` of this target's bundle, or None when no bundle is
    found from the working directory (a wheel task on Databricks runs outside it)."""
    from ragops.bundle import find_bundle_root, load_bundle

    root = find_bundle_root()
    if root is None:
        return None
    bundle = load_bundle(root, settings.target)
    return {key: str(spec.get("name") or key) for key, spec in sorted(bundle.jobs.items())}


def _key_of(deployed: str, target: str) -> str | None:
    """``[dev ann] ragops-rag-chain-dev`` → ``rag_chain_job`` (the bundle's naming,
    ``ragops-<words>-${bundle.target}``); None for a job that is not one of ours."""
    name = _DEPLOYED_NAME.match(deployed)["name"]
    prefix, suffix = "ragops-", f"-{target}"
    if not (name.startswith(prefix) and name.endswith(suffix)) or len(name) <= len(prefix) + len(suffix):
        return None
    return name[len(prefix):-len(suffix)].replace("-", "_") + "_job"


def _state_name(value: Any) -> str:
    return "" if value is None else str(getattr(value, "value", value))


def _databricks_run(key: str, run: Any) -> JobHealth:
    state = getattr(run, "state", None)
    result = _state_name(getattr(state, "result_state", None))
    if not result:  # newer runs may carry only the v2 status
        details = getattr(getattr(run, "status", None), "termination_details", None)
        result = _state_name(getattr(details, "code", None))
    ok = result in _DATABRICKS_OK
    tasks = getattr(run, "tasks", None) or []
    failed = [t.task_key for t in tasks
              if _state_name(getattr(getattr(t, "state", None), "result_state", None)) in _DATABRICKS_TASK_FAILED]
    start_ms = getattr(run, "start_time", None) or 0
    if getattr(run, "run_duration", None):
        seconds = run.run_duration / 1000
    elif getattr(run, "end_time", None) and start_ms:
        seconds = (run.end_time - start_ms) / 1000
    else:
        seconds = sum(getattr(run, k, None) or 0 for k in ("setup_duration", "execution_duration",
                                                           "cleanup_duration")) / 1000
    message = str(getattr(state, "state_message", "") or "")
    error = "" if ok else (f"{result or 'no result state'}: {message}" if message else result or "no result state")
    return JobHealth(job=key, run_id=str(run.run_id), status="succeeded" if ok else "failed",
                     started_at=pd.Timestamp(int(start_ms), unit="ms", tz="UTC"), seconds=float(seconds),
                     failed_tasks=failed, error=error)


def databricks_pipeline_health(settings: Settings, workspace, jobs: dict[str, str] | None = None) -> list[JobHealth]:
    """The latest completed run of each bundle job from the Jobs API. ``jobs`` maps the bundle's job
    keys to their deployed names (default: this target's bundle; without one, every workspace job
    named like ``ragops-<words>-<target>``)."""
    from ragops.workspace import call

    jobs = jobs if jobs is not None else bundle_job_names(settings)
    everything: list[Any] | None = None

    def all_jobs() -> list[Any]:
        nonlocal everything
        if everything is None:
            everything = list(call(workspace, "list the workspace's jobs", workspace.jobs.list))
        return everything

    found: dict[str, Any] = {}
    if jobs is None:
        for job in all_jobs():
            key = _key_of(getattr(job.settings, "name", "") or "", settings.target)
            if key and key not in found:
                found[key] = job
    else:
        for key, name in jobs.items():
            matches = list(call(workspace, f"find job {name!r}", workspace.jobs.list, name=name))
            if not matches:  # development mode prefixes "[dev <user>] "
                matches = [j for j in all_jobs()
                           if _DEPLOYED_NAME.match(getattr(j.settings, "name", "") or "")["name"] == name]
            if matches:
                found[key] = matches[0]
            else:
                log.info("pipeline health: job %s (%r) is not deployed in this workspace", key, name)
    out = []
    for key in sorted(found):
        runs = call(workspace, f"list the runs of job {key}", workspace.jobs.list_runs, job_id=found[key].job_id,
                    limit=1, completed_only=True, expand_tasks=True)
        latest = next(iter(runs), None)
        if latest is not None:
            out.append(_databricks_run(key, latest))
    return out


def pipeline_health(settings: Settings, *, runs_dir: Path | None = None, workspace=None) -> list[JobHealth]:
    """The latest run of each bundle job, sorted by job: from the Jobs API when ``workspace`` is
    given or the job runs on Databricks, else from the local runner's records in ``runs_dir``
    (default :func:`default_runs_dir`)."""
    if workspace is None and _on_databricks(settings) and runs_dir is None:
        from ragops.workspace import workspace_client

        workspace = workspace_client(purpose="the monitor job cannot read the bundle jobs' runs")
    if workspace is not None:
        return databricks_pipeline_health(settings, workspace)
    return local_pipeline_health(runs_dir or default_runs_dir(settings))


def pipeline_metrics(jobs: list[JobHealth], *, window_start, window_end, now) -> list[dict[str, Any]]:
    """``job_failed:<job>``, ``job_duration_s:<job>`` and ``job_age_s:<job>`` per job (route "")."""
    now = _ts(now)
    rows = []
    for j in jobs:
        state = {"run_id": j.run_id, "status": j.status, "started_at": _iso(j.started_at),
                 "failed_tasks": j.failed_tasks, "error": j.error[:500]}
        rows += [
            metric_row(window_start, window_end, f"job_failed:{j.job}", 1.0 if j.status == "failed" else 0.0,
                       state=state),
            metric_row(window_start, window_end, f"job_duration_s:{j.job}", j.seconds, state=state),
            metric_row(window_start, window_end, f"job_age_s:{j.job}",
                       max(0.0, (now - j.started_at).total_seconds()), state=state),
        ]
    return rows


def rejected_metrics(lh, *, window_start, window_end) -> list[dict[str, Any]]:
    """``rejected_documents:<reason_code>``: documents rejected in [window_start, window_end), one
    row for every reason the table holds (0 when none in the window, so an alert on it can clear)."""
    if not lh.exists("rejected_documents"):
        return []
    rejected = lh.read("rejected_documents", ["source_uri", "reason_code", "rejected_at"])
    if rejected.empty:
        return []
    start, end = _ts(window_start), _ts(window_end)
    at = pd.to_datetime(rejected["rejected_at"], utc=True)
    in_window = rejected[(at >= start) & (at < end)]
    counts = in_window.groupby("reason_code").size()
    rows = []
    for reason in sorted(set(rejected["reason_code"])):
        n = int(counts.get(reason, 0))
        sample = sorted(in_window.loc[in_window["reason_code"] == reason, "source_uri"])[:SAMPLE_SIZE]
        rows.append(metric_row(window_start, window_end, f"rejected_documents:{reason}", n, n,
                               state={"sample": sample} if sample else None))
    return rows


__all__ = [
    "Freshness",
    "JobHealth",
    "bundle_job_names",
    "databricks_pipeline_health",
    "default_runs_dir",
    "freshness_metrics",
    "index_freshness",
    "local_pipeline_health",
    "pipeline_health",
    "pipeline_metrics",
    "rejected_metrics",
]
