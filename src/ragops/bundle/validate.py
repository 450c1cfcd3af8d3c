"""``ragops bundle validate``: catch bundle mistakes before anything runs, naming file and key.

Three layers, each in the module that knows it:

* shapes — every job and serving endpoint through Databricks' own models (:mod:`ragops.bundle.schema`,
  ``databricks-bundles``): unknown or missing fields, types, enum values;
* settings — variables and job parameters against the declared settings (:mod:`ragops.bundle.variables`);
* what only this project can check (here): entry points and notebooks exist, task graphs have no
  cycles, ``{{…}}`` references are known and name declared job parameters, condition outcomes,
  run_job_task targets and their parameter names, jobs that run each other.
"""

from __future__ import annotations

import operator
import re
from importlib import metadata
from pathlib import Path
from typing import Any

from ragops.bundle.issues import Issue
from ragops.bundle.loader import BUNDLE_FILE, LOCAL_JOB_ID_PREFIX, Bundle, BundleError, load_bundle
from ragops.bundle.schema import check_resources
from ragops.bundle.variables import check_job_parameters, check_variables

TASK_TYPES = ("python_wheel_task", "notebook_task", "spark_python_task", "run_job_task", "condition_task")
#: ``condition_task.op`` values (Databricks Jobs API) and the comparison each one makes.
CONDITION_OPS = {"EQUAL_TO": operator.eq, "NOT_EQUAL": operator.ne, "GREATER_THAN": operator.gt,
                 "GREATER_THAN_OR_EQUAL": operator.ge, "LESS_THAN": operator.lt, "LESS_THAN_OR_EQUAL": operator.le}
#: ``{{…}}`` dynamic value references Databricks resolves at run time (the ones ragops jobs use).
_DYNAMIC = re.compile(r"\{\{\s*([^}]+?)\s*\}\}")
_KNOWN_DYNAMIC = re.compile(
    r"^(job\.(id|name|run_id|start_time\.\w+|trigger\.\w+|repair_count)|task\.(name|run_id|execution_count)"
    r"|job\.parameters\.[\w.-]+|tasks\.[\w-]+\.values\.[\w-]+|workspace\.(id|url))$"
)


def console_scripts(package: str) -> set[str]:
    try:
        dist = metadata.distribution(package)
    except metadata.PackageNotFoundError:
        return set()
    return {ep.name for ep in dist.entry_points if ep.group == "console_scripts"}


def entry_point_target(package: str, name: str):
    """The function a ``python_wheel_task`` entry point names (as Databricks resolves it)."""
    for ep in metadata.distribution(package).entry_points:
        if ep.group == "console_scripts" and ep.name == name:
            return ep.load()
    raise LookupError(f"package {package!r} has no console_scripts entry point {name!r}")


def _walk_strings(node: Any, key: str = ""):
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _walk_strings(v, f"{key}.{k}" if key else str(k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _walk_strings(v, f"{key}[{i}]")
    elif isinstance(node, str):
        yield key, node


def _cycle(tasks: dict[str, list[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(t: str) -> list[str] | None:
        state[t] = 1
        stack.append(t)
        for d in tasks.get(t, []):
            if state.get(d) == 1:
                return stack[stack.index(d):] + [d]
            if d in tasks and state.get(d) is None and (found := visit(d)):
                return found
        stack.pop()
        state[t] = 2
        return None

    for t in tasks:
        if state.get(t) is None and (found := visit(t)):
            return found
    return None


def bundle_job_of(job_id: Any) -> str | None:
    """The bundle job a ``run_job_task.job_id`` names locally (``local:<name>``), else None."""
    if isinstance(job_id, str) and job_id.startswith(LOCAL_JOB_ID_PREFIX):
        return job_id.removeprefix(LOCAL_JOB_ID_PREFIX)
    return None


def validate_bundle(bundle: Bundle) -> list[Issue]:
    issues: list[Issue] = check_variables(bundle)
    triggers: dict[str, list[str]] = {}  # job → jobs its run_job_tasks run
    for file, key, ref in bundle.unresolved:
        issues.append(Issue(file, key, f"{ref} does not resolve (unknown variable or reference)"))
    targets = bundle.raw.get("targets") or {}
    for t, spec in targets.items():
        mode = (spec or {}).get("mode")
        if mode not in (None, "development", "production"):
            issues.append(Issue(BUNDLE_FILE, f"targets.{t}.mode", f"{mode!r} is not development or production"))

    for job_name, job in bundle.jobs.items():
        file = bundle.sources.get(f"jobs.{job_name}", BUNDLE_FILE)
        base = f"resources.jobs.{job_name}"
        if not isinstance(job, dict):
            issues.append(Issue(file, base, "a job must be a mapping"))
            continue
        tasks = job.get("tasks")
        if not isinstance(tasks, list) or not tasks:
            issues.append(Issue(file, f"{base}.tasks", "a job needs a non-empty list of tasks"))
            continue
        params = {p.get("name") for p in job.get("parameters") or [] if isinstance(p, dict)}
        issues += check_job_parameters(bundle, job_name, file)

        keys: dict[str, list[str]] = {}
        outcomes: list[tuple[str, str, Any]] = []  # (task key path, upstream task, outcome)
        conditions: set[str] = set()
        triggers[job_name] = []
        for i, task in enumerate(tasks):
            tkey = f"{base}.tasks[{i}]"
            if not isinstance(task, dict) or not task.get("task_key"):
                continue  # databricks-bundles reports the missing task_key
            name = task["task_key"]
            if name in keys:
                issues.append(Issue(file, f"{tkey}.task_key", f"duplicate task_key {name!r}"))
            deps = [d.get("task_key") if isinstance(d, dict) else d for d in task.get("depends_on") or []]
            keys[name] = deps
            outcomes += [(f"{tkey}.depends_on", d["task_key"], d["outcome"])
                         for d in task.get("depends_on") or [] if isinstance(d, dict) and "outcome" in d]
            kinds = [k for k in TASK_TYPES if k in task]
            if len(kinds) != 1:
                issues.append(Issue(file, tkey, f"task {name!r} needs exactly one of {', '.join(TASK_TYPES)} (found {kinds or 'none'})"))
                continue
            kind = kinds[0]
            body = task[kind] or {}
            if kind == "python_wheel_task":
                pkg, ep = body.get("package_name"), body.get("entry_point")
                if pkg and ep and ep not in console_scripts(pkg):
                    have = ", ".join(sorted(console_scripts(pkg))) or f"package {pkg!r} is not installed"
                    issues.append(Issue(file, f"{tkey}.python_wheel_task.entry_point",
                                        f"entry point {ep!r} not found in {pkg!r} (has: {have})"))
            elif kind == "notebook_task":
                nb = body.get("notebook_path")
                if nb and notebook_file(bundle, file, nb) is None:
                    issues.append(Issue(file, f"{tkey}.notebook_task.notebook_path",
                                        f"notebook {nb!r} not found (paths are relative to {file})"))
            elif kind == "condition_task":
                conditions.add(name)
                if body.get("op") not in CONDITION_OPS:
                    issues.append(Issue(file, f"{tkey}.condition_task.op",
                                        f"{body.get('op')!r} is not one of {', '.join(CONDITION_OPS)}"))
            elif kind == "run_job_task":
                child = bundle_job_of(body.get("job_id"))
                if child is not None:
                    triggers[job_name].append(child)
                    declared = {p.get("name") for p in bundle.jobs[child].get("parameters") or [] if isinstance(p, dict)}
                    for pname in body.get("job_parameters") or {}:
                        if pname not in declared:
                            issues.append(Issue(file, f"{tkey}.run_job_task.job_parameters.{pname}",
                                                f"job {child!r} has no parameter {pname!r}"))
            for skey, text in _walk_strings(task, tkey):
                for ref in _DYNAMIC.findall(text):
                    if ref.startswith("job.parameters."):
                        pname = ref.removeprefix("job.parameters.")
                        if pname not in params:
                            issues.append(Issue(file, skey, f"{{{{{ref}}}}}: job {job_name!r} has no parameter {pname!r}"))
                    elif not _KNOWN_DYNAMIC.match(ref):
                        issues.append(Issue(file, skey, f"unknown dynamic value reference {{{{{ref}}}}}"))
        for name, deps in keys.items():
            for d in deps:
                if d not in keys:
                    issues.append(Issue(file, f"{base}.tasks.{name}.depends_on", f"depends on unknown task {d!r}"))
        for where, upstream, outcome in outcomes:
            if upstream not in conditions:
                issues.append(Issue(file, where, f"outcome is only for a condition_task; {upstream!r} is not one"))
            elif outcome not in ("true", "false"):
                issues.append(Issue(file, where, f'outcome must be "true" or "false", not {outcome!r}'))
        cycle = _cycle(keys)
        if cycle:
            issues.append(Issue(file, f"{base}.tasks", f"dependency cycle: {' → '.join(cycle)}"))
    cycle = _cycle(triggers)
    if cycle:
        first = cycle[0]
        issues.append(Issue(bundle.sources.get(f"jobs.{first}", BUNDLE_FILE), f"resources.jobs.{first}",
                            f"run_job_task cycle: {' → '.join(cycle)}"))
    # A task's shape problem we already named more precisely (a condition op, say) is not repeated.
    for found in check_resources(bundle):
        if ".tasks[" not in found.key or not any(i.file == found.file and i.key.startswith(found.key + ".")
                                                 for i in issues):
            issues.append(found)
    return issues


def notebook_file(bundle: Bundle, declared_in: str, notebook_path: str) -> Path | None:
    base = (bundle.root / declared_in).parent
    for candidate in (base / notebook_path, bundle.root / notebook_path):
        for path in (candidate, candidate.with_name(candidate.name + ".ipynb")):
            if path.is_file():
                return path.resolve()
    return None


def validate(root: Path | None = None, target: str | None = None, overrides=None) -> tuple[Bundle | None, list[Issue]]:
    try:
        bundle = load_bundle(root, target, overrides)
    except BundleError as exc:
        return None, [Issue(exc.file or BUNDLE_FILE, exc.key or "", exc.detail)]
    return bundle, validate_bundle(bundle)
