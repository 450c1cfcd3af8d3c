"""Log → register → alias → load → predict, as a user of the registry would, plus HTTP serving."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import warnings
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from ragops.chain import DONT_KNOW
from ragops.config import Settings
from ragops.llm import llm_identity
from ragops.models.log import log_chain
from ragops.models.registry import ModelNotRegisteredError, alias_version, default_model_uri, promote
from ragops.tracking import configure_mlflow
from tests.conftest import REPO, SAMPLE

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def registered(built):
    base, _ = built
    settings = Settings.from_variables({"root": str(base.root), "source_path": str(SAMPLE), "llm_max_new_tokens": "16"})
    logged = log_chain(settings)
    return settings, logged


def test_new_versions_are_challengers_with_lineage(registered):
    settings, logged = registered
    client = configure_mlflow(settings)
    mv = client.get_model_version(logged.model_name, logged.version)
    assert alias_version(settings, "challenger") == logged.version
    assert mv.tags["index_snapshot"] == logged.lineage["index_snapshot"]
    assert mv.tags["index_source_version"] == str(logged.lineage["index_source_version"])
    assert mv.tags["prompt"] == "rag_answer@production" and mv.tags["llm"] == llm_identity(settings.llm)
    assert mv.tags["llm"].endswith(":SmolLM2-135M-Instruct")
    assert len(mv.tags["chain_config_hash"]) == 12


def test_promote_then_load_champion_in_a_plain_session(registered):
    settings, logged = registered
    change = promote(settings)
    assert change.version == logged.version and alias_version(settings, "champion") == logged.version
    assert default_model_uri(settings).endswith("@champion")
    # a fresh interpreter with only the tracking URI: the documented way to use the model
    question = {"messages": [{"role": "user", "content": "What is the capital of Mongolia?"}]}
    code = (
        f"import mlflow, json; mlflow.set_tracking_uri({settings.tracking_uri!r}); "
        "m = mlflow.pyfunc.load_model('models:/rag_chain@champion'); "
        f"print(json.dumps(m.predict({question!r})))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, cwd="/tmp",
                          env={**os.environ, "MLFLOW_ENABLE_ASYNC_TRACE_LOGGING": "false"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "type hints" not in proc.stderr  # what `ragops ask` used to print before every answer
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["answer"] == DONT_KNOW and out["lineage"]["index_snapshot"] == logged.lineage["index_snapshot"]


def test_chat_and_batch_inputs(registered):
    settings, logged = registered
    configure_mlflow(settings)
    model = mlflow.pyfunc.load_model(logged.model_uri)
    out = model.predict({"messages": [{"role": "user", "content": "What is the default retention period?"}]})
    assert isinstance(out, dict) and "guides/retention.md" in [s["doc_id"] for s in out["sources"]]
    batch = model.predict(pd.DataFrame({"question": ["What is the default retention period?", "Capital of Mongolia?"]}))
    assert isinstance(batch, list) and len(batch) == 2 and batch[1]["answer"] == DONT_KNOW
    with pytest.raises(Exception, match="last message must have role 'user'"):
        model.predict({"messages": [{"role": "assistant", "content": "hi"}]})


def test_loading_and_predicting_warns_nothing_about_type_hints(registered):
    settings, logged = registered
    configure_mlflow(settings)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = mlflow.pyfunc.load_model(logged.model_uri)  # runs rag_model.py: defines the class afresh
        model.predict({"messages": [{"role": "user", "content": "What is the default retention period?"}]})
    hints = [str(w.message) for w in caught if issubclass(w.category, UserWarning) and "type hint" in str(w.message)]
    assert hints == []


def test_promote_unknown_version_is_a_clear_error(registered):
    settings, _ = registered
    with pytest.raises(ModelNotRegisteredError, match="no version 999"):
        promote(settings, "999")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _post(url: str, body: bytes) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=300) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def test_served_endpoint_over_http(registered, tmp_path):
    settings, logged = registered
    port = _free_port()
    log_file = open(tmp_path / "serve.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [str(Path(sys.executable).with_name("ragops")), "serve", "--port", str(port), "--var", f"root={settings.root}"],
        cwd=REPO, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 240
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(f"{base}/ping", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(1)
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
        else:
            pytest.fail("server did not come up: " + (tmp_path / "serve.log").read_text()[-3000:])

        status, body = _post(f"{base}/invocations", json.dumps(
            {"messages": [{"role": "user", "content": "What is the default retention period?"}]}).encode())
        assert status == 200, body
        assert body["answer"] and "guides/retention.md" in [s["doc_id"] for s in body["sources"]]
        assert body["usage"]["completion_tokens"] > 0 and body["usage"]["prompt_tokens"] > 0
        assert 0 < body["timings"]["ttft_s"] <= body["timings"]["total_s"]

        status, body = _post(f"{base}/invocations", json.dumps(
            {"dataframe_records": [{"question": "What is the capital of Mongolia?"}]}).encode())
        assert status == 200 and body["predictions"][0]["answer"] == DONT_KNOW

        status, body = _post(f"{base}/invocations", b"{not json")
        assert status == 400 and "message" in body
        status, body = _post(f"{base}/invocations", json.dumps({"messages": "hello"}).encode())
        assert status == 400 and body.get("message")
        status, body = _post(f"{base}/invocations", json.dumps({"messages": [{"role": "user"}]}).encode())
        assert status == 400 and body.get("message")
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=30)
        log_file.close()
