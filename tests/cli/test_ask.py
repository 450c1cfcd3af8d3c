"""``ragops ask``: the registered chain's answer on stdout, or one JSON object with usage and timings."""

from __future__ import annotations

import json

import pytest

from ragops.cli.main import main
from ragops.config import Settings
from ragops.models.log import log_chain
from tests.conftest import SAMPLE

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def registered(built):
    base, _ = built
    settings = Settings.from_variables({"root": str(base.root), "source_path": str(SAMPLE), "llm_max_new_tokens": "16"})
    return settings, log_chain(settings)


def test_ask_json_has_usage_and_timings(registered, capsys):
    settings, logged = registered
    code = main(["ask", "Which port does the collector listen on?", "--json", "--model-uri", logged.model_uri,
                 "--var", f"root={settings.root}", "--var", "llm_max_new_tokens=16"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["answer"] and out["model_version"] == logged.version
    assert out["sources"] and {"doc_id", "source_uri", "chunk_id", "score"} <= set(out["sources"][0])
    assert all(isinstance(out["usage"][k], int) and out["usage"][k] > 0 for k in ("prompt_tokens", "completion_tokens"))
    assert {"ttft_s", "total_s", "load_s"} <= set(out["timings"]) and out["timings"]["total_s"] > 0
    assert out["trace_id"] is None


def test_ask_prints_the_answer_sources_and_costs(registered, capsys):
    settings, _ = registered
    code = main(["ask", "Which port does the collector listen on?", "--trace", "--var", f"root={settings.root}"])
    captured = capsys.readouterr()
    assert code == 0 and "sources:" in captured.out
    assert "trace tr-" in captured.err and "completion tokens" in captured.err
