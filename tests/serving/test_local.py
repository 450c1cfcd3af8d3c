"""``ragops ask``'s warm path: the same answer as ``mlflow.pyfunc.load_model``, usage and timings,
one download per model version, and the light alias → version look-up."""

from __future__ import annotations

import json

import mlflow
import pytest

from ragops.config import Settings
from ragops.models import registry
from ragops.models.log import log_chain
from ragops.models.registry import alias_version
from ragops.serving import local
from ragops.serving.local import ask, ask_pyfunc, cached_model, model_cache_dir, resolve_version
from tests.conftest import SAMPLE

pytestmark = pytest.mark.slow

QUESTION = "Which port does the collector listen on?"


@pytest.fixture(scope="module")
def registered(built):
    base, _ = built
    settings = Settings.from_variables({"root": str(base.root), "source_path": str(SAMPLE), "llm_max_new_tokens": "16"})
    return settings, log_chain(settings)


def test_warm_path_and_pyfunc_give_the_same_answer_and_sources(registered):
    settings, logged = registered
    warm = ask(settings, QUESTION, logged.model_uri)
    served = ask_pyfunc(settings, QUESTION, logged.model_uri)
    assert warm["answer"] == served["answer"] and warm["answer"]
    assert warm["sources"] == served["sources"] and warm["sources"]
    assert warm["model_version"] == served["model_version"] == logged.version
    assert warm["usage"] == served["usage"]


def test_answer_reports_usage_and_timings(registered):
    settings, logged = registered
    out = ask(settings, QUESTION, logged.model_uri)
    usage, timings = out["usage"], out["timings"]
    assert isinstance(usage["prompt_tokens"], int) and usage["prompt_tokens"] > 0
    assert isinstance(usage["completion_tokens"], int) and 0 < usage["completion_tokens"] <= 16
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert 0 < timings["ttft_s"] <= timings["total_s"] and timings["load_s"] >= 0 and timings["resolve_s"] >= 0
    assert out["trace_id"] is None  # no trace unless asked


def test_a_trace_only_when_asked(registered):
    settings, logged = registered
    out = ask(settings, QUESTION, logged.model_uri, trace=True)
    mlflow.flush_trace_async_logging()
    assert out["trace_id"] and mlflow.get_trace(out["trace_id"]) is not None


def test_artifacts_are_downloaded_once_per_version(registered, monkeypatch):
    settings, logged = registered
    ref, _ = resolve_version(settings, logged.model_uri)
    folder, _ = cached_model(settings, ref)
    assert folder == model_cache_dir(settings, ref) / "model" and (folder / "MLmodel").exists()

    def no_download(*args, **kwargs):
        raise AssertionError("the cached copy must be reused")

    monkeypatch.setattr(mlflow.artifacts, "download_artifacts", no_download)
    monkeypatch.setattr(local, "_CHAINS", {})  # a fresh process: only the disk cache is left
    assert cached_model(settings, ref) == (folder, False)
    assert ask(settings, QUESTION, logged.model_uri)["answer"]


def test_a_cache_of_another_model_under_the_same_number_is_replaced(registered):
    settings, logged = registered
    ref, _ = resolve_version(settings, logged.model_uri)
    cached_model(settings, ref)
    marker = model_cache_dir(settings, ref) / local.CACHE_MARKER
    marker.write_text(json.dumps({"source": "models:/m-some-other-model"}))
    folder, downloaded = cached_model(settings, ref)
    assert downloaded and json.loads(marker.read_text())["source"] == ref.source and (folder / "MLmodel").exists()


def test_the_light_lookup_agrees_with_the_registry(registered, monkeypatch):
    settings, logged = registered
    ref, uri = resolve_version(settings, "models:/rag_chain@challenger")
    assert ref.version == alias_version(settings, "challenger") and uri == "models:/rag_chain@challenger"
    assert resolve_version(settings, logged.version)[0].version == logged.version
    ref, uri = resolve_version(settings, None)
    assert uri.endswith(("@champion", "@challenger"))
    light = resolve_version(settings, "challenger")[0]

    def other_schema(*args):
        raise registry.sqlite3.OperationalError("no such table: registered_model_aliases")

    monkeypatch.setattr(registry, "_sqlite_lookup", other_schema)  # falls back to MLflow's client
    assert resolve_version(settings, "challenger")[0] == light


def test_an_unknown_alias_is_a_clear_error(registered):
    from ragops.models.registry import ModelNotRegisteredError

    settings, _ = registered
    with pytest.raises(ModelNotRegisteredError, match="names no registered version"):
        ask(settings, QUESTION, "models:/rag_chain@nope")


def test_workers_share_the_cores(registered, monkeypatch):
    settings, logged = registered
    monkeypatch.delenv("RAGOPS_LLM_THREADS", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    cmd, env = local.scoring_server_command(settings, logged.model_uri, "127.0.0.1", 5999, workers=64)
    assert cmd[-2:] == ["-w", "64"] and env["RAGOPS_LLM_THREADS"] == env["OMP_NUM_THREADS"] == "1"
    _, env = local.scoring_server_command(settings, logged.model_uri, "127.0.0.1", 5999, workers=1)
    assert "RAGOPS_LLM_THREADS" not in env  # one worker: the backend's own default


def test_serve_batches_concurrent_requests_unless_told_not_to(registered, monkeypatch):
    from ragops.llm.openvino_llm import OpenVinoChatModel

    settings, logged = registered
    _, on = local.scoring_server_command(settings, logged.model_uri, "127.0.0.1", 5999)
    _, off = local.scoring_server_command(settings, logged.model_uri, "127.0.0.1", 5999, batching=False)
    assert on["RAGOPS_LLM_BATCHING"] == "1" and off["RAGOPS_LLM_BATCHING"] == "0"
    for env, expected in ((on, True), (off, False)):  # what the served chain's model then does
        monkeypatch.setenv("RAGOPS_LLM_BATCHING", env["RAGOPS_LLM_BATCHING"])
        assert OpenVinoChatModel(model_name="any").batching is expected
