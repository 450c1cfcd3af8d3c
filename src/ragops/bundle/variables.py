"""Bundle variables and job parameters against the settings declared in :mod:`ragops.config.settings`.

The settings are the single source (:func:`ragops.config.list_settings`); this module checks that
the bundle agrees with them:

* ``variables:`` in ``databricks.yml`` are exactly the settings' variables plus the bundle-only
  variables in :data:`NON_SETTING_VARIABLES`; each setting's default and description equal the
  field's default and help text.
* Job parameters follow one rule each (they are what reaches a task: Databricks pushes job
  parameters down to every task that takes key-value parameters, and they win over a task
  parameter with the same key):

  1. a parameter named like a setting's variable feeds that setting, so its default must come from
     that variable (``${var.NAME}`` appears in it) — otherwise ``--var NAME=…`` silently misses the
     job; a bundle-supplied setting (``git_commit``) takes its ``${bundle.…}`` value;
  2. a parameter whose default is exactly ``${var.X}`` of a setting X must be named X: under another
     name the tasks would not read it as that setting (bundle-only variables may feed any name,
     e.g. ``endpoint_name: ${var.serving_endpoint}``);
  3. any other parameter is task-specific (``sweep_ks``, ``alias``) — unless its name is a near miss
     of a setting's variable (``chunk_sise``), which is a typo every task would ignore;
  4. a task parameter (``named_parameters``, ``base_parameters``, ``run_job_task.job_parameters``)
     with a job parameter's name and another value is dead: the job parameter overrides it;
  5. in a job with parameters, a ``python_wheel_task`` needs a non-empty ``named_parameters`` —
     only wheel tasks configured with keyword arguments receive the pushed-down parameters.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

from ragops.bundle.issues import Issue
from ragops.bundle.loader import BUNDLE_FILE, Bundle
from ragops.config import SettingsError, list_settings

#: Bundle variables that are not settings: they configure the bundle's own resources (the serving
#: endpoint, clusters) or control flow, and no task reads them through :class:`Settings`.
NON_SETTING_VARIABLES: dict[str, str] = {
    "evaluate_after_registration": "rag_chain_job's condition_task",
    "serving_endpoint": "rag_chain_endpoint and deploy_job (endpoint_name)",
    "serving_workload_size": "rag_chain_endpoint and deploy_job (workload_size)",
    "serving_model_version": "rag_chain_endpoint",
    "node_type_id": "cluster specs on Databricks",
    "gpu_node_type_id": "finetune_job's GPU job cluster",
    "gpu_spark_version": "finetune_job's GPU job cluster",
    "chain_after_finetune": "finetune_job's condition_task",
}
_NEAR_MISS = 0.85  # difflib ratio: chunk_sise ~ chunk_size (0.9), but sweep_embedding_models !~ embedding_model


def check_variables(bundle: Bundle) -> list[Issue]:
    """``variables:`` of the bundle ↔ the settings (names, defaults, descriptions)."""
    declared: Mapping[str, Any] = bundle.raw.get("variables") or {}
    settings = {i.name: i for i in list_settings() if i.is_variable}
    issues: list[Issue] = []
    for name in declared:
        if name not in settings and name not in NON_SETTING_VARIABLES:
            issues.append(Issue(BUNDLE_FILE, f"variables.{name}",
                                f"variable {name!r} is not a setting: declare it on a config field "
                                f'(setting(..., var="{name}") in src/ragops/config/settings.py) or, if no task '
                                "reads it as a setting, add it to ragops.bundle.variables.NON_SETTING_VARIABLES"))
    for name, info in settings.items():
        if name not in declared:
            issues.append(Issue(BUNDLE_FILE, f"variables.{name}",
                                f"setting {info.path} has no bundle variable {name!r}; add "
                                f"`{name}: {{description: {info.help!r}, default: {info.bundle_text()!r}}}`"))
            continue
        spec = declared[name] if isinstance(declared[name], Mapping) else {"default": declared[name]}
        default = spec.get("default")
        try:
            same = default is not None and info.parse(default) == info.parse(info.default)
        except SettingsError as exc:
            issues.append(Issue(BUNDLE_FILE, f"variables.{name}.default", str(exc)))
            continue
        if not same:
            issues.append(Issue(BUNDLE_FILE, f"variables.{name}.default",
                                f"{default!r} differs from the default of setting {info.path} "
                                f"({info.bundle_text()!r}); change one of them"))
        if (spec.get("description") or "") != info.help:
            issues.append(Issue(BUNDLE_FILE, f"variables.{name}.description",
                                f"should be the help text of setting {info.path}: {info.help!r}"))
    return issues


def check_job_parameters(bundle: Bundle, job_name: str, file: str) -> list[Issue]:
    """A job's ``parameters`` and its tasks' parameters against the settings (module docstring)."""
    raw_job = ((bundle.raw.get("resources") or {}).get("jobs") or {}).get(job_name) or {}
    if not isinstance(raw_job, Mapping):
        return []
    base = f"resources.jobs.{job_name}"
    settings = {i.name: i for i in list_settings()}
    variables = [n for n, i in settings.items() if i.is_variable]
    issues: list[Issue] = []
    params: dict[str, str] = {}
    for i, p in enumerate(raw_job.get("parameters") or []):
        if not isinstance(p, Mapping) or "name" not in p:
            continue  # databricks-bundles reports the shape
        name, default = str(p["name"]), str(p.get("default", ""))
        params[name] = default
        where = f"{base}.parameters[{i}]"
        info = settings.get(name)
        if info is not None:
            ref = info.from_bundle or f"${{var.{name}}}"
            if ref not in default:
                issues.append(Issue(file, where, f"parameter {name!r} is setting {info.path}: its default must use "
                                                 f"{ref} (so --var {name}=… reaches this job), not {default!r}"))
            continue
        fed = default.removeprefix("${var.").removesuffix("}") if default.startswith("${var.") else None
        if fed in settings and settings[fed].is_variable:
            issues.append(Issue(file, where, f"parameter {name!r} takes setting {fed!r} under another name; "
                                             f"name it {fed!r} so the tasks read it as that setting"))
        elif near := difflib.get_close_matches(name, variables, n=1, cutoff=_NEAR_MISS):
            issues.append(Issue(file, where, f"parameter {name!r} is not a setting (did you mean {near[0]!r}?); "
                                             "the tasks would ignore it"))

    for i, task in enumerate(raw_job.get("tasks") or []):
        if not isinstance(task, Mapping):
            continue
        tkey = f"{base}.tasks[{i}]"
        for kind, field in (("python_wheel_task", "named_parameters"), ("notebook_task", "base_parameters"),
                            ("run_job_task", "job_parameters")):
            body = task.get(kind)
            if not isinstance(body, Mapping):
                continue
            values = body.get(field) or {}
            if kind == "python_wheel_task" and params and not values:
                issues.append(Issue(file, f"{tkey}.python_wheel_task",
                                    "needs a non-empty named_parameters: job parameters are pushed down only to "
                                    "wheel tasks configured with keyword arguments (keep one task-specific key)"))
            for key, value in values.items() if isinstance(values, Mapping) else ():
                if key in params and str(value).replace(" ", "") != f"{{{{job.parameters.{key}}}}}":
                    issues.append(Issue(file, f"{tkey}.{kind}.{field}.{key}",
                                        f"job parameter {key!r} ({params[key]!r}) overrides this value ({value!r}): "
                                        "job parameters are pushed down to tasks and win; drop one of them"))
    return issues
