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


def add_jobs(root: Path, jobs: dict) -> None:
    """Add ``jobs`` to a bundle copy, in a resources file of their own."""
    (root / "resources" / "extra_jobs.yml").write_text(yaml.safe_dump({"resources": {"jobs": jobs}}))


def test_control_flow_mistakes_name_the_task(bundle_copy):
    add_jobs(bundle_copy, {"flow_job": {"parameters": [{"name": "x", "default": "1"}], "tasks": [
        {"task_key": "cond", "condition_task": {"op": "EQUALS", "left": "{{job.parameters.x}}", "right": "1"}},
        {"task_key": "after", "depends_on": [{"task_key": "cond", "outcome": "yes"}],
         "run_job_task": {"job_id": "${resources.jobs.ingest_job.id}", "job_parameters": {"colour": "red"}}},
        {"task_key": "wrong", "depends_on": [{"task_key": "after", "outcome": "true"}],
         "run_job_task": {"job_id": "${resources.jobs.nope_job.id}"}},
    ]}})
    found = issues_of(bundle_copy)
    assert any("condition_task.op" in i and "'EQUALS' is not one of EQUAL_TO" in i for i in found)
    assert any("tasks[1].depends_on" in i and "outcome must be \"true\" or \"false\"" in i for i in found)
    assert any("job_parameters.colour" in i and "job 'ingest_job' has no parameter 'colour'" in i for i in found)
    assert any("tasks[2].depends_on" in i and "'after' is not one" in i for i in found)
    assert any("${resources.jobs.nope_job.id} does not resolve" in i for i in found)


def test_jobs_that_run_each_other_are_a_cycle(bundle_copy):
    add_jobs(bundle_copy, {
        "a_job": {"tasks": [{"task_key": "t", "run_job_task": {"job_id": "${resources.jobs.b_job.id}"}}]},
        "b_job": {"tasks": [{"task_key": "t", "run_job_task": {"job_id": "${resources.jobs.a_job.id}"}}]},
    })
    assert any("run_job_task cycle: a_job → b_job → a_job" in i for i in issues_of(bundle_copy))


@pytest.mark.parametrize("job", ["ingest_job", "evaluate_job", "experiment_sweep_job"])
def test_jobs_that_open_the_lakehouse_run_on_the_targets_engine(job):
    """A job reading tables must get the target's engine: without the parameter it silently ran local."""
    params = {p["name"]: p["default"] for p in load_bundle(REPO, "dev").jobs[job]["parameters"]}
    assert params["engine"] == "spark" and "spark_remote" in params


def test_a_key_defined_twice_is_an_error_naming_both_lines(bundle_copy):
    """PyYAML would keep the second silently; the Databricks CLI refuses the file, so validate does too."""
    path = bundle_copy / "databricks.yml"
    path.write_text(path.read_text().replace("\nvariables:\n", "\nvariables:\n  chunk_size:\n    default: 64\n", 1))
    issues = issues_of(bundle_copy)
    assert any(i.startswith("databricks.yml") and "'chunk_size' is defined twice (first at line" in i
               for i in issues), issues
