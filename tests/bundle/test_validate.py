"""Bundle validation: the project's own bundle is valid; broken ones name file and key."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from ragops.bundle import BundleError, load_bundle, validate
from tests.conftest import REPO


@pytest.mark.parametrize("target", ["local", "local_spark", "dev", "staging", "prod"])
def test_project_bundle_is_valid_for_every_target(target):
    bundle, issues = validate(REPO, target)
    assert issues == []
    assert bundle.target == target
    assert [t["task_key"] for t in bundle.jobs["ingest_job"]["tasks"]] == ["ingest", "chunk", "embed", "index_sync"]


def test_variables_resolve_with_target_and_overrides():
    bundle = load_bundle(REPO, "prod", {"chunk_size": "128"})
    assert bundle.variables["catalog"] == "prod"
    assert bundle.variables["chunk_size"] == "128"
    params = {p["name"]: p["default"] for p in bundle.jobs["ingest_job"]["parameters"]}
    assert params["catalog"] == "prod" and params["chunk_size"] == "128"
    assert bundle.jobs["ingest_job"]["name"] == "ragops-ingest-prod"


@pytest.fixture
def bundle_copy(tmp_path: Path) -> Path:
    for item in ("databricks.yml", "resources", "bundles", "notebooks"):
        src = REPO / item
        if src.is_dir():
            shutil.copytree(src, tmp_path / item)
        elif src.exists():
            shutil.copy(src, tmp_path / item)
    return tmp_path


def edit_job(root: Path, fn) -> None:
    path = root / "resources" / "ingest_job.yml"
    data = yaml.safe_load(path.read_text())
    fn(data["resources"]["jobs"]["ingest_job"])
    path.write_text(yaml.safe_dump(data))


def issues_of(root: Path) -> list[str]:
    return [str(i) for i in validate(root)[1]]


def test_unknown_dependency(bundle_copy):
    edit_job(bundle_copy, lambda job: job["tasks"][1].update(depends_on=[{"task_key": "ingset"}]))
    assert any("resources/ingest_job.yml" in i and "depends on unknown task 'ingset'" in i for i in issues_of(bundle_copy))


def test_dependency_cycle(bundle_copy):
    edit_job(bundle_copy, lambda job: job["tasks"][0].update(depends_on=[{"task_key": "index_sync"}]))
    assert any("dependency cycle" in i for i in issues_of(bundle_copy))


def test_unknown_entry_point(bundle_copy):
    edit_job(bundle_copy, lambda job: job["tasks"][2]["python_wheel_task"].update(entry_point="ragops-embedd"))
    found = issues_of(bundle_copy)
    assert any("tasks[2].python_wheel_task.entry_point" in i and "'ragops-embedd' not found" in i for i in found)


def test_missing_notebook(bundle_copy):
    edit_job(bundle_copy, lambda job: job["tasks"].append(
        {"task_key": "report", "depends_on": [{"task_key": "index_sync"}],
         "notebook_task": {"notebook_path": "../notebooks/99_missing"}}))
    assert any("notebook '../notebooks/99_missing' not found" in i for i in issues_of(bundle_copy))


def test_unresolved_variable(bundle_copy):
    edit_job(bundle_copy, lambda job: job.update(name="ragops-${var.nope}"))
    assert any("${var.nope} does not resolve" in i for i in issues_of(bundle_copy))


def test_unknown_job_parameter_reference(bundle_copy):
    edit_job(bundle_copy, lambda job: job["tasks"][0]["python_wheel_task"]["named_parameters"].update(
        extra="{{job.parameters.nonexistent}}"))
    assert any("has no parameter 'nonexistent'" in i for i in issues_of(bundle_copy))


def test_yaml_syntax_error_names_the_file_and_line(bundle_copy):
    (bundle_copy / "resources" / "broken.yml").write_text("resources:\n  jobs: [unclosed\n")
    assert any(i.startswith("resources/broken.yml") and "invalid YAML" in i for i in issues_of(bundle_copy))


def test_unknown_target_and_variable(bundle_copy):
    with pytest.raises(BundleError, match="unknown target 'qa'"):
        load_bundle(bundle_copy, "qa")
    with pytest.raises(BundleError, match="--var chunk_sise=…: no such variable"):
        load_bundle(bundle_copy, None, {"chunk_sise": "1"})
