"""``ragops bundle run finetune_job`` as a user runs it: datasets → a short CPU SFT run on the real
SmolLM2 → ``rag_llm@candidate`` with its lineage → a chain on it, registered and gated by evaluate_job
→ ``ragops ask`` answers with the fine-tuned weights."""

from __future__ import annotations

import json

import pytest

from tests.conftest import copy_corpus
from tests.finetune.test_datasets import QUESTIONS
from tests.integration.test_ingest_job import ragops, run_record

pytestmark = pytest.mark.slow


def test_finetune_job_registers_rag_llm_and_a_gated_chain_that_answers_with_it(tmp_path):
    corpus = copy_corpus(tmp_path / "corpus")
    questions = tmp_path / "mini.jsonl"
    questions.write_text("".join(json.dumps({"question_id": q, "question": text, "expected_answers": a,
                                             "expected_doc_ids": d, "tags": [], "origin": "hand-written"}) + "\n"
                                 for q, text, a, d in QUESTIONS))
    common = ["--var", f"root={tmp_path / 'state'}", "--var", f"source_path={corpus}"]
    ingest = ragops("bundle", "run", "ingest_job", *common)
    assert ingest.returncode == 0, ingest.stderr[-3000:]

    proc = ragops("bundle", "run", "finetune_job", *common, "--var", "eval_set=mini", "--var",
                  f"eval_source={questions}", "--var", "finetune_eval_sets=mini", "--var", "max_steps=2",
                  "--var", "finetune_batch_size=1", "--var", "finetune_grad_accum=1", "--var", "eval_answers=false",
                  "--var", "finetune_validation_share=0", "--json")
    assert proc.returncode == 0, proc.stderr[-4000:]
    record = run_record(proc)
    tasks = {t["task_key"]: t for t in record["tasks"]}
    run = tasks["finetune"]["summary"]
    assert run["model"]["uri"] == "models:/rag_llm/1" and run["model"]["alias"] == "candidate"
    assert run["trainers"]["sft"]["steps"] == 2 and run["trainers"]["sft"]["tokens_per_s"] > 0
    assert run["datasets"]["sft_rows"]["train"] >= 5  # every question trains (no validation share)
    lineage = run["model"]["lineage"]
    assert lineage["base_model"] == "SmolLM2-135M-Instruct" and lineage["method"] == "sft"
    assert lineage["dataset_build_id"] == run["datasets"]["build_id"]
    assert lineage["source_eval_sets"] == "mini@1" and lineage["finetune_sft_version"] is not None

    # the chain on rag_llm@candidate, pinned to version 1, registered and sent through the gates
    chain = tasks["register_chain"]
    assert chain["status"] == "succeeded" and chain["summary"]["job"] == "rag_chain_job"
    logged = chain["summary"]["summaries"]["log_chain"]
    assert logged["lineage"]["llm_model_uri"] == "models:/rag_llm/1"
    assert "models:/rag_llm/1" in logged["lineage"]["llm"]
    gated = chain["summary"]["summaries"]["evaluate"]  # rag_chain_job's run_job_task → evaluate_job
    assert gated["job"] == "evaluate_job"
    assert gated["summaries"]["evaluate"]["promoted"]["version"] == logged["version"]  # no champion yet: it passes

    ask = ragops("ask", "On which port does the Lumen Collector listen for pushed data?", "--json",
                 "--var", f"root={tmp_path / 'state'}", "--model-uri", f"models:/rag_chain/{logged['version']}")
    assert ask.returncode == 0, ask.stderr[-3000:]
    out = json.loads(ask.stdout)
    assert out["answer"] and out["lineage"]["llm_model_uri"] == "models:/rag_llm/1"
