"""The local job runner: dependency order, parameters, failures."""

from __future__ import annotations

import pytest
import yaml

from ragops.bundle import BundleError, load_bundle, run_job
from ragops.bundle.runner import task_order
from tests.bundle.test_validate import bundle_copy, edit_job  # noqa: F401 - fixture re-export


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
    res = bundle_copy / "resources" / "hello_job.yml"
    res.write_text(yaml.safe_dump({"resources": {"jobs": {"hello_job": {
        "parameters": [{"name": "who", "default": "${bundle.target}"}],
        "tasks": [{"task_key": "hello", "notebook_task": {
            "notebook_path": "../notebooks/hello", "base_parameters": {"name": "{{job.parameters.who}}", "out": str(out)}}}],
    }}}}))
    run = run_job(load_bundle(bundle_copy), "hello_job", runs_dir=tmp_path / "runs")
    assert run.ok, run.tasks[0].error
    assert out.read_text() == "hello local"
    assert run.tasks[0].output_notebook.endswith("hello.ipynb")
