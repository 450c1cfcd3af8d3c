"""Index freshness and pipeline health, on a real pipeline state and real run records.

Freshness runs the real indexing pipeline on a small corpus in tmp_path (ingest → chunk → embed →
index sync), then ingests one more document without syncing: that is the stale index a user would
notice as "my new document is not found". The champion's snapshot is found through a real sqlite
MLflow registry. Pipeline health reads run records the local runner's own dataclasses write; the
Jobs API side runs against a small fake workspace built from databricks-sdk's own types (no
workspace can be reached from here: the fake is that edge).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest
from databricks.sdk.service import jobs as dbx

from ragops.bundle.runner import JobRun, TaskRun
from ragops.chunking import run_chunking
from ragops.config import Settings
from ragops.embedding.embed import run_embedding
from ragops.index import SnapshotStore, run_index_sync
from ragops.ingest import run_ingest
from ragops.lakehouse import open_lakehouse
from ragops.lakehouse.schemas import utcnow
from ragops.monitoring.catalog import metrics_frame
from ragops.monitoring.health import (
    Freshness,
    databricks_pipeline_health,
    freshness_metrics,
    index_freshness,
    pipeline_health,
    pipeline_metrics,
    rejected_metrics,
)
from tests.conftest import run_pipeline

NEW_DOC = "guides/zebra.md"
W0, W1 = pd.Timestamp("2026-12-01T10:00:00Z"), pd.Timestamp("2026-12-01T11:00:00Z")


def by_metric(rows: list[dict]) -> dict[str, dict]:
    return {r["metric"]: r for r in rows}


@pytest.fixture
def indexed(small_corpus, make_settings):
    settings = make_settings(source_path=str(small_corpus))
    run_pipeline(settings)
    with open_lakehouse(settings) as lh:
        yield small_corpus, settings, lh


def ingest_without_sync(corpus: Path, lh, settings) -> None:
    (corpus / NEW_DOC).write_text("# Zebra mode\n\nZebra mode stripes shards across racks.\n")
    run_ingest(lh, settings)
    run_chunking(lh, settings)
    run_embedding(lh, settings)


def register_champion(settings, manifest) -> None:
    """A registry version with the lineage tags log_chain writes, aliased @champion."""
    from ragops.tracking import configure_mlflow

    client = configure_mlflow(settings, experiment=False)
    client.create_registered_model(settings.registered_model_name)
    mv = client.create_model_version(settings.registered_model_name, source=str(settings.root / "model"),
                                     tags={"index_snapshot": manifest.snapshot_id,
                                           "index_source_version": str(manifest.source_version)})
    client.set_registered_model_alias(settings.registered_model_name, "champion", mv.version)


def test_a_document_ingested_after_the_snapshot_is_unsearchable_until_the_sync(indexed):
    corpus, settings, lh = indexed
    fresh = index_freshness(lh, settings)
    assert fresh.serving == "current snapshot"
    assert (fresh.lag_versions, fresh.lag_seconds, fresh.unsearchable_documents) == (0, 0.0, 0)
    assert fresh.snapshot_source_version == fresh.embeddings_version

    ingest_without_sync(corpus, lh, settings)
    now = utcnow() + pd.Timedelta(minutes=10)
    stale = index_freshness(lh, settings, now=now)
    assert stale.snapshot_id == fresh.snapshot_id
    assert stale.lag_versions >= 1 and stale.embeddings_version == fresh.embeddings_version + stale.lag_versions
    assert 600 <= stale.lag_seconds < 600 + 120
    assert (stale.unsearchable_documents, stale.unsearchable_sample) == (1, [NEW_DOC])
    assert stale.embeddings_committed_at > stale.snapshot_built_at

    rows = by_metric(freshness_metrics(stale, window_start=W0, window_end=W1))
    assert rows["index_lag_versions"]["value"] == stale.lag_versions
    assert rows["unsearchable_documents"]["value"] == 1
    assert json.loads(rows["unsearchable_documents"]["state"])["sample"] == [NEW_DOC]
    assert len(metrics_frame(list(rows.values()))) == 3  # the monitoring_metrics schema takes them

    run_index_sync(lh, settings)
    synced = index_freshness(lh, settings, now=now)
    assert (synced.lag_versions, synced.lag_seconds, synced.unsearchable_documents) == (0, 0.0, 0)
    assert synced.snapshot_id != fresh.snapshot_id
    json.dumps(synced.to_dict())  # what the run record and the dashboard store


def test_the_champions_snapshot_is_what_serves_even_after_a_newer_sync(indexed):
    corpus, settings, lh = indexed
    store = SnapshotStore(settings.index_root)
    champion = store.manifest()
    register_champion(settings, champion)
    ingest_without_sync(corpus, lh, settings)
    run_index_sync(lh, settings)  # CURRENT moves on; the champion still serves its packed snapshot

    f = index_freshness(lh, settings)
    assert (f.serving, f.snapshot_id) == ("champion", champion.snapshot_id)
    assert f.snapshot_source_version == champion.source_version
    assert f.lag_versions >= 1 and f.unsearchable_sample == [NEW_DOC]

    store.prune(keep=1)  # the champion's snapshot leaves the store: its documents come from embeddings
    assert not (store.snapshots / champion.snapshot_id).exists()
    pruned = index_freshness(lh, settings)
    assert (pruned.serving, pruned.unsearchable_sample, pruned.snapshot_built_at) == ("champion", [NEW_DOC], None)


def test_nothing_indexed_yet_says_none(make_settings):
    settings = make_settings()
    with open_lakehouse(settings) as lh:
        f = index_freshness(lh, settings)
        assert f == Freshness(None, None, None, None, None, "none", None, None, 0, [])
        lh.ensure_table("embeddings")  # created, nothing embedded yet: not behind on anything
        empty = index_freshness(lh, settings)
    assert (empty.serving, empty.embeddings_version, empty.lag_versions, empty.lag_seconds) == ("none", 0, 0, 0.0)
    assert not (settings.root / "mlflow.db").exists()  # looking for a champion created no registry


# --- pipeline health ----------------------------------------------------------------------------

def write_run(runs: Path, job: str, run_id: str, tasks: list[TaskRun], *, ended: pd.Timestamp) -> None:
    run = JobRun(job, "local", run_id, {"root": "/state"}, tasks, seconds=round(sum(t.seconds for t in tasks), 2))
    path = runs / job / run_id / "run.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(run.to_dict(), indent=2, default=str))  # as the runner writes it
    os.utime(path, (ended.timestamp(), ended.timestamp()))


@pytest.fixture
def runs(tmp_path) -> Path:
    runs = tmp_path / ".ragops" / "runs"
    # the older run sorts last by its id: only the start time can tell which is latest
    write_run(runs, "ingest_job", "zzz999", [TaskRun("ingest", "succeeded", 5.0), TaskRun("embed", "failed", 2.0,
              error="RuntimeError: out of disk")], ended=pd.Timestamp("2026-12-01T08:00:00Z"))
    write_run(runs, "ingest_job", "bbb222", [TaskRun("ingest", "succeeded", 4.0), TaskRun("embed", "succeeded", 6.0)],
              ended=pd.Timestamp("2026-12-01T09:00:00Z"))
    write_run(runs, "evaluate_job", "ccc333",
              [TaskRun("evaluate", "failed", 30.0, error="GateFailed: faithfulness 0.61 < 0.7"),
               TaskRun("promote", "skipped", 0.0, error="upstream evaluate failed")],
              ended=pd.Timestamp("2026-12-01T09:30:00Z"))
    (runs / "deploy_job" / "ddd444").mkdir(parents=True)
    (runs / "deploy_job" / "ddd444" / "run.json").write_text('{"job": "deploy_job", "tasks": [')  # cut short
    return runs


def test_latest_run_per_job_with_status_start_and_failed_tasks(runs):
    health = {j.job: j for j in pipeline_health(Settings(), runs_dir=runs)}
    assert sorted(health) == ["evaluate_job", "ingest_job"]  # the unreadable record is skipped
    ingest, evaluate = health["ingest_job"], health["evaluate_job"]
    assert (ingest.run_id, ingest.status, ingest.seconds) == ("bbb222", "succeeded", 10.0)
    assert ingest.started_at == pd.Timestamp("2026-12-01T08:59:50Z")  # the record's mtime less its seconds
    assert (evaluate.status, evaluate.failed_tasks) == ("failed", ["evaluate"])
    assert "faithfulness 0.61" in evaluate.error
    assert json.loads(json.dumps(evaluate.to_dict()))["started_at"] == "2026-12-01T09:29:30+00:00"


def test_pipeline_metrics_say_which_job_failed_how_long_and_how_long_ago(runs):
    now = pd.Timestamp("2026-12-01T10:00:00Z")
    rows = by_metric(pipeline_metrics(pipeline_health(Settings(), runs_dir=runs), window_start=W0, window_end=W1,
                                      now=now))
    assert rows["job_failed:evaluate_job"]["value"] == 1.0 and rows["job_failed:ingest_job"]["value"] == 0.0
    assert rows["job_duration_s:evaluate_job"]["value"] == 30.0
    assert rows["job_age_s:ingest_job"]["value"] == 3610.0
    assert json.loads(rows["job_failed:evaluate_job"]["state"])["failed_tasks"] == ["evaluate"]
    assert len(metrics_frame(list(rows.values()))) == 6


def test_runs_dir_defaults_to_monitor_jobs_root_then_the_bundle_root(runs, tmp_path, monkeypatch):
    by_setting = pipeline_health(Settings.from_variables({"monitor_jobs_root": str(runs)}))
    assert {j.job for j in by_setting} == {"evaluate_job", "ingest_job"}
    monkeypatch.chdir(tmp_path)  # <bundle root>/.ragops/runs
    assert {j.job for j in pipeline_health(Settings())} == {"evaluate_job", "ingest_job"}


class FakeJobs:
    """``WorkspaceClient().jobs``: list and list_runs over fixed SDK objects, and the calls made."""

    def __init__(self, jobs: list[dbx.BaseJob], runs: dict[int, list[dbx.BaseRun]]) -> None:
        self.jobs, self.runs, self.calls = jobs, runs, []

    def list(self, *, name: str | None = None, **kwargs):
        self.calls.append(("list", name))
        return iter([j for j in self.jobs if name is None or j.settings.name.lower() == name.lower()])

    def list_runs(self, *, job_id: int, limit: int | None = None, completed_only: bool | None = None, **kwargs):
        self.calls.append(("list_runs", job_id, limit, completed_only))
        return iter(self.runs.get(job_id, [])[:limit])


class FakeWorkspace:
    def __init__(self, jobs: FakeJobs) -> None:
        self.jobs = jobs


@pytest.fixture
def workspace() -> FakeWorkspace:
    start = int(pd.Timestamp("2026-12-01T09:00:00Z").timestamp() * 1000)
    failed = dbx.BaseRun(
        run_id=9001, start_time=start, end_time=start + 95_000, run_duration=95_000,
        state=dbx.RunState(life_cycle_state=dbx.RunLifeCycleState.TERMINATED, result_state=dbx.RunResultState.FAILED,
                           state_message="Task embed failed with message: CUDA out of memory."),
        tasks=[dbx.RunTask(task_key="ingest", state=dbx.RunState(result_state=dbx.RunResultState.SUCCESS)),
               dbx.RunTask(task_key="embed", state=dbx.RunState(result_state=dbx.RunResultState.FAILED)),
               dbx.RunTask(task_key="index_sync",
                           state=dbx.RunState(result_state=dbx.RunResultState.UPSTREAM_FAILED))])
    ok = dbx.BaseRun(run_id=9002, start_time=start - 3_600_000, setup_duration=10_000, execution_duration=50_000,
                     cleanup_duration=0, state=dbx.RunState(result_state=dbx.RunResultState.SUCCESS),
                     tasks=[dbx.RunTask(task_key="evaluate",
                                        state=dbx.RunState(result_state=dbx.RunResultState.SUCCESS))])
    jobs = [dbx.BaseJob(job_id=11, settings=dbx.JobSettings(name="[dev ann] ragops-ingest-dev")),
            dbx.BaseJob(job_id=12, settings=dbx.JobSettings(name="ragops-evaluate-dev")),
            dbx.BaseJob(job_id=13, settings=dbx.JobSettings(name="someone-elses-job"))]
    return FakeWorkspace(FakeJobs(jobs, {11: [failed], 12: [ok]}))


def test_jobs_api_latest_completed_run_maps_result_states(workspace):
    settings = Settings.from_variables({"target": "dev", "engine": "spark"})
    names = {"ingest_job": "ragops-ingest-dev", "evaluate_job": "ragops-evaluate-dev", "deploy_job": "ragops-deploy-dev"}
    health = {j.job: j for j in databricks_pipeline_health(settings, workspace, jobs=names)}
    assert sorted(health) == ["evaluate_job", "ingest_job"]  # deploy_job is not deployed: no row
    ingest = health["ingest_job"]
    assert (ingest.run_id, ingest.status, ingest.seconds, ingest.failed_tasks) == ("9001", "failed", 95.0, ["embed"])
    assert ingest.error.startswith("FAILED: ") and "CUDA out of memory" in ingest.error
    assert ingest.started_at == pd.Timestamp("2026-12-01T09:00:00Z")
    evaluate = health["evaluate_job"]
    assert (evaluate.status, evaluate.seconds, evaluate.error) == ("succeeded", 60.0, "")
    assert ("list_runs", 11, 1, True) in workspace.jobs.calls  # one latest completed run per job


def test_without_a_bundle_our_jobs_are_found_by_their_deployed_names(workspace, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no databricks.yml here or above: as a wheel task on Databricks
    settings = Settings.from_variables({"target": "dev", "engine": "spark"})
    health = pipeline_health(settings, workspace=workspace)
    assert [(j.job, j.status) for j in health] == [("evaluate_job", "succeeded"), ("ingest_job", "failed")]


# --- rejected documents -------------------------------------------------------------------------

def test_rejected_documents_by_reason_in_the_window(make_settings):
    settings = make_settings()
    rows = pd.DataFrame([
        {"source_uri": "file:///c/a.bin", "reason_code": "binary", "rejected_at": W0 + pd.Timedelta(minutes=5)},
        {"source_uri": "file:///c/b.bin", "reason_code": "binary", "rejected_at": W0 + pd.Timedelta(minutes=50)},
        {"source_uri": "file:///c/e.md", "reason_code": "empty", "rejected_at": W0 - pd.Timedelta(minutes=1)},
        {"source_uri": "file:///c/x.pdf", "reason_code": "parse_error", "rejected_at": W1},  # next window
    ]).assign(source="file:///c", format="bin", reason="cannot be read", size_bytes=10)
    rows["rejected_at"] = pd.to_datetime(rows["rejected_at"], utc=True)
    with open_lakehouse(settings) as lh:
        assert rejected_metrics(lh, window_start=W0, window_end=W1) == []  # no table yet
        lh.upsert("rejected_documents", rows)
        got = by_metric(rejected_metrics(lh, window_start=W0, window_end=W1))
    assert {m: r["value"] for m, r in got.items()} == {
        "rejected_documents:binary": 2, "rejected_documents:empty": 0, "rejected_documents:parse_error": 0}
    assert json.loads(got["rejected_documents:binary"]["state"])["sample"] == ["file:///c/a.bin", "file:///c/b.bin"]
