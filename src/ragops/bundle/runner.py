"""``ragops bundle run``: run a job's tasks locally, in dependency order, like a Databricks job run.

``python_wheel_task`` tasks call the package's console-script entry point in-process with the
task's ``named_parameters`` as ``--name=value`` arguments (what Databricks does); ``notebook_task``
tasks execute through papermill with ``base_parameters``. ``{{job.parameters.*}}`` references take
the job parameter defaults (which reference bundle variables) or ``--param`` overrides.
A failed task fails the run; tasks that depend on it are skipped.

Job parameter pushdown, as Databricks does it ("Configure job parameters" → "Job parameter
pushdown"): the job's parameters are passed to every task that accepts key-value parameters, and
win over a task parameter with the same key — a ``python_wheel_task`` configured with keyword
arguments (a non-empty ``named_parameters``; one with only positional ``parameters`` gets
nothing), a ``notebook_task`` (into ``base_parameters``), and a ``run_job_task``, whose child job
receives the parent's parameters that it declares, on top of the task's own ``job_parameters``.
So a task lists only what is specific to it (:func:`pushed_down`).

``max_concurrent_runs`` (unset = 1, as in the Jobs API) is honoured per job and state root with
``flock``-ed slot files under ``<root>/runs/locks/`` (:mod:`ragops.bundle.locks`). A run over the
limit **fails at once** with :class:`~ragops.bundle.locks.JobLocked` naming the holder's pid and
start time, rather than waiting: a queued local run would look hung, and Databricks skips such a
run unless queueing is on. A nested ``run_job_task`` run takes a slot of its own job, so running
rag_chain_job while evaluate_job runs on the same root fails its ``evaluate`` task.

Control flow follows the Databricks Jobs semantics: a ``condition_task`` compares ``left`` and
``right`` (as numbers when both parse, else as strings) and its outcome decides which dependants
run (``depends_on: [{task_key, outcome: "true"}]``); the others are *excluded*, which does not
fail the run. A ``run_job_task`` runs another job of the bundle (``${resources.jobs.<name>.id}``)
with its ``job_parameters``, as a nested run, and fails when that run fails.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import sys
import time
import traceback
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from ragops.bundle.loader import Bundle, BundleError
from ragops.bundle.locks import job_slot
from ragops.bundle.validate import (
    _DYNAMIC,
    CONDITION_OPS,
    bundle_job_of,
    entry_point_target,
    notebook_file,
    validate_bundle,
)

log = logging.getLogger("ragops.bundle")


@dataclass
class TaskRun:
    task_key: str
    status: str = "pending"  # pending | succeeded | failed | skipped (upstream failed) | excluded (by a condition)
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
        return all(t.status in ("succeeded", "excluded") for t in self.tasks)

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


def condition_outcome(op: str, left: Any, right: Any) -> bool:
    """A ``condition_task``: numbers compare as numbers, anything else as strings (equality only)."""
    try:
        a, b = float(left), float(right)
    except (TypeError, ValueError):
        a, b = str(left), str(right)
        if op not in ("EQUAL_TO", "NOT_EQUAL"):
            raise BundleError(f"condition {left!r} {op} {right!r}: {op} needs two numbers") from None
    return CONDITION_OPS[op](a, b)


class _Tee(io.TextIOBase):
    """Writes through to ``stream`` and records what a task wrote while ``recording`` (a log handler
    created during the task may keep this object as its stream after the task ended)."""

    def __init__(self, stream) -> None:
        self.stream, self.lines, self.recording = stream, io.StringIO(), True

    def write(self, s: str) -> int:
        if self.recording:
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


def pushed_down(task: Mapping[str, Any], job_params: Mapping[str, str]) -> dict[str, Any]:
    """``task`` (its ``{{…}}`` references resolved) with the job parameters pushed down into its
    key-value parameters, job parameters winning (see the module docstring)."""
    out = dict(task)
    if isinstance(out.get("python_wheel_task"), Mapping) and out["python_wheel_task"].get("named_parameters"):
        body = dict(out["python_wheel_task"])
        body["named_parameters"] = {**body["named_parameters"], **job_params}
        out["python_wheel_task"] = body
    elif isinstance(out.get("notebook_task"), Mapping):
        body = dict(out["notebook_task"])
        body["base_parameters"] = {**(body.get("base_parameters") or {}), **job_params}
        out["notebook_task"] = body
    return out


def state_root(bundle: Bundle, job_params: Mapping[str, str]) -> Path:
    """The state root a run works on (its ``root`` parameter, else the bundle's): what its lock is per."""
    root = Path(os.path.expanduser(str(job_params.get("root") or bundle.variables.get("root") or ".ragops")))
    return (root if root.is_absolute() else Path(bundle.root) / root).resolve()


def run_job(bundle: Bundle, job_name: str, params: Mapping[str, str] | None = None,
            *, runs_dir: Path | None = None, on_task=None, _callers: tuple[str, ...] = ()) -> JobRun:
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
    with job_slot(job_name, state_root(bundle, job_params), job.get("max_concurrent_runs"), run.run_id):
        return _run(bundle, job_name, job, run, runs_dir, on_task, _callers)


def _run(bundle: Bundle, job_name: str, job: Mapping[str, Any], run: JobRun, runs_dir: Path | None, on_task,
         _callers: tuple[str, ...]) -> JobRun:
    job_params = run.parameters
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
            blocked = _blocked(task, status)
            if blocked:
                tr.status, tr.error = blocked
                if on_task:
                    on_task(tr)
                continue
            context = {f"job.parameters.{k}": v for k, v in job_params.items()}
            context.update({"job.name": job_name, "job.id": "local", "job.run_id": run.run_id,
                            "task.name": task["task_key"], "task.run_id": f"{run.run_id}-{task['task_key']}"})
            resolved = pushed_down(_resolve_dynamic(task, context), job_params)
            log.info("▶ %s.%s", job_name, tr.task_key)
            t0 = time.perf_counter()
            try:
                if "python_wheel_task" in resolved:
                    _run_wheel_task(resolved["python_wheel_task"], tr)
                elif "notebook_task" in resolved:
                    body = resolved["notebook_task"]
                    nb = notebook_file(bundle, file, body["notebook_path"])
                    tr.output_notebook = str(run_notebook(nb, out_dir / f"{tr.task_key}.ipynb",
                                                          body.get("base_parameters") or {}, bundle.root))
                elif "condition_task" in resolved:
                    body = resolved["condition_task"]
                    outcome = condition_outcome(body["op"], body["left"], body["right"])
                    tr.summary = {"outcome": str(outcome).lower(), "left": body["left"], "op": body["op"],
                                  "right": body["right"]}
                elif "run_job_task" in resolved:
                    _run_child_job(bundle, resolved["run_job_task"], job_params, tr, runs_dir, on_task,
                                   (*_callers, job_name))
                else:
                    raise BundleError(f"task {tr.task_key!r}: only python_wheel_task, notebook_task, "
                                      "condition_task and run_job_task run locally")
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


def _blocked(task: dict[str, Any], status: Mapping[str, TaskRun]) -> tuple[str, str] | None:
    """(status, reason) when ``task`` must not run: an upstream task failed or was skipped
    (skipped), or was excluded or a condition took the other branch (excluded)."""
    excluded = None
    for dep in task.get("depends_on") or []:
        key = dep["task_key"] if isinstance(dep, dict) else dep
        up = status[key]
        if up.status in ("failed", "skipped"):
            return "skipped", f"upstream task {key!r} did not succeed"
        if up.status == "excluded":
            excluded = f"upstream task {key!r} was excluded"
        elif isinstance(dep, dict) and "outcome" in dep and (up.summary or {}).get("outcome") != str(dep["outcome"]):
            excluded = f"condition {key!r} was {(up.summary or {}).get('outcome')}"
    return ("excluded", excluded) if excluded else None


_LOG_LINE = re.compile(r"^\d\d:\d\d:\d\d (DEBUG|INFO|WARNING|ERROR|CRITICAL)\s")


def _last_message(text: str) -> str:
    """The last line a failed entry point wrote on stderr that is not a log record: its one-line
    error (``ingest: source_path … does not exist``), as Databricks shows a task's error output."""
    for line in reversed(text.strip().splitlines()):
        if line.strip() and not _LOG_LINE.match(line):
            return line.strip()
    return ""


def _run_wheel_task(body: Mapping[str, Any], tr: TaskRun) -> None:
    argv = [f"--{k}={v}" for k, v in (body.get("named_parameters") or {}).items()]
    argv += [str(a) for a in body.get("parameters") or []]
    fn = entry_point_target(body["package_name"], body["entry_point"])
    out, err = _Tee(sys.stdout), _Tee(sys.stderr)
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = fn(argv)
        except SystemExit as exc:
            rc = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            if exc.code not in (None, 0) and not isinstance(exc.code, int):
                tr.error = str(exc.code)
        finally:
            out.recording = err.recording = False
    tr.summary = _last_summary(out.lines.getvalue())
    if rc not in (None, 0):
        tr.error = tr.error or _last_message(err.lines.getvalue())
        raise RuntimeError(tr.error or f"entry point {body['entry_point']} exited with {rc}")


def _run_child_job(bundle: Bundle, body: Mapping[str, Any], parent_params: Mapping[str, str], tr: TaskRun,
                   runs_dir: Path, on_task, callers: tuple[str, ...]) -> None:
    child = bundle_job_of(body.get("job_id"))
    if child is None:
        raise BundleError(f"run_job_task job_id {body.get('job_id')!r} is not a job of this bundle; "
                          "locally only the bundle's own jobs (${resources.jobs.<name>.id}) can run")
    if child in callers:
        raise BundleError(f"run_job_task cycle: {' → '.join((*callers, child))}")

    def report(child_task: TaskRun) -> None:
        if on_task:
            on_task(replace(child_task, task_key=f"{tr.task_key} → {child}.{child_task.task_key}"))

    declared = {p["name"] for p in bundle.job(child).get("parameters") or []}
    params = {**(body.get("job_parameters") or {}), **{k: v for k, v in parent_params.items() if k in declared}}
    log.info("▶ %s runs job %s", tr.task_key, child)
    child_run = run_job(bundle, child, params, runs_dir=runs_dir, on_task=report, _callers=callers)
    tr.summary = {"job": child, "run_id": child_run.run_id, "ok": child_run.ok,
                  "tasks": {t.task_key: t.status for t in child_run.tasks},
                  "summaries": {t.task_key: t.summary for t in child_run.tasks if t.summary is not None}}
    if not child_run.ok:
        failed = "; ".join(f"{t.task_key}: {t.error}" for t in child_run.failed)
        tr.error = f"job {child} (run {child_run.run_id}) failed at {failed}"
        raise RuntimeError(tr.error)


def run_notebook(path: Path, output: Path, parameters: Mapping[str, Any], cwd: Path) -> Path:
    """Execute a notebook with papermill (the parameters cell is tagged ``parameters``)."""
    import papermill as pm

    output.parent.mkdir(parents=True, exist_ok=True)
    pm.execute_notebook(
        str(path), str(output), parameters=dict(parameters), kernel_name="python3", language="python", cwd=str(cwd),
        progress_bar=False, log_output=False,
    )
    return output
