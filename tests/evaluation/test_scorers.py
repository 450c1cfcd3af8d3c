"""The scorers are wired from the metrics' own declarations: the names and order the evaluator
logs, and a new metric file picked up with no other edit."""

from __future__ import annotations

import sys

import numpy as np

from ragops.evaluation import metrics as M
from ragops.evaluation.scorers import build_scorers, canonical_names

ROW = ({"question_id": "q1", "question": "How long are raw samples kept?"},
       {"answer": "Raw samples are kept for 30 days.", "retrieved_doc_ids": ["b", "a", "c"],
        "contexts": ["Raw samples are kept for 30 days by default."]},
       {"expected_answers": ["30 days"], "expected_doc_ids": ["a"], "answerable": True})


def embed(texts: list[str]) -> np.ndarray:
    return np.ones((len(texts), 3))


def names(**kw) -> list[str]:
    return list(canonical_names(build_scorers(**{"ks": (5, 10), "ndcg_k": 10, **kw})).values())


def test_the_declared_metrics_give_the_logged_names_in_order():
    assert names(answers=True, embed=embed) == [
        "hit_rate@5", "recall@5", "precision@5", "hit_rate@10", "recall@10", "precision@10", "mrr", "ndcg@10",
        "exact_match", "answer_f1", "answer_contains", "rouge_l", "bleu", "semantic_similarity",
        "context_relevance", "groundedness", "abstention", "answer_relevance"]
    # retrieval-only: nothing that reads the answer; no embedder: nothing that embeds
    assert names(answers=False, embed=embed) == [
        "hit_rate@5", "recall@5", "precision@5", "hit_rate@10", "recall@10", "precision@10", "mrr", "ndcg@10",
        "context_relevance"]
    assert "semantic_similarity" not in names(answers=True) and "answer_relevance" not in names(answers=True)


def test_scores_are_the_metric_functions_on_the_row():
    (retrieval, answer, rag) = build_scorers(ks=(1,), ndcg_k=3, answers=True, embed=embed)
    scores = {**retrieval.score(*ROW), **answer.score(*ROW), **rag.score(*ROW)}
    assert scores["recall@1"] == (0.0, None) and scores["mrr"] == (0.5, None)
    assert scores["ndcg@3"] == (M.ndcg_at_k(["b", "a", "c"], ["a"], 3), None)
    assert scores["answer_contains"] == (1.0, None) and scores["abstention"] == (None, None)
    assert scores["answer_f1"][0] == M.token_f1("Raw samples are kept for 30 days.", ["30 days"])


def test_a_new_metric_is_one_file(tmp_path, monkeypatch):
    (tmp_path / "answer_length.py").write_text(
        "from ragops.evaluation.metrics._metric import MetricInfo\n\n\n"
        "def answer_length(answer):\n    return min(1.0, len(answer.split()) / 10)\n\n\n"
        "METRIC = MetricInfo('answer_length', 'answer', 'answer words / 10, at most 1', answer_length,\n"
        "                    needs=('answer',))\n")
    monkeypatch.setattr(M, "__path__", [*M.__path__, str(tmp_path)])
    try:
        M.discover()
        assert M.info("answer_length").needs == ("answer",)
        specs = build_scorers(ks=(5,), ndcg_k=10, answers=True)
        assert "answer_length" in canonical_names(specs).values()
        answer = next(s for s in specs if s.name == "answer")
        assert answer.score(*ROW)["answer_length"] == (0.7, None)
        assert "answer_length" not in names(answers=False)  # it reads the answer
    finally:
        M.METRICS.pop("answer_length", None)
        sys.modules.pop("ragops.evaluation.metrics.answer_length", None)
