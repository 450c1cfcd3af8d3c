"""The CI/CD templates in .github/workflows: valid YAML, and every command, job and target they name
exists, so a renamed job or target breaks this test instead of a user's first deployment."""

from __future__ import annotations

import argparse
import os
import re
import shlex
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from ragops.bundle import load_bundle
from ragops.cli.main import build_parser

REPO = Path(__file__).resolve().parents[1]
WORKFLOWS = REPO / ".github" / "workflows"
WORKFLOW_FILES = sorted(WORKFLOWS.glob("*.yml"))
_VALUE_OPTIONS = {"--target", "-t", "--var", "--param", "--log-level"}
_DATABRICKS_BUNDLE_VERBS = {"validate", "deploy", "run", "destroy", "summary", "generate", "init"}


def _load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict), f"{path.name}: expected a mapping at the top level"
    return data


def _on(workflow: dict[str, Any]) -> Any:
    # YAML 1.1 reads a bare `on:` key as the boolean True.
    return workflow.get("on", workflow.get(True))


def _commands(workflow: dict[str, Any]) -> list[tuple[str, list[str]]]:
    """(job id, argv) for every shell command line in every step's ``run``."""
    out: list[tuple[str, list[str]]] = []
    for job_id, job in (workflow.get("jobs") or {}).items():
        for step in job.get("steps") or []:
            script = step.get("run")
            if not script:
                continue
            for line in script.replace("\\\n", " ").splitlines():
                line = line.split(" #")[0].strip()
                if not line or line.startswith("#"):
                    continue
                try:
                    argv = shlex.split(line)
                except ValueError:
                    argv = line.split()
                out.append((job_id, argv))
    return out


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


@cache
def _targets() -> list[str]:
    return load_bundle(REPO).targets


@cache
def _jobs(target: str | None) -> list[str]:
    return sorted(load_bundle(REPO, target).jobs)


def _target_of(argv: list[str]) -> str | None:
    for i, arg in enumerate(argv):
        if arg in ("-t", "--target") and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--target="):
            return arg.split("=", 1)[1]
    return None


def _positionals(argv: list[str]) -> list[str]:
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg in _VALUE_OPTIONS:
            skip = True
        elif not arg.startswith("-"):
            out.append(arg)
    return out


def _problems(path: Path) -> tuple[list[str], int]:
    """What in ``path`` names a missing command, job or target, and how many bundle jobs it runs."""
    problems: list[str] = []
    runs = 0
    top = _subcommands(build_parser())
    for job_id, argv in _commands(_load(path)):
        for i, word in enumerate(argv):
            prog = os.path.basename(word)
            if prog not in ("ragops", "databricks") or i + 1 >= len(argv):
                continue
            args = argv[i + 1:]
            where = f"{path.name}: jobs.{job_id}: `{' '.join(argv)}`"
            target = _target_of(args)
            if target is not None and target not in _targets():
                problems.append(f"{where}: target {target!r} is not in databricks.yml (targets: "
                                f"{', '.join(_targets())}); add it there or fix the workflow")
                continue
            words = _positionals(args)
            if prog == "ragops":
                if not words or words[0] not in top:
                    problems.append(f"{where}: `ragops {words[0] if words else ''}` is not a ragops command "
                                    f"({', '.join(top)})")
                    continue
                sub = _subcommands(top[words[0]])
                if sub and (len(words) < 2 or words[1] not in sub):
                    problems.append(f"{where}: not a `ragops {words[0]}` subcommand ({', '.join(sub)})")
                    continue
            elif words[:1] != ["bundle"]:
                continue  # other databricks CLI commands are not checked
            elif len(words) < 2 or words[1] not in _DATABRICKS_BUNDLE_VERBS:
                problems.append(f"{where}: unknown `databricks bundle` verb")
                continue
            if words[:2] == ["bundle", "run"]:
                runs += 1
                job = words[2] if len(words) > 2 else ""
                if job not in _jobs(target):
                    problems.append(f"{where}: no job {job!r} in the bundle for target "
                                    f"{target or '(default)'!r} (jobs: {', '.join(_jobs(target))}); "
                                    "add resources/<job>.yml or fix the workflow")
    return problems, runs


def test_there_are_workflows() -> None:
    assert {p.name for p in WORKFLOW_FILES} >= {"ci.yml", "evaluate.yml", "deploy.yml"}


@pytest.mark.parametrize("path", WORKFLOW_FILES, ids=lambda p: p.name)
def test_workflow_has_triggers_and_jobs(path: Path) -> None:
    workflow = _load(path)
    assert _on(workflow), f"{path.name}: no `on:` triggers"
    jobs = workflow.get("jobs")
    assert isinstance(jobs, dict) and jobs, f"{path.name}: no jobs"
    for job_id, job in jobs.items():
        assert job.get("runs-on"), f"{path.name}: jobs.{job_id} has no runs-on"
        assert job.get("steps"), f"{path.name}: jobs.{job_id} has no steps"


@pytest.mark.parametrize("path", WORKFLOW_FILES, ids=lambda p: p.name)
def test_commands_jobs_and_targets_exist(path: Path) -> None:
    problems, _ = _problems(path)
    assert not problems, "\n".join(problems)


def test_workflows_run_the_pipeline_jobs() -> None:
    """The checks above are not vacuous: the evaluation and deployment workflows do run bundle jobs."""
    text = {p.name: p.read_text() for p in WORKFLOW_FILES}
    for name in ("evaluate.yml", "deploy.yml"):
        assert _problems(WORKFLOWS / name)[1] >= 2, f"{name}: expected bundle job runs"
    assert re.search(r"ragops bundle run rag_chain_job", text["evaluate.yml"])  # it runs evaluate_job
    assert re.search(r"databricks bundle run deploy_job -t prod", text["deploy.yml"])


def test_unknown_job_or_target_is_reported(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text(yaml.safe_dump({"on": {"push": None}, "jobs": {"x": {"runs-on": "ubuntu-latest", "steps": [
        {"run": ".venv/bin/ragops bundle run no_such_job\ndatabricks bundle deploy -t nowhere\nragops frobnicate"}
    ]}}}))
    problems, _ = _problems(bad)
    assert len(problems) == 3
    assert "no job 'no_such_job'" in problems[0]
    assert "target 'nowhere'" in problems[1]
    assert "not a ragops command" in problems[2]


def test_prod_deployment_waits_for_approval() -> None:
    deploy = _load(WORKFLOWS / "deploy.yml")
    prod = [job for job in deploy["jobs"].values() if job.get("environment") == "prod"]
    assert prod, "deploy.yml: no job runs in the GitHub environment `prod` (the manual approval)"
    assert all(job.get("needs") for job in prod), "deploy.yml: prod must run after staging"


def test_ci_setup_exists_and_every_ci_script_named_exists() -> None:
    setup = REPO / ".ci" / "setup"
    assert setup.is_file() and os.access(setup, os.X_OK), ".ci/setup is missing or not executable"
    for path in WORKFLOW_FILES:
        for script in set(re.findall(r"\.ci/[\w.-]+", path.read_text())):
            assert (REPO / script).is_file(), f"{path.name} runs {script}, which does not exist"


def test_readme_describes_every_workflow() -> None:
    readme = (WORKFLOWS / "README.md").read_text()
    for path in WORKFLOW_FILES:
        assert f"`{path.name}`" in readme, f".github/workflows/README.md does not describe {path.name}"
