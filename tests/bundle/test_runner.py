"""The local job runner: dependency order, parameters, failures."""

from __future__ import annotations

import json

import pytest

from ragops.bundle import BundleError, load_bundle, run_job
from ragops.bundle.runner import task_order
from tests.bundle.test_validate import add_jobs, bundle_copy, edit_job  # noqa: F401 - fixture re-export


def test_tasks_run_in_dependency_order():
    tasks = [
        {"task_key": "c", "depends_on": [{"task_key": "b"}]},
        {"task_key": "a"},
        {"task_key": "b", "depends_on": [{"task_key": "a"}]},
    ]
    assert [t["task_key"] for t in task_order(tasks)] == ["a", "b", "c"]


def test_failed_task_skips_downstream_and_names_itself(bundle_copy, tmp_path):  # noqa: F811
    bundle = load_bundle(bundle_copy, None, {"root": str(tmp_path / "state"), "source_path": str(tmp_path / "missing")})
    run = run_job(bundle, "ingest_job", runs_dir=tmp_path / "runs")
    assert not run.ok
    status = {t.task_key: t.status for t in run.tasks}
    assert status == {"ingest": "failed", "chunk": "skipped", "embed": "skipped", "index_sync": "skipped"}
    assert "does not exist" in run.tasks[0].error
    assert (tmp_path / "runs" / "ingest_job" / run.run_id / "run.json").exists()


def test_unknown_job_and_parameter(bundle_copy):  # noqa: F811
    bundle = load_bundle(bundle_copy)
    with pytest.raises(BundleError, match="no job 'ingest'"):
        run_job(bundle, "ingest")
    with pytest.raises(BundleError, match="has no parameters \\['colour'\\]"):
        run_job(bundle, "ingest_job", {"colour": "red"})


def test_invalid_bundle_does_not_run(bundle_copy):  # noqa: F811
    edit_job(bundle_copy, lambda job: job["tasks"][1].update(depends_on=[{"task_key": "nope"}]))
    with pytest.raises(BundleError, match="does not validate"):
        run_job(load_bundle(bundle_copy), "ingest_job")


def test_notebook_tasks_run_through_papermill(bundle_copy, tmp_path):  # noqa: F811
    nb = bundle_copy / "notebooks" / "hello.ipynb"
    nb.parent.mkdir(exist_ok=True)
    import nbformat

    cells = [nbformat.v4.new_code_cell("name = 'default'"), nbformat.v4.new_code_cell(
        "from pathlib import Path\nPath(out).write_text(f'hello {name}')")]
    cells[0].metadata["tags"] = ["parameters"]
    nbformat.write(nbformat.v4.new_notebook(cells=cells), nb)
    out = tmp_path / "out.txt"
    add_jobs(bundle_copy, {"hello_job": {
        "parameters": [{"name": "who", "default": "${bundle.target}"}],
        "tasks": [{"task_key": "hello", "notebook_task": {
            "notebook_path": "../notebooks/hello", "base_parameters": {"name": "{{job.parameters.who}}", "out": str(out)}}}],
    }})
    run = run_job(load_bundle(bundle_copy), "hello_job", runs_dir=tmp_path / "runs")
    assert run.ok, run.tasks[0].error
    assert out.read_text() == "hello local"
    assert run.tasks[0].output_notebook.endswith("hello.ipynb")


@pytest.fixture
def flow_bundle(bundle_copy, tmp_path):  # noqa: F811
    """A parent job whose condition decides whether it runs a child job; the child's notebook
    appends a line to a file (or raises, when told to fail)."""
    import nbformat

    nb = bundle_copy / "notebooks" / "append.ipynb"
    cells = [nbformat.v4.new_code_cell("out = ''\nwho = ''\nfail = 'no'"), nbformat.v4.new_code_cell(
        "assert fail != 'yes', 'told to fail'\nwith open(out, 'a') as f:\n    f.write(who + '\\n')")]
    cells[0].metadata["tags"] = ["parameters"]
    nbformat.write(nbformat.v4.new_notebook(cells=cells), nb)
    out = tmp_path / "child.txt"
    add_jobs(bundle_copy, {
        "child_job": {
            "parameters": [{"name": "who", "default": "nobody"}, {"name": "fail", "default": "no"}],
            "tasks": [{"task_key": "append", "notebook_task": {"notebook_path": "../notebooks/append", "base_parameters": {
                "out": str(out), "who": "{{job.parameters.who}}", "fail": "{{job.parameters.fail}}"}}}],
        },
        "parent_job": {
            "parameters": [{"name": "go", "default": "true"}, {"name": "fail", "default": "no"}],
            "tasks": [
                {"task_key": "check", "condition_task": {"op": "EQUAL_TO", "left": "{{job.parameters.go}}", "right": "true"}},
                {"task_key": "run_child", "depends_on": [{"task_key": "check", "outcome": "true"}],
                 "run_job_task": {"job_id": "${resources.jobs.child_job.id}",
                                  "job_parameters": {"who": "parent", "fail": "{{job.parameters.fail}}"}}},
            ],
        },
    })
    return bundle_copy, out


def test_condition_true_runs_the_child_job_with_its_parameters(flow_bundle, tmp_path):
    root, out = flow_bundle
    seen = []
    run = run_job(load_bundle(root), "parent_job", runs_dir=tmp_path / "runs", on_task=lambda t: seen.append(t.task_key))
    assert run.ok, [t.error for t in run.tasks]
    assert out.read_text() == "parent\n"
    check, child = run.tasks
    assert check.summary["outcome"] == "true"
    assert child.summary["job"] == "child_job" and child.summary["tasks"] == {"append": "succeeded"}
    assert (tmp_path / "runs" / "child_job" / child.summary["run_id"] / "run.json").is_file()
    assert seen == ["check", "run_child → child_job.append", "run_child"]


def test_condition_false_excludes_the_branch_and_the_run_still_succeeds(flow_bundle, tmp_path):
    root, out = flow_bundle
    run = run_job(load_bundle(root), "parent_job", {"go": "false"}, runs_dir=tmp_path / "runs")
    assert run.ok
    assert [t.status for t in run.tasks] == ["succeeded", "excluded"]
    assert "condition 'check' was false" in run.tasks[1].error
    assert not out.exists()


def test_a_failed_child_job_fails_the_parent_task_and_names_the_child_task(flow_bundle, tmp_path):
    root, _ = flow_bundle
    run = run_job(load_bundle(root), "parent_job", {"fail": "yes"}, runs_dir=tmp_path / "runs")
    assert not run.ok and run.failed[0].task_key == "run_child"
    assert "job child_job" in run.failed[0].error and "append:" in run.failed[0].error
    assert run.failed[0].summary["tasks"] == {"append": "failed"}


def test_numeric_comparisons_and_string_inequality():
    from ragops.bundle.runner import condition_outcome

    assert condition_outcome("GREATER_THAN", "10", "9") is True  # numbers, not strings ("10" < "9")
    assert condition_outcome("EQUAL_TO", "1.0", "1") is True
    assert condition_outcome("NOT_EQUAL", "a", "b") is True
    with pytest.raises(BundleError, match="needs two numbers"):
        condition_outcome("LESS_THAN", "a", "b")


def test_a_job_id_outside_the_bundle_is_a_clear_error_locally(bundle_copy, tmp_path):  # noqa: F811
    add_jobs(bundle_copy, {"remote_job": {"tasks": [{"task_key": "t", "run_job_task": {"job_id": 123456}}]}})
    run = run_job(load_bundle(bundle_copy), "remote_job", runs_dir=tmp_path / "runs")
    assert not run.ok and "123456 is not a job of this bundle" in run.tasks[0].error


def test_job_parameters_are_pushed_down_and_win_over_task_parameters():
    from ragops.bundle.runner import pushed_down

    job = {"chunk_size": "128", "root": "/state"}
    wheel = pushed_down({"python_wheel_task": {"named_parameters": {"task": "chunk", "chunk_size": "64"}}}, job)
    assert wheel["python_wheel_task"]["named_parameters"] == {"task": "chunk", "chunk_size": "128", "root": "/state"}
    positional = pushed_down({"python_wheel_task": {"parameters": ["--x=1"]}}, job)
    assert "named_parameters" not in positional["python_wheel_task"]  # not configured with keyword arguments
    notebook = pushed_down({"notebook_task": {"notebook_path": "nb"}}, job)
    assert notebook["notebook_task"]["base_parameters"] == job


def test_a_child_job_receives_the_parent_parameters_it_declares(flow_bundle, tmp_path):
    root, out = flow_bundle
    add_jobs(root, {
        "child_job": {
            "parameters": [{"name": "who", "default": "nobody"}, {"name": "fail", "default": "no"}],
            "tasks": [{"task_key": "append", "notebook_task": {"notebook_path": "../notebooks/append",
                                                               "base_parameters": {"out": str(out)}}}],
        },
        "pushing_job": {
            "parameters": [{"name": "who", "default": "pushed"}, {"name": "colour", "default": "red"}],
            "tasks": [{"task_key": "run_child", "run_job_task": {"job_id": "${resources.jobs.child_job.id}"}}],
        },
    })
    run = run_job(load_bundle(root), "pushing_job", runs_dir=tmp_path / "runs")
    assert run.ok, [t.error for t in run.tasks]
    assert out.read_text() == "pushed\n"  # who pushed down into the child, then into its notebook
    child = json.loads((tmp_path / "runs" / "child_job" / run.tasks[0].summary["run_id"] / "run.json").read_text())
    assert child["parameters"] == {"who": "pushed", "fail": "no"}  # colour is not the child's: not passed
