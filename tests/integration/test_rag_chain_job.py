"""``ragops bundle run rag_chain_job`` then ``ragops ask``: the issue-3 interface, as a user runs it.
The job evaluates what it registered (evaluate_job as a run_job_task) and promotes it on pass."""

from __future__ import annotations

import json

import pytest

from ragops.models.registry import alias_version, versions_frame
from tests.integration.test_ingest_job import ragops, run_record

pytestmark = pytest.mark.slow


def test_rag_chain_job_registers_evaluates_and_promotes_and_ask_uses_it(built):
    settings, _ = built
    root = f"root={settings.root}"
    before = len(versions_frame(settings))
    proc = ragops("bundle", "run", "rag_chain_job", "--var", root, "--var", "llm_max_new_tokens=16",
                  "--var", "eval_answers=false", "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = run_record(proc)
    summary = record["tasks"][0]["summary"]
    frame = versions_frame(settings)
    assert len(frame) == before + 1
    assert summary["version"] == str(frame["version"].max()) == alias_version(settings, "challenger")
    assert summary["lineage"]["index_snapshot"] == frame["index_snapshot"].iloc[-1]

    # evaluated right after registration, in the same run: the gates passed and it is @champion now
    evaluate = {t["task_key"]: t for t in record["tasks"]}["evaluate"]
    assert evaluate["status"] == "succeeded" and evaluate["summary"]["job"] == "evaluate_job"
    verdict = evaluate["summary"]["summaries"]["evaluate"]
    assert verdict["challenger_version"] == summary["version"] and verdict["promoted"]["version"] == summary["version"]
    assert alias_version(settings, "champion") == summary["version"]
    assert "rag_chain_job.evaluate → evaluate_job.evaluate succeeded" in proc.stderr

    ask = ragops("ask", "What is the default retention period for raw samples?", "--json", "--trace", "--var", root,
                 "--model-uri", f"models:/rag_chain/{summary['version']}")
    assert ask.returncode == 0, ask.stderr[-3000:]
    out = json.loads(ask.stdout)
    assert out["answer"] and out["model_version"] == summary["version"] and out["trace_id"].startswith("tr-")
    assert "guides/retention.md" in [s["doc_id"] for s in out["sources"]]
    assert set(out["sources"][0]) == {"doc_id", "source_uri", "chunk_id", "score"}


def test_ask_without_a_registered_model_says_what_to_run(tmp_path):
    proc = ragops("ask", "anything", "--var", f"root={tmp_path}")
    assert proc.returncode == 2 and "run `ragops bundle run rag_chain_job` first" in proc.stderr
