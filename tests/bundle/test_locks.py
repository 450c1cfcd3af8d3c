"""max_concurrent_runs: a second run of a job on the same root fails at once, across processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ragops.bundle import JobLocked, load_bundle, run_job
from ragops.bundle.locks import job_slot
from tests.bundle.test_validate import add_jobs, bundle_copy  # noqa: F401 - fixture re-export

QUICK = [{"task_key": "check", "condition_task": {"op": "EQUAL_TO", "left": "1", "right": "1"}}]


@pytest.fixture
def lock_bundle(bundle_copy):  # noqa: F811
    add_jobs(bundle_copy, {
        "one_job": {"max_concurrent_runs": 1, "tasks": QUICK},
        "two_job": {"max_concurrent_runs": 2, "tasks": QUICK},
        "outer_job": {"max_concurrent_runs": 1, "tasks": [
            {"task_key": "inner", "run_job_task": {"job_id": "${resources.jobs.one_job.id}"}}]},
    })
    return bundle_copy


def hold_in_subprocess(job: str, root: Path, limit: int = 1) -> subprocess.Popen:
    code = (f"import sys, time\nfrom ragops.bundle.locks import job_slot\n"
            f"with job_slot({job!r}, {str(root)!r}, {limit}):\n    print('held', flush=True)\n    time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_run_fails_at_once_naming_the_holder_and_a_killed_holder_frees_the_slot(lock_bundle, tmp_path):
    root = lock_bundle / ".ragops"
    holder = hold_in_subprocess("one_job", root)
    try:
        started = time.monotonic()
        with pytest.raises(JobLocked, match=rf"one_job is already running on {root} \(max_concurrent_runs: 1, "
                                            rf"held by pid {holder.pid} since .*\); wait for it or pass --var root="):
            run_job(load_bundle(lock_bundle), "one_job", runs_dir=tmp_path / "runs")
        assert time.monotonic() - started < 5  # fails fast, does not wait
    finally:
        holder.send_signal(signal.SIGKILL)  # a crashed holder: the OS drops its flock
        holder.wait(timeout=10)
    assert run_job(load_bundle(lock_bundle), "one_job", runs_dir=tmp_path / "runs").ok


def test_the_cli_refuses_a_concurrent_run_with_one_line(lock_bundle):
    with job_slot("one_job", lock_bundle / ".ragops", 1):
        out = subprocess.run([sys.executable, "-m", "ragops.cli.main", "bundle", "run", "one_job"], cwd=lock_bundle,
                             capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "200"})
    assert out.returncode != 0
    assert "one_job is already running on" in out.stderr and "Traceback" not in out.stderr
    assert str(os.getpid()) in out.stderr


def test_max_concurrent_runs_counts_slots_and_roots_are_independent(lock_bundle, tmp_path):
    bundle = load_bundle(lock_bundle)
    root = lock_bundle / ".ragops"
    with job_slot("two_job", root, 2):
        assert run_job(bundle, "two_job", runs_dir=tmp_path / "runs").ok  # the second slot
        with job_slot("two_job", root, 2), pytest.raises(JobLocked, match="max_concurrent_runs: 2"):
            run_job(bundle, "two_job", runs_dir=tmp_path / "runs")
    with job_slot("one_job", tmp_path / "other_root", 1):
        assert run_job(bundle, "one_job", runs_dir=tmp_path / "runs").ok  # another root, another lock


def test_a_nested_run_takes_the_child_jobs_own_slot(lock_bundle, tmp_path):
    bundle = load_bundle(lock_bundle)
    with job_slot("one_job", lock_bundle / ".ragops", 1):
        run = run_job(bundle, "outer_job", runs_dir=tmp_path / "runs")
    assert not run.ok and "JobLocked: one_job is already running" in run.tasks[0].error
    assert run_job(bundle, "outer_job", runs_dir=tmp_path / "runs").ok
