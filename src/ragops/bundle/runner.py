"""``ragops bundle run``: run a job's tasks locally, in dependency order, like a Databricks job run.

``python_wheel_task`` tasks call the package's console-script entry point in-process with the
task's ``named_parameters`` as ``--name=value`` arguments (what Databricks does); ``notebook_task``
tasks execute through papermill with ``base_parameters``. ``{{job.parameters.*}}`` references take
the job parameter defaults (which reference bundle variables) or ``--param`` overrides.
A failed task fails the run; tasks that depend on it are skipped.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import sys
import time
import traceback
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ragops.bundle.loader import Bundle, BundleError
from ragops.bundle.validate import _DYNAMIC, entry_point_target, notebook_file, validate_bundle

log = logging.getLogger("ragops.bundle")


@dataclass
class TaskRun:
    task_key: str
    status: str = "pending"  # pending | succeeded | failed | skipped
    seconds: float = 0.0
    summary: Any = None
    error: str = ""
    output_notebook: str = ""


@dataclass
class JobRun:
    job: str
    target: str
    run_id: str
    parameters: dict[str, str]
    tasks: list[TaskRun] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return all(t.status == "succeeded" for t in self.tasks)

    @property
    def failed(self) -> list[TaskRun]:
        return [t for t in self.tasks if t.status == "failed"]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def task_order(tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Topological order, stable with respect to declaration order."""
    by_key = {t["task_key"]: t for t in tasks}
    done: list[str] = []
    pending = [t["task_key"] for t in tasks]
    while pending:
        for key in pending:
            deps = [d["task_key"] if isinstance(d, dict) else d for d in by_key[key].get("depends_on") or []]
            if all(d in done for d in deps):
                done.append(key)
                pending.remove(key)
                break
        else:
            raise BundleError(f"tasks {pending} have unsatisfiable dependencies (a cycle?)")
    return [by_key[k] for k in done]


def _resolve_dynamic(value: Any, context: Mapping[str, str]) -> Any:
    if isinstance(value, dict):
        return {k: _resolve_dynamic(v, context) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve_dynamic(v, context) for v in value]
    if isinstance(value, str):
        return _DYNAMIC.sub(lambda m: str(context.get(m.group(1).strip(), m.group(0))), value)
    return value


class _Tee(io.TextIOBase):
    def __init__(self, stream) -> None:
        self.stream, self.lines = stream, io.StringIO()

    def write(self, s: str) -> int:
        self.lines.write(s)
        return self.stream.write(s)

    def flush(self) -> None:
        self.stream.flush()


def _last_summary(text: str) -> Any:
    for line in reversed(text.strip().splitlines()):
        with contextlib.suppress(ValueError):
            obj = json.loads(line)
            if isinstance(obj, dict) and "summary" in obj:
                return obj["summary"]
    return None


def run_job(bundle: Bundle, job_name: str, params: Mapping[str, str] | None = None,
            *, runs_dir: Path | None = None, on_task=None) -> JobRun:
    job = bundle.job(job_name)
    issues = [i for i in validate_bundle(bundle) if f"resources.jobs.{job_name}" in i.key or "resources" not in i.key]
    if issues:
        raise BundleError("the bundle does not validate:\n  " + "\n  ".join(map(str, issues)))
    declared = {p["name"]: "" if p.get("default") is None else str(p["default"]) for p in job.get("parameters") or []}
    unknown = set(params or {}) - set(declared)
    if unknown:
        raise BundleError(f"job {job_name!r} has no parameters {sorted(unknown)}; it has {sorted(declared)}")
    job_params = {**declared, **{k: str(v) for k, v in (params or {}).items()}}
    run = JobRun(job_name, bundle.target, uuid.uuid4().hex[:12], job_params)
    file = bundle.sources.get(f"jobs.{job_name}", "databricks.yml")
    runs_dir = runs_dir or Path(bundle.root) / ".ragops" / "runs"
    out_dir = runs_dir / job_name / run.run_id
    started = time.perf_counter()
    ordered = task_order(job["tasks"])
    run.tasks = [TaskRun(t["task_key"]) for t in ordered]
    status = {t.task_key: t for t in run.tasks}
    cwd = os.getcwd()
    os.chdir(bundle.root)  # relative paths in parameters are relative to the bundle root, as in the CLI
    try:
        for task in ordered:
            tr = status[task["task_key"]]
            deps = [d["task_key"] if isinstance(d, dict) else d for d in task.get("depends_on") or []]
            if any(status[d].status != "succeeded" for d in deps):
                tr.status = "skipped"
                tr.error = "upstream task did not succeed"
                if on_task:
                    on_task(tr)
                continue
            context = {f"job.parameters.{k}": v for k, v in job_params.items()}
            context.update({"job.name": job_name, "job.id": "local", "job.run_id": run.run_id,
                            "task.name": task["task_key"], "task.run_id": f"{run.run_id}-{task['task_key']}"})
            resolved = _resolve_dynamic(task, context)
            log.info("▶ %s.%s", job_name, tr.task_key)
            t0 = time.perf_counter()
            try:
                if "python_wheel_task" in resolved:
                    body = resolved["python_wheel_task"]
                    argv = [f"--{k}={v}" for k, v in (body.get("named_parameters") or {}).items()]
                    argv += [str(a) for a in body.get("parameters") or []]
                    fn = entry_point_target(body["package_name"], body["entry_point"])
                    tee = _Tee(sys.stdout)
                    with contextlib.redirect_stdout(tee):
                        try:
                            rc = fn(argv)
                        except SystemExit as exc:
                            rc = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
                            if exc.code not in (None, 0) and not isinstance(exc.code, int):
                                tr.error = str(exc.code)
                    tr.summary = _last_summary(tee.lines.getvalue())
                    if rc not in (None, 0):
                        raise RuntimeError(tr.error or f"entry point {body['entry_point']} exited with {rc}")
                elif "notebook_task" in resolved:
                    body = resolved["notebook_task"]
                    nb = notebook_file(bundle, file, body["notebook_path"])
                    tr.output_notebook = str(run_notebook(nb, out_dir / f"{tr.task_key}.ipynb",
                                                          body.get("base_parameters") or {}, bundle.root))
                else:
                    raise BundleError(f"task {tr.task_key!r}: only python_wheel_task and notebook_task run locally")
                tr.status = "succeeded"
            except Exception as exc:  # a task failure must not take the runner down
                tr.status = "failed"
                tr.error = tr.error or f"{type(exc).__name__}: {exc}"
                log.error("✗ %s.%s failed: %s", job_name, tr.task_key, tr.error)
                log.debug("%s", traceback.format_exc())
            tr.seconds = round(time.perf_counter() - t0, 2)
            if on_task:
                on_task(tr)
    finally:
        os.chdir(cwd)
    run.seconds = round(time.perf_counter() - started, 2)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "run.json").write_text(json.dumps(run.to_dict(), indent=2, default=str))
    return run


def run_notebook(path: Path, output: Path, parameters: Mapping[str, Any], cwd: Path) -> Path:
    """Execute a notebook with papermill (the parameters cell is tagged ``parameters``)."""
    import papermill as pm

    output.parent.mkdir(parents=True, exist_ok=True)
    pm.execute_notebook(
        str(path), str(output), parameters=dict(parameters), kernel_name="python3", language="python", cwd=str(cwd),
        progress_bar=False, log_output=False,
    )
    return output
