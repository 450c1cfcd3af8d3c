"""Resource shapes checked by Databricks' own models (``databricks-bundles``), not by hand.

``Job.from_dict`` / ``ModelServingEndpoint.from_dict`` reject unknown fields at every level
(``Unexpected field 'colour' for class PythonWheelTask``), missing required fields
(``Task.__init__() missing ... 'task_key'``), wrong types and unknown enum values (a
``condition_task.op``). Checked against databricks-bundles 1.22.1:

* ``${var.x}`` / ``${resources…}`` strings are accepted anywhere (the library treats them as
  variable references), so unresolved references are left to the loader's own check.
* ``{{job.parameters.x}}`` strings are accepted in string fields; in an int field they fail as
  they would on deploy.
* ``run_job_task.job_id`` is an int: the loader's local ``local:<job>`` id is mapped back to
  ``${resources.jobs.<job>.id}`` before the check.

The exception names the class, not the path, so a job that fails is re-checked task by task to
point at ``tasks[i]``. What the library cannot know stays in :mod:`ragops.bundle.validate`
(entry points and notebooks exist, dependency cycles, dynamic references, outcomes, run_job_task
parameter names).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ragops.bundle.issues import Issue
from ragops.bundle.loader import BUNDLE_FILE, LOCAL_JOB_ID_PREFIX, Bundle

_MISSING = re.compile(r"^(\w+)\.__init__\(\) missing \d+ required keyword-only arguments?: (.+)$")


def _models() -> dict[str, Any]:
    from databricks.bundles.apps import App
    from databricks.bundles.jobs import Job
    from databricks.bundles.model_serving_endpoints import ModelServingEndpoint
    from databricks.bundles.quality_monitors import QualityMonitor

    return {"jobs": Job, "model_serving_endpoints": ModelServingEndpoint, "apps": App,
            "quality_monitors": QualityMonitor}


def _unlocal(node: Any) -> Any:
    """The resource as written: ``local:<job>`` job ids back to ``${resources.jobs.<job>.id}``."""
    if isinstance(node, Mapping):
        return {k: (f"${{resources.jobs.{v.removeprefix(LOCAL_JOB_ID_PREFIX)}.id}}"
                    if k == "job_id" and isinstance(v, str) and v.startswith(LOCAL_JOB_ID_PREFIX) else _unlocal(v))
                for k, v in node.items()}
    if isinstance(node, list):
        return [_unlocal(v) for v in node]
    return node


def _message(exc: Exception) -> str:
    text = str(exc)
    m = _MISSING.match(text)
    if m:
        text = f"{m.group(1)} needs {m.group(2)}"
    return f"databricks-bundles: {text}"


def _check(model: Any, spec: Any) -> Exception | None:
    try:
        model.from_dict(spec)
    except (TypeError, ValueError, KeyError, AttributeError) as exc:  # how from_dict reports a bad shape
        return exc
    return None


def check_resources(bundle: Bundle) -> list[Issue]:
    """Every ``resources.<type>.<name>`` of a type databricks-bundles models, validated by it."""
    issues: list[Issue] = []
    for rtype, model in _models().items():
        for name, spec in (bundle.resources.get(rtype) or {}).items():
            file = bundle.sources.get(f"{rtype}.{name}", BUNDLE_FILE)
            key = f"resources.{rtype}.{name}"
            spec = _unlocal(spec)
            exc = _check(model, spec)
            if exc is None:
                continue
            if rtype == "jobs" and isinstance(spec, Mapping) and isinstance(spec.get("tasks"), list):
                from databricks.bundles.jobs import Task

                task_errors = [(i, e) for i, t in enumerate(spec["tasks"]) if (e := _check(Task, t)) is not None]
                if task_errors:
                    issues += [Issue(file, f"{key}.tasks[{i}]", _message(e)) for i, e in task_errors]
                    continue
            issues.append(Issue(file, key, _message(exc)))
    return issues
