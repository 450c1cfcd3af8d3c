"""Evaluation metrics against hand-computed values (arithmetic in the comments), their edge cases
(None = not applicable, never NaN), the BEIR reference nDCG, and the metric-name helpers."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import sacrebleu

from ragops.chain.prompts import DONT_KNOW
from ragops.evaluation.metrics import (
    METRICS,
    MetricInfo,
    abstention,
    answer_contains,
    answer_relevance,
    bleu,
    context_relevance,
    exact_match,
    groundedness,
    hit_rate_at_k,
    info,
    is_abstention,
    metric_name,
    mlflow_name,
    mrr,
    ndcg_at_k,
    normalize_answer,
    precision_at_k,
    recall_at_k,
    rouge_l,
    semantic_similarity,
    split_claims,
    token_f1,
)

REPO = Path(__file__).resolve().parents[2]
LOG2_3 = math.log2(3)  # 1.58496


@pytest.fixture(scope="module")
def embed():
    from ragops.config import EmbeddingConfig
    from ragops.embedding import get_embedder

    return get_embedder(EmbeddingConfig()).encode


@pytest.fixture(scope="module")
def reference():
    """benchmarks/_common.py: the trec_eval/BEIR-style nDCG the retrieval benchmarks report."""
    spec = importlib.util.spec_from_file_location("bench_common", REPO / "benchmarks" / "_common.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("bench_common", module)
    spec.loader.exec_module(module)
    return module


# --- retrieval -----------------------------------------------------------------------------

# Chunk-level results: d1 was retrieved twice (two of its chunks); distinct ranking d1, d2, d3, d4.
RANKED = ["d1", "d1", "d2", "d3", "d4"]


def test_hit_rate_dedupes_chunks_of_one_document_before_the_cut():
    # distinct top 3 = d1, d2, d3 → d3 is a hit (without de-duplication the top 3 would be d1, d1, d2)
    assert hit_rate_at_k(RANKED, {"d3"}, 3) == 1.0
    assert hit_rate_at_k(RANKED, {"d3"}, 2) == 0.0
    assert hit_rate_at_k(RANKED, {"d9"}, 10) == 0.0
    assert hit_rate_at_k(RANKED, ["d4", "d9"], 10) == 1.0  # k beyond the list: all 4 distinct docs
    assert hit_rate_at_k(["a"], "a", 1) == 1.0  # a lone id is one id, not its characters


def test_recall_counts_the_share_of_relevant_documents_found():
    # distinct top 3 = d1, d2, d3; relevant {d2, d4} → 1 found / 2 relevant = 0.5
    assert recall_at_k(RANKED, {"d2", "d4"}, 3) == 0.5
    # k = 10 > 4 distinct docs: both found → 2 / 2
    assert recall_at_k(RANKED, {"d2", "d4"}, 10) == 1.0
    assert recall_at_k([], {"d2"}, 5) == 0.0


def test_precision_divides_by_k_even_when_fewer_documents_were_retrieved():
    # distinct top 3 = d1, d2, d3; relevant {d2, d3} → 2 / 3
    assert precision_at_k(RANKED, {"d2", "d3"}, 3) == pytest.approx(2 / 3)
    # only 4 distinct docs retrieved, k = 10 → 2 / 10 (empty slots are misses, trec_eval P@k)
    assert precision_at_k(RANKED, {"d2", "d3"}, 10) == pytest.approx(0.2)


def test_mrr_ranks_distinct_documents():
    # distinct ranking d1, d2, d3 → first relevant (d3) at rank 3 → 1/3 (raw chunk position would be 4)
    assert mrr(RANKED, {"d3"}) == pytest.approx(1 / 3)
    assert mrr(RANKED, {"d3", "d1"}) == 1.0
    assert mrr(RANKED, {"d3"}, k=2) == 0.0  # not within the first 2 distinct docs
    assert mrr(RANKED, {"d9"}) == 0.0


def test_retrieval_metrics_are_none_without_expected_docs_and_reject_bad_k():
    for fn in (hit_rate_at_k, recall_at_k, precision_at_k, ndcg_at_k):
        assert fn(RANKED, set(), 5) is None
        assert fn(RANKED, None, 5) is None
        with pytest.raises(ValueError, match="k must be an integer >= 1"):
            fn(RANKED, {"d1"}, 0)
    assert mrr(RANKED, []) is None
    with pytest.raises(ValueError, match="mrr: k must be"):
        mrr(RANKED, {"d1"}, k=0)


def test_ndcg_binary_and_graded_by_hand():
    # binary: ranking d1, d2, d3, relevant {d1, d3}
    # DCG = 1/log2(2) + 1/log2(4) = 1 + 0.5 = 1.5; IDCG = 1 + 1/log2(3) = 1.63093 → 0.91972
    assert ndcg_at_k(["d1", "d2", "d3"], {"d1", "d3"}, 3) == pytest.approx(1.5 / (1 + 1 / LOG2_3))
    assert ndcg_at_k(["d1", "d2", "d3"], {"d1", "d3"}, 3) == pytest.approx(0.91972, abs=1e-5)
    # graded: ranking d2, d1, d9 with grades d1=2, d2=1
    # DCG = 1/1 + 2/log2(3) = 2.26186; IDCG (d1 then d2) = 2/1 + 1/log2(3) = 2.63093 → 0.85972
    assert ndcg_at_k(["d2", "d1", "d9"], {"d1", "d2"}, 3, relevance={"d1": 2, "d2": 1}) == pytest.approx(
        (1 + 2 / LOG2_3) / (2 + 1 / LOG2_3))
    # IDCG is cut at k: 3 relevant docs, k = 1, the first one retrieved first → 1/1 = 1.0
    assert ndcg_at_k(["d1", "x"], {"d1", "d2", "d3"}, 1) == 1.0
    # duplicates do not earn gain twice: d1, d1, d2 → distinct d1, d2; relevant {d1} → 1/1 = 1.0
    assert ndcg_at_k(["d1", "d1", "d2"], {"d1"}, 3) == 1.0
    # nothing relevant retrieved → 0, not None
    assert ndcg_at_k(["x", "y"], {"d1"}, 2) == 0.0
    # no expected doc with a positive grade → not applicable
    assert ndcg_at_k(["d1"], {"d1"}, 3, relevance={"d1": 0}) is None


@pytest.mark.parametrize(("chunks", "qrels", "k"), [
    (["d1", "d2", "d3"], {"d1": 1, "d3": 1}, 3),
    (["d4", "d3", "d3", "d1", "d2", "d9"], {"d1": 2, "d2": 1, "d3": 1}, 5),
    (["x", "d1", "y", "d2", "d3"], {"d1": 1, "d2": 2, "d3": 1, "d4": 2}, 3),
    (["d5", "d6"], {"d1": 1}, 10),
    (["d1", "d1", "d2", "d2", "d1", "d3"], {"d2": 3, "d3": 1}, 2),
])
def test_ndcg_agrees_with_the_benchmark_reference(reference, chunks, qrels, k):
    ranking = reference.doc_ranking(chunks)  # the benchmarks de-duplicate the same way
    expected = reference.ndcg_at_k(ranking, qrels, k)
    assert ndcg_at_k(chunks, set(qrels), k, relevance=qrels) == pytest.approx(expected, abs=1e-12)
    if set(qrels.values()) == {1}:
        assert ndcg_at_k(chunks, set(qrels), k) == pytest.approx(expected, abs=1e-12)


# --- answers -------------------------------------------------------------------------------

def test_squad_normalisation():
    # lower → drop punctuation ("cat's" → "cats", "a-ok" → "aok") → drop a/an/the → collapse spaces
    assert normalize_answer("The Cat's  a-OK, an apple!") == "cats aok apple"
    assert normalize_answer("Theatre") == "theatre"  # articles only as whole words


def test_exact_match():
    assert exact_match("The 30 days.", ["30 days"]) == 1.0
    assert exact_match("thirty days", ["30 days"]) == 0.0
    assert exact_match("30D", ["2 years", "30d"]) == 1.0  # any reference
    assert exact_match("", ["30 days"]) == 0.0  # empty answer is wrong, not "not applicable"
    assert exact_match(None, ["30 days"]) == 0.0
    assert exact_match("30 days", []) is None
    assert exact_match("30 days", None) is None
    assert exact_match("30 days", ["", "  "]) is None  # only blank references: nothing to compare
    assert exact_match("30 days", "30 days") == 1.0  # a lone string is one reference


def test_token_f1_is_squad_f1_with_max_over_references():
    # pred tokens [port, is, 4817] ("the" dropped), ref [4817]: shared 1, P = 1/3, R = 1/1
    # F1 = 2 · (1/3) · 1 / (1/3 + 1) = 0.5
    assert token_f1("The port is 4817.", ["4817"]) == pytest.approx(0.5)
    # vs "port 22": shared {port}, P = 1/3, R = 1/2 → F1 = 2 · (1/6) / (5/6) = 0.4; the max is 0.5
    assert token_f1("The port is 4817.", ["port 22"]) == pytest.approx(0.4)
    assert token_f1("The port is 4817.", ["port 22", "4817"]) == pytest.approx(0.5)
    # bags, not sets: pred x x x y, ref x y y → shared min(3,1) + min(1,2) = 2; P = 2/4, R = 2/3
    # F1 = 2 · (1/2) · (2/3) / (1/2 + 2/3) = 4/7
    assert token_f1("x x x y", ["x y y"]) == pytest.approx(4 / 7)
    assert token_f1("An apple.", ["apple"]) == 1.0
    assert token_f1("", ["4817"]) == 0.0
    assert token_f1("4817", []) is None


def test_answer_contains_whole_token_spans():
    assert answer_contains("Raw samples are kept for 30 days [1].", ["30 days", "30d"]) == 1.0
    assert answer_contains("Raw samples are kept for 130 days.", ["30 days"]) == 0.0  # not a substring match
    assert answer_contains("It listens on 4817x.", ["4817"]) == 0.0
    assert answer_contains("It listens on port 4,817.", ["4817"]) == 1.0  # punctuation normalised away
    assert answer_contains("Tokens start with lmn_.", ["lmn_"]) == 1.0
    assert answer_contains("days 30", ["30 days"]) == 0.0  # contiguous, in order
    assert answer_contains("", ["30 days"]) == 0.0
    assert answer_contains("30 days", []) is None


def test_rouge_l_rewards_word_order():
    # [cat, sat, on, mat] vs [cat, is, on, mat]: LCS = cat on mat = 3; P = R = 3/4 → F = 0.75
    assert rouge_l("The cat sat on the mat.", ["The cat is on the mat."]) == pytest.approx(0.75)
    # same bag, reversed: LCS = 1 of 3 → P = R = 1/3 → F = 1/3, while token F1 is 1.0
    assert rouge_l("mat on cat", ["cat on mat"]) == pytest.approx(1 / 3)
    assert token_f1("mat on cat", ["cat on mat"]) == 1.0
    # pred [samples, kept, 30, days] vs ref [30, days]: LCS 2, P = 2/4, R = 2/2 → F = 2·0.5·1/1.5 = 2/3
    assert rouge_l("Samples kept 30 days", ["unrelated", "30 days"]) == pytest.approx(2 / 3)
    assert rouge_l("", ["30 days"]) == 0.0
    assert rouge_l("30 days", None) is None


def test_bleu_uses_all_references_at_once():
    pred, refs = "the cat sat on the mat", ["the cat sat on a mat", "a cat sat on the mat"]
    assert bleu(pred, refs) == pytest.approx(sacrebleu.sentence_bleu(pred, refs).score / 100)
    # multi-reference n-gram matching beats either reference alone
    assert bleu(pred, refs) > max(bleu(pred, [r]) for r in refs)
    assert bleu("Raw samples are kept for thirty days.", ["Raw samples are kept for thirty days."]) == 1.0
    assert bleu("Bananas are yellow.", ["Raw samples are kept for thirty days."]) < 0.1
    assert bleu("", ["30 days"]) == 0.0
    assert bleu("30 days", []) is None


def test_semantic_similarity_orders_paraphrase_above_unrelated(embed):
    ref = ["Raw samples are retained for 30 days."]
    identical = semantic_similarity("Raw samples are retained for 30 days.", ref, embed)
    paraphrase = semantic_similarity("Raw data points are kept for a month.", ref, embed)
    unrelated = semantic_similarity("The collector listens on port 4817.", ref, embed)
    assert identical == pytest.approx(1.0, abs=1e-3)
    assert identical > paraphrase > unrelated >= 0.0
    # max over references: adding an unrelated reference changes nothing
    both = semantic_similarity("Raw data points are kept for a month.", ["Bananas are yellow.", ref[0]], embed)
    assert both == pytest.approx(paraphrase, abs=1e-5)
    assert semantic_similarity("", ref, embed) == 0.0
    assert semantic_similarity("anything", [], embed) is None


def test_semantic_similarity_clips_negative_cosine_and_refuses_nan():
    def opposite(texts: list[str]) -> np.ndarray:
        return np.array([[1.0, 0.0]] + [[-1.0, 0.0]] * (len(texts) - 1), dtype=np.float32)

    assert semantic_similarity("a", ["b"], opposite) == 0.0

    def broken(texts: list[str]) -> np.ndarray:
        return np.full((len(texts), 2), np.nan, dtype=np.float32)

    with pytest.raises(ValueError, match="NaN"):
        semantic_similarity("a", ["b"], broken)


# --- RAG -----------------------------------------------------------------------------------

CONTEXTS = ["Raw samples are retained for 30 days by default.", "The collector listens on port 4817."]


def test_claims_drop_citations_and_short_fragments():
    text = "Raw samples are kept for 30 days [1]. Yes. The 1-hour rollups are kept 2 years [2][3].\n- port 4817 [1, 2]"
    assert split_claims(text) == ["Raw samples are kept for 30 days.", "The 1-hour rollups are kept 2 years.",
                                  "port 4817"]


def test_groundedness_by_hand():
    answer = "Raw samples are kept for 30 days [1]. The collector runs on Mars."
    # claim 1 content tokens: raw samples kept 30 days → 4 of 5 in the contexts ("kept" is not) = 0.8 ≥ 0.6
    # claim 2 content tokens: collector runs mars → 1 of 3 = 0.33 < 0.6
    # → 1 supported / 2 claims = 0.5
    assert groundedness(answer, CONTEXTS) == 0.5
    assert groundedness(answer, CONTEXTS, threshold=0.9) == 0.0  # 0.8 < 0.9: neither claim
    assert groundedness("Raw samples are retained for 30 days [1].", CONTEXTS) == 1.0


def test_groundedness_edge_cases():
    assert groundedness("", CONTEXTS) is None
    assert groundedness(DONT_KNOW, CONTEXTS) is None  # abstaining claims nothing
    assert groundedness("I do not know.", []) is None
    assert groundedness("Yes.", CONTEXTS) is None  # no claim to check
    assert groundedness("The collector listens on port 4817.", []) == 0.0  # nothing supports it
    assert groundedness("The collector listens on port 4817.", ["", " "]) == 0.0
    with pytest.raises(ValueError, match="threshold"):
        groundedness("The collector listens on port 4817.", CONTEXTS, threshold=0)


def test_answer_relevance(embed):
    question = "How long are raw samples kept?"
    on_topic = answer_relevance(question, "Raw samples are retained for 30 days.", embed)
    off_topic = answer_relevance(question, "Bananas are yellow.", embed)
    assert 0.0 <= off_topic < on_topic <= 1.0
    assert answer_relevance(question, question, embed) == pytest.approx(1.0, abs=1e-3)
    assert answer_relevance(question, DONT_KNOW, embed) == 0.0
    assert answer_relevance(question, "", embed) == 0.0
    assert answer_relevance("", "anything", embed) is None


def test_context_relevance_lexical_and_embedded(embed):
    question = "How long are raw samples kept?"
    # question content tokens: long raw samples kept ("how", "are" are stop-words)
    # context 1 has raw samples kept = 3/4; context 2 has none = 0 → mean (0.75 + 0) / 2 = 0.375
    assert context_relevance(question, ["Raw samples are kept for 30 days.", CONTEXTS[1]]) == 0.375
    assert context_relevance(question, []) is None
    assert context_relevance(question, None) is None
    on_topic = context_relevance(question, [CONTEXTS[0]], embed=embed)
    off_topic = context_relevance(question, [CONTEXTS[1]], embed=embed)
    assert 0.0 <= off_topic < on_topic <= 1.0
    assert context_relevance(question, CONTEXTS, embed=embed) == pytest.approx((on_topic + off_topic) / 2, abs=1e-5)


def test_abstention():
    assert abstention(DONT_KNOW, answerable=False) == 1.0
    assert abstention("I do not know.", answerable=False) == 1.0
    assert abstention("i don\u2019t know, sorry", answerable=False) == 1.0  # curly apostrophe
    assert abstention("The limit is 48 panels.", answerable=False) == 0.0  # a made-up answer
    assert abstention("", answerable=False) == 0.0
    assert abstention(DONT_KNOW, answerable=True) is None
    assert is_abstention("Well, I don't know the answer") is False  # must lead with it
    assert is_abstention(None) is False


def test_no_metric_returns_nan_or_leaves_the_range():
    answers = ["", " ", "the", "?!", "30 days", DONT_KNOW, "a " * 50]
    refs = [[], [""], ["the"], ["30 days"], ["?!", "x"]]
    for a in answers:
        for r in refs:
            for fn in (exact_match, token_f1, answer_contains, rouge_l, bleu):
                value = fn(a, r)
                assert value is None or 0.0 <= value <= 1.0, (fn.__name__, a, r, value)
        for ctx in ([], [""], ["the"], CONTEXTS):
            for value in (groundedness(a, ctx), context_relevance(a, ctx)):
                assert value is None or 0.0 <= value <= 1.0


# --- names ---------------------------------------------------------------------------------

def test_metric_registry_covers_the_canonical_names():
    assert set(METRICS) == {
        "hit_rate@k", "recall@k", "precision@k", "mrr", "ndcg@k", "exact_match", "answer_f1", "answer_contains",
        "rouge_l", "bleu", "semantic_similarity", "groundedness", "answer_relevance", "context_relevance",
        "abstention",
    }
    for name, meta in METRICS.items():
        assert isinstance(meta, MetricInfo) and meta.name == name
        assert meta.kind in {"retrieval", "answer", "rag"} and meta.description and meta.needs
    assert METRICS["recall@k"].needs == ("retrieved", "expected_doc_ids")


def test_metric_name_mlflow_name_and_info():
    assert metric_name("recall", 5) == "recall@5"
    assert metric_name("ndcg@k", 10) == "ndcg@10"
    assert metric_name("answer_f1") == "answer_f1"
    assert metric_name("mrr") == "mrr" and metric_name("mrr", 10) == "mrr@10"
    with pytest.raises(ValueError, match="needs a cut-off"):
        metric_name("recall")
    with pytest.raises(ValueError, match="takes no cut-off"):
        metric_name("exact_match", 5)
    with pytest.raises(ValueError, match="k must be an integer >= 1"):
        metric_name("recall", 0)
    with pytest.raises(ValueError, match="known metrics: hit_rate@k, recall@k"):
        metric_name("recal", 5)

    assert mlflow_name("recall@5") == "recall_at_5"
    assert mlflow_name("answer_f1") == "answer_f1"

    assert info("recall@5") is METRICS["recall@k"]
    assert info("recall_at_5") is METRICS["recall@k"]  # names read back from MLflow
    assert info("mrr@10") is METRICS["mrr"]
    assert info("answer_f1").kind == "answer"
    with pytest.raises(ValueError, match=r"unknown metric 'f1'.*answer_f1"):
        info("f1")
    with pytest.raises(ValueError, match="unknown metric"):
        info("exact_match@5")
