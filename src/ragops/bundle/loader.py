"""Read ``databricks.yml`` (+ its ``include``s) and resolve one target, as the Databricks CLI does.

Resolution order for variables: the variable's ``default`` → the target's ``variables`` →
``--var NAME=VALUE`` overrides → ``BUNDLE_VAR_<name>`` environment variables are *not* read
implicitly, to keep local runs reproducible. ``${var.*}``, ``${bundle.*}`` and ``${workspace.*}``
references are substituted at load time; ``{{job.parameters.*}}`` and other ``{{…}}`` dynamic value
references are left for the runner, as Databricks resolves them at run time.

``${resources.jobs.<name>.id}`` (what a ``run_job_task`` names) is the job's numeric id once
``databricks bundle deploy`` has created it; locally it resolves to ``local:<name>``
(:data:`LOCAL_JOB_ID_PREFIX`), which the runner maps back to the bundle's job.
"""

from __future__ import annotations

import copy
import getpass
import glob
import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ragops.errors import RagopsError

BUNDLE_FILE = "databricks.yml"
_REF = re.compile(r"\$\{([a-zA-Z0-9_.\-\[\]]+)\}")
#: What ``${resources.jobs.<name>.id}`` resolves to locally: this prefix + the job's key.
LOCAL_JOB_ID_PREFIX = "local:"


class BundleError(RagopsError, ValueError):
    """A bundle problem, with the file and key it is about."""

    def __init__(self, message: str, file: str | None = None, key: str | None = None) -> None:
        self.file, self.key, self.detail = file, key, message
        where = ":".join(p for p in (file, key) if p)
        super().__init__(f"{where}: {message}" if where else message)


@dataclass
class Bundle:
    root: Path
    name: str
    target: str
    targets: list[str]
    variables: dict[str, Any]
    jobs: dict[str, dict[str, Any]]
    resources: dict[str, dict[str, Any]]
    sources: dict[str, str] = field(default_factory=dict)  # "jobs.<name>" → file it came from
    raw: dict[str, Any] = field(default_factory=dict)
    unresolved: list[tuple[str, str, str]] = field(default_factory=list)  # (file, key, reference)

    def job(self, name: str) -> dict[str, Any]:
        if name not in self.jobs:
            known = ", ".join(sorted(self.jobs)) or "(none)"
            raise BundleError(f"no job {name!r} in bundle {self.name!r}; jobs: {known}")
        return self.jobs[name]

    def settings_variables(self) -> dict[str, Any]:
        """Variables plus the target name and git commit: what :meth:`Settings.from_variables` reads."""
        return {**self.variables, "target": self.target, "git_commit": git_commit(self.root)}


def find_bundle_root(start: Path | None = None) -> Path | None:
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / BUNDLE_FILE).is_file():
            return folder
    return None


def git_commit(root: Path) -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5)
        return out.stdout.strip() if out.returncode == 0 else ""
    except (OSError, subprocess.SubprocessError):
        return ""


class _StrictLoader(yaml.SafeLoader):
    """PyYAML keeps the last of two equal keys in a mapping without a word; the Databricks CLI (Go's
    yaml.v3) refuses the file ("mapping key already defined"). A bundle that loads here must deploy
    there, so a repeated key is an error here too, naming both lines."""


def _mapping_without_repeats(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False):
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        if isinstance(key, str) and key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"key {key!r} is defined twice (first at line {seen[key] + 1})", key_node.start_mark)
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_repeats)


def _read_yaml(path: Path, root: Path) -> dict[str, Any]:
    rel = str(path.relative_to(root))
    try:
        data = yaml.load(path.read_text(), Loader=_StrictLoader) or {}  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else ""
        raise BundleError(f"invalid YAML {where}: {getattr(exc, 'problem', exc)}", rel) from exc
    if not isinstance(data, dict):
        raise BundleError("expected a mapping at the top level", rel)
    return data


def _deep_merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _deep_merge(dict(out[key]), value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def load_bundle(
    root: Path | None = None, target: str | None = None, overrides: Mapping[str, str] | None = None
) -> Bundle:
    root = Path(root) if root else find_bundle_root()
    if root is None or not (root / BUNDLE_FILE).is_file():
        raise BundleError(f"no {BUNDLE_FILE} found here or in any parent folder; run ragops from the project root")
    root = root.resolve()
    main = _read_yaml(root / BUNDLE_FILE, root)
    sources: dict[str, str] = {}

    merged: dict[str, Any] = {k: v for k, v in main.items() if k != "include"}
    for key, section in (main.get("resources") or {}).items():
        for name in section or {}:
            sources[f"{key}.{name}"] = BUNDLE_FILE
    for pattern in main.get("include") or []:
        for path in sorted(glob.glob(str(root / pattern))):
            data = _read_yaml(Path(path), root)
            rel = str(Path(path).relative_to(root))
            for key, section in (data.get("resources") or {}).items():
                for name in section or {}:
                    where = f"{key}.{name}"
                    if where in sources:
                        raise BundleError(f"{where} is defined twice (also in {sources[where]})", rel, f"resources.{where}")
                    sources[where] = rel
            merged = _deep_merge(merged, data)

    name = str((merged.get("bundle") or {}).get("name") or "")
    if not name:
        raise BundleError("bundle.name is required", BUNDLE_FILE, "bundle.name")
    targets = merged.get("targets") or {}
    if not targets:
        raise BundleError("at least one target is required", BUNDLE_FILE, "targets")
    if target is None:
        defaults = [t for t, spec in targets.items() if (spec or {}).get("default")]
        if len(defaults) != 1:
            raise BundleError(f"exactly one target must have default: true (found {defaults or 'none'})",
                              BUNDLE_FILE, "targets")
        target = defaults[0]
    if target not in targets:
        raise BundleError(f"unknown target {target!r}; targets: {', '.join(targets)}", BUNDLE_FILE, "targets")
    tspec = targets[target] or {}

    declared = merged.get("variables") or {}
    variables: dict[str, Any] = {}
    for vname, vspec in declared.items():
        variables[vname] = (vspec or {}).get("default") if isinstance(vspec, Mapping) else vspec
    for vname, value in (tspec.get("variables") or {}).items():
        if vname not in declared:
            raise BundleError(f"variable {vname!r} is set but not declared under variables:", BUNDLE_FILE,
                              f"targets.{target}.variables.{vname}")
        variables[vname] = value.get("default") if isinstance(value, Mapping) else value
    for vname, value in (overrides or {}).items():
        if vname not in declared:
            raise BundleError(f"--var {vname}=…: no such variable; declared: {', '.join(sorted(declared))}")
        variables[vname] = value
    missing = [v for v, val in variables.items() if val is None]
    if missing:
        raise BundleError(f"variables {missing} have no value for target {target!r}; pass --var NAME=VALUE",
                          BUNDLE_FILE, "variables")

    resources = _deep_merge(merged.get("resources") or {}, tspec.get("resources") or {})
    context = {
        "bundle": {"name": name, "target": target, "git": {"commit": git_commit(root), "branch": ""}},
        "workspace": {
            "root_path": str(root),
            "file_path": str(root),
            "current_user": {"userName": getpass.getuser(), "short_name": getpass.getuser()},
        },
        "resources": {"jobs": {n: {"id": LOCAL_JOB_ID_PREFIX + n} for n in (resources.get("jobs") or {})}},
    }
    unresolved: list[tuple[str, str, str]] = []
    variables = {k: _interpolate(v, variables, context, unresolved, "variables", k) for k, v in variables.items()}
    resources = _interpolate(resources, variables, context, unresolved, "resources", "")
    bundle = Bundle(
        root=root,
        name=name,
        target=target,
        targets=list(targets),
        variables=variables,
        jobs=resources.get("jobs") or {},
        resources=resources,
        sources=sources,
        raw=merged,
        unresolved=[(sources.get(".".join(k.split(".")[1:3]), BUNDLE_FILE), k, r) for _, k, r in unresolved],
    )
    return bundle


def _lookup(ref: str, variables: Mapping[str, Any], context: Mapping[str, Any]) -> Any:
    parts = ref.split(".")
    if parts[0] == "var" and len(parts) == 2:
        if parts[1] in variables:
            return variables[parts[1]]
        raise KeyError(ref)
    node: Any = context
    for p in parts:
        if isinstance(node, Mapping) and p in node:
            node = node[p]
        else:
            raise KeyError(ref)
    return node


def _interpolate(value: Any, variables, context, unresolved: list, section: str, key: str, depth: int = 0) -> Any:
    if isinstance(value, Mapping):
        return {k: _interpolate(v, variables, context, unresolved, section, f"{key}.{k}".strip("."), depth)
                for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, variables, context, unresolved, section, f"{key}[{i}]", depth)
                for i, v in enumerate(value)]
    if not isinstance(value, str) or "${" not in value:
        return value

    def sub(m: re.Match[str]) -> str:
        try:
            found = _lookup(m.group(1), variables, context)
        except KeyError:
            unresolved.append((section, f"{section}.{key}", m.group(0)))
            return m.group(0)
        if isinstance(found, str) and "${" in found and depth < 5:
            found = _interpolate(found, variables, context, unresolved, section, key, depth + 1)
        return str(found)

    whole = _REF.fullmatch(value)
    if whole:  # keep non-string types for a whole-value reference
        try:
            found = _lookup(whole.group(1), variables, context)
            if not isinstance(found, str):
                return found
        except KeyError:
            pass
    return _REF.sub(sub, value)
