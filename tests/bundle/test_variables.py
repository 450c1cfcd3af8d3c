"""The bundle's variables and job parameters agree with the settings declared on the config fields."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ragops.bundle import NON_SETTING_VARIABLES, load_bundle, settings_for
from ragops.cli.main import main
from ragops.config import SettingsError, list_settings
from tests.bundle.test_validate import add_jobs, bundle_copy, edit_job, issues_of  # noqa: F401 - fixture
from tests.config.test_settings import NEEDS, field_value, other_value
from tests.conftest import REPO

VARIABLES = [i for i in list_settings() if i.is_variable]


@pytest.mark.parametrize("info", VARIABLES, ids=lambda i: i.name)
def test_every_setting_is_reachable_by_its_variable(info):
    value = other_value(info)
    s = settings_for(None, {info.name: value, **NEEDS.get(info.name, {})}, root=REPO)
    expected = info.parse(value)
    if info.kind:
        expected = (REPO / value).resolve() if info.kind == "path" else str((REPO / value).resolve())
    assert field_value(s, info.path) == expected


def test_databricks_yml_declares_exactly_the_settings_with_their_defaults():
    declared = yaml.safe_load((REPO / "databricks.yml").read_text())["variables"]
    assert set(declared) == {i.name for i in VARIABLES} | set(NON_SETTING_VARIABLES)
    for info in VARIABLES:
        assert info.parse(declared[info.name]["default"]) == info.parse(info.default), info.name


def test_var_rrf_k_reaches_the_settings_and_the_jobs_that_use_it():
    assert settings_for(None, {"rrf_k": "20"}, root=REPO).index.rrf_k == 20
    params = {p["name"]: p["default"] for p in load_bundle(REPO, None, {"rrf_k": "20"}).jobs["rag_chain_job"]["parameters"]}
    assert params["rrf_k"] == "20"


def test_a_bad_type_is_a_settings_error_naming_the_variable():
    with pytest.raises(SettingsError, match="--var chunk_size=abc: expected an integer") as err:
        settings_for(None, {"chunk_size": "abc"}, root=REPO)
    assert err.value.variable == "chunk_size"


def edit_variables(root: Path, fn) -> None:
    path = root / "databricks.yml"
    data = yaml.safe_load(path.read_text())
    fn(data["variables"])
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def validate_cli(root: Path, monkeypatch, capsys) -> tuple[int, str]:
    monkeypatch.chdir(root)
    rc = main(["bundle", "validate"])
    return rc, capsys.readouterr().err


def test_a_setting_without_a_variable_fails_bundle_validate(bundle_copy, monkeypatch, capsys):  # noqa: F811
    edit_variables(bundle_copy, lambda v: v.pop("bm25_k1"))
    edit_job(bundle_copy, lambda job: job.update(parameters=[p for p in job["parameters"] if p["name"] != "bm25_k1"]))
    rc, err = validate_cli(bundle_copy, monkeypatch, capsys)
    assert rc == 1
    assert "databricks.yml: variables.bm25_k1: setting index.bm25_k1 has no bundle variable 'bm25_k1'" in err


def test_a_variable_without_a_setting_fails_bundle_validate(bundle_copy, monkeypatch, capsys):  # noqa: F811
    edit_variables(bundle_copy, lambda v: v.update(colour={"description": "?", "default": "red"}))
    rc, err = validate_cli(bundle_copy, monkeypatch, capsys)
    assert rc == 1 and "variables.colour: variable 'colour' is not a setting" in err


def test_defaults_and_descriptions_must_match_the_field(bundle_copy):  # noqa: F811
    def drift(v):
        v["chunk_size"]["default"] = 256
        v["rrf_k"]["default"] = "ten"
        v["chunk_overlap"]["description"] = "something else"
    edit_variables(bundle_copy, drift)
    found = issues_of(bundle_copy)
    assert any("variables.chunk_size.default: 256 differs from the default of setting chunking.chunk_size ('200')"
               in i for i in found)
    assert any("variables.rrf_k.default: --var rrf_k=ten: expected an integer" in i for i in found)
    assert any("variables.chunk_overlap.description: should be the help text" in i for i in found)


def test_job_parameters_follow_the_settings(bundle_copy):  # noqa: F811
    def edit(job):
        job["parameters"] += [{"name": "chunk_sise", "default": "100"},        # near miss of a setting
                              {"name": "size", "default": "${var.chunk_size}"}]  # a setting under another name
        for p in job["parameters"]:
            if p["name"] == "chunk_overlap":
                p["default"] = "16"                                             # --var would miss the job
        job["tasks"][0]["python_wheel_task"]["named_parameters"]["chunk_size"] = "64"  # shadowed
        job["tasks"][1]["python_wheel_task"].pop("named_parameters")            # gets no parameters
    edit_job(bundle_copy, edit)
    found = issues_of(bundle_copy)
    assert any("'chunk_sise' is not a setting (did you mean 'chunk_size'?)" in i for i in found)
    assert any("parameter 'size' takes setting 'chunk_size' under another name" in i for i in found)
    assert any("parameter 'chunk_overlap' is setting chunking.chunk_overlap: its default must use ${var.chunk_overlap}"
               in i for i in found)
    assert any("tasks[0].python_wheel_task.named_parameters.chunk_size: job parameter 'chunk_size'" in i
               and "overrides this value ('64')" in i for i in found)
    assert any("tasks[1].python_wheel_task: needs a non-empty named_parameters" in i for i in found)


def test_an_unknown_field_in_a_job_fails_through_databricks_bundles(bundle_copy):  # noqa: F811
    edit_job(bundle_copy, lambda job: job.update(colour="red"))
    add_jobs(bundle_copy, {"typo_job": {"tasks": [
        {"task_key": "ok", "condition_task": {"op": "EQUAL_TO", "left": "1", "right": "1"}},
        {"task_key": "bad", "notebook_task": {"notebook_path": "../notebooks/01_ingest", "base_parameter": {}}}]}})
    found = issues_of(bundle_copy)
    assert "resources/ingest_job.yml: resources.jobs.ingest_job: databricks-bundles: Unexpected field 'colour' " \
           "for class Job" in found
    assert "resources/extra_jobs.yml: resources.jobs.typo_job.tasks[1]: databricks-bundles: Unexpected field " \
           "'base_parameter' for class NotebookTask" in found


def test_a_missing_required_field_and_a_bad_endpoint_fail_through_databricks_bundles(bundle_copy):  # noqa: F811
    add_jobs(bundle_copy, {"short_job": {"tasks": [{"task_key": "nb", "notebook_task": {}}]}})
    path = bundle_copy / "resources" / "rag_chain_serving.yml"
    data = yaml.safe_load(path.read_text())
    data["resources"]["model_serving_endpoints"]["rag_chain_endpoint"]["config"]["served_entity"] = []
    path.write_text(yaml.safe_dump(data))
    found = issues_of(bundle_copy)
    assert any("resources.jobs.short_job.tasks[0]: databricks-bundles: NotebookTask needs 'notebook_path'" in i
               for i in found)
    assert any(i.startswith("resources/rag_chain_serving.yml: resources.model_serving_endpoints.rag_chain_endpoint")
               and "'served_entity'" in i for i in found)


def test_the_review_app_resource_is_checked_by_databricks_bundles(bundle_copy):  # noqa: F811
    path = bundle_copy / "resources" / "review_app.yml"
    data = yaml.safe_load(path.read_text())
    [app] = data["resources"]["apps"].values()
    app["source_code_pth"] = app.pop("source_code_path")
    path.write_text(yaml.safe_dump(data))
    found = issues_of(bundle_copy)
    assert any(i.startswith("resources/review_app.yml: resources.apps.") and "'source_code_pth'" in i for i in found), found
