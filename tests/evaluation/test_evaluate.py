"""Evaluating a chain: numbers a user can check by hand, both harnesses agreeing, lineage recorded,
failures counted instead of averaged, and a past evaluation re-run exactly (time travel)."""

from __future__ import annotations

import json
from dataclasses import replace

import mlflow
import pytest

from ragops.config import EvaluationConfig
from ragops.evaluation import metrics as M
from ragops.evaluation.base import evaluate, rerun
from ragops.evaluation.entities import EvalTarget
from ragops.evaluation.eval_sets import load_jsonl, read_eval_set, register_eval_set
from ragops.evaluation.results import load_result
from ragops.lakehouse import open_lakehouse

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def chain(small_state):
    from ragops.chain.prompts import ensure_prompts, resolve_prompt
    from ragops.chain.rag import RagChain
    from ragops.index.search import Searcher
    from ragops.llm import get_chat_model
    from ragops.tracking import configure_mlflow

    settings, _, _ = small_state
    configure_mlflow(settings)
    ensure_prompts()
    return RagChain(Searcher.open(settings), get_chat_model(settings.llm),
                    resolve_prompt("rag_answer", "production"), settings.chain)


@pytest.fixture(scope="module")
def lh(small_state):
    settings, _, _ = small_state
    lh = open_lakehouse(settings)
    register_eval_set(lh, "small", load_jsonl(settings.evaluation.source))
    return lh


def test_retrieval_metrics_match_a_hand_computation_and_both_harnesses_agree(small_state, chain, lh):
    settings, _, _ = small_state
    options = EvaluationConfig(answers=False, harness="direct")
    direct = evaluate(settings, lh, EvalTarget(chain), "small", options=options)
    via_mlflow = evaluate(settings, lh, EvalTarget(chain), "small", options=EvaluationConfig(answers=False))
    es = read_eval_set(lh, "small")
    expected = dict(zip(es.frame["question_id"], es.frame["expected_doc_ids"], strict=True))
    pq = direct.per_question.set_index("question_id")
    by_hand = [M.recall_at_k(list(pq.loc[q, "retrieved_doc_ids"]), list(expected[q]), 5) for q in pq.index]
    scored = [v for v in by_hand if v is not None]
    assert direct.summaries["recall@5"].mean == pytest.approx(sum(scored) / len(scored))
    assert direct.summaries["recall@5"].n == 5 and direct.summaries["recall@5"].n_not_applicable == 3
    s = direct.summaries["ndcg@10"]
    assert s.ci_low <= s.mean <= s.ci_high
    assert direct.metrics() == pytest.approx(via_mlflow.metrics())
    # aggregates on the run (MLflow-safe names), per-question rows in Delta with lineage
    run = mlflow.get_run(direct.run_id)
    assert run.data.metrics["recall_at_5"] == pytest.approx(direct.summaries["recall@5"].mean)
    assert "recall_at_5_ci_low" in run.data.metrics and run.data.params["eval_set_version"] == "1"
    rows = lh.read("eval_results", where={"run_id": [direct.run_id]})
    assert len(rows) == 8
    assert set(rows["index_snapshot"]) == {chain.searcher.manifest.snapshot_id}
    assert set(rows["eval_set_version"]) == {1} and rows["prompt_version"].notna().all()
    assert json.loads(rows.iloc[0]["scores"]).keys() >= {"recall@5", "ndcg@10", "mrr"}


def test_a_failing_metric_is_counted_and_never_averaged_in(small_state, chain, lh, monkeypatch):
    settings, _, _ = small_state
    real, calls = M.groundedness, []

    def flaky(answer, contexts, **kw):
        calls.append(1)
        if len(calls) == 2:
            raise TimeoutError("judge timed out")
        return real(answer, contexts, **kw)

    monkeypatch.setitem(M.METRICS, "groundedness", replace(M.METRICS["groundedness"], fn=flaky))
    result = evaluate(settings, lh, EvalTarget(chain), "small",
                      options=EvaluationConfig(answers=True, harness="direct", limit=3))
    g = result.summaries["groundedness"]
    assert g.n_failed == 1 and g.n + g.n_not_applicable == 2  # 3 questions: 1 failed, 2 scored or n/a
    assert result.to_dict()["failures"] == {"groundedness": 1}
    assert "TimeoutError" in json.dumps(result.per_question["failures"].tolist())
    assert mlflow.get_run(result.run_id).data.metrics["groundedness_failed"] == 1
    assert result.per_question["answer"].map(bool).all()  # every question was answered by the LLM


def test_rerun_reads_the_same_eval_set_version_and_gives_the_same_numbers(small_state, lh):
    from ragops.models.log import log_chain

    settings, _, _ = small_state
    logged = log_chain(settings)
    from ragops.evaluation.base import evaluate_model

    first = evaluate_model(settings, lh, logged.model_uri, "small",
                           options=EvaluationConfig(answers=False, harness="direct"))
    # the eval set moves on: a question changes, so "small" gets a version 2
    frame = load_jsonl(settings.evaluation.source)
    frame.loc[0, "expected_doc_ids"] = ["release-notes/4.0.0.txt"]
    assert register_eval_set(lh, "small", frame).version == 2
    again = rerun(settings, lh, first.run_id)
    assert again.eval_set_version == 1 and again.eval_sets_table_version == first.eval_sets_table_version
    assert again.metrics() == pytest.approx(first.metrics())
    assert mlflow.get_run(again.run_id).data.tags["ragops.eval.rerun_of"] == first.run_id
    stored = load_result(settings, lh, first.run_id)
    assert stored.metrics() == pytest.approx(first.metrics())
