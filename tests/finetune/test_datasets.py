"""Fine-tuning datasets: the chain's own prompt, "don't know" rows, DPO pairs, feedback, and a leak-free split."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime

import pandas as pd
import pytest

from ragops.chain import DONT_KNOW, RagChain
from ragops.evaluation.eval_sets import register_eval_set
from ragops.finetune.datasets import (
    DPO_TABLE,
    SFT_TABLE,
    FinetuneDataError,
    build_datasets,
    read_dpo,
    read_sft,
    split_groups,
)
from ragops.lakehouse import open_lakehouse
from ragops.llm.messages import to_dicts
from tests.conftest import copy_corpus, run_pipeline

RETENTION = "guides/retention.md"
COLLECTOR = "guides/collector-setup.md"
PORTS = "reference/ports-and-protocols.html"
SLA = "pricing/support-sla.pdf"
KB = "kb/kb-1042-disk-full.json"

QUESTIONS = [
    ("q001", "What is the default retention period for raw samples in a Lumen tenant?", ["30 days"], [RETENTION]),
    ("q001b", "How long does Lumen keep raw samples unless configured otherwise?", ["30 days"], [RETENTION]),
    ("q002", "On which port does the Lumen Collector listen for pushed data in the native gRPC protocol?", ["4817"],
     [COLLECTOR]),
    ("q019", "Which port do Lumen cluster nodes use for Raft consensus traffic?", ["9472"], [PORTS]),
    ("q023", "What is the initial response time for a Severity 1 incident on the Enterprise edition?", ["1 hour"],
     [SLA]),
    ("q029", "Which command shows how much disk space each tenant uses?", ["lumenctl storage usage --by tenant"],
     [KB]),
    ("q040", "Which port does the collector use, and how long are raw samples kept?", ["4817"], [COLLECTOR, RETENTION]),
]


def _frame(rows, tags=None) -> pd.DataFrame:
    return pd.DataFrame([{"question_id": q, "question": text, "expected_answers": a, "expected_doc_ids": d,
                          "tags": tags or [], "origin": "hand-written"} for q, text, a, d in rows])


@pytest.fixture(scope="module")
def target(tmp_path_factory):
    """The small corpus indexed once, with a training eval set, a holdout eval set and served feedback."""
    from ragops.config import Settings

    root = tmp_path_factory.mktemp("finetune-data")
    corpus = copy_corpus(root / "corpus")
    settings = Settings.from_variables({
        "root": str(root / "state"), "source_path": str(corpus), "finetune_eval_sets": "train_pool",
        "finetune_holdout_eval_set": "gate", "finetune_validation_share": "0.25", "finetune_dont_know_share": "0.99",
    })
    run_pipeline(settings)
    with open_lakehouse(settings) as lh:
        pool = _frame(QUESTIONS)
        unanswerable = pd.DataFrame([{"question_id": "u1", "question": "Which port does the Lumen mobile app use for push notifications?",
                                      "expected_answers": [], "expected_doc_ids": [], "tags": ["unanswerable"],
                                      "origin": "hand-written"}])
        register_eval_set(lh, "train_pool", pd.concat([pool, unanswerable], ignore_index=True))
        # the gates score q023's document: it (and anything sharing a document with it) never trains
        register_eval_set(lh, "gate", _frame([("g1", "How fast is a Severity 1 incident answered?", ["1 hour"],
                                               [SLA])]))
        _serve_and_rate(lh)
    return settings


def _feedback_frame(rows: list[dict]) -> pd.DataFrame:
    from ragops.lakehouse.schemas import spec

    frame = pd.DataFrame(rows).reindex(columns=spec("feedback").columns)
    frame["created_at"] = pd.to_datetime(frame["created_at"], utc=True)
    frame["rating"] = frame["rating"].astype("Int32")
    return frame.astype({c: object for c in ("comment", "corrected_answer", "key_name", "user_id")}).where(
        frame.notna(), None)


def _serve_and_rate(lh) -> None:
    from ragops.serving.gateway.journal import rows_to_frame

    now = datetime.now(UTC)
    log = [
        ("r1", "What does kb-1042 recommend when the disk is full?", "Delete everything.", KB),
        ("r2", "What does kb-1042 recommend when the disk is full?", "Run lumenctl storage usage --by tenant "
         "and drop old tenants.", KB),
        ("r3", "Which port serves the Lumen web UI?", "Port 80.", PORTS),
    ]
    lh.upsert("inference_log", rows_to_frame([{
        "request_id": rid, "shadow": False, "timestamp": now.isoformat(), "question": q, "answer": a,
        "sources": json.dumps([{"doc_id": doc, "chunk_id": f"{doc}#0", "score": 1.0}])} for rid, q, a, doc in log]))
    lh.upsert("feedback", _feedback_frame([
        {"feedback_id": "f1", "request_id": "r1", "rating": -1, "comment": "wrong", "created_at": now},
        {"feedback_id": "f2", "request_id": "r2", "rating": 1, "created_at": now},
        {"feedback_id": "f3", "request_id": "r3", "rating": -1, "corrected_answer": "Port 8080.", "created_at": now},
    ]))


@pytest.fixture(scope="module")
def build(target):
    chain = RagChain.from_settings(target)
    with open_lakehouse(target) as lh:
        result = build_datasets(lh, target, chain)
        sft = lh.read(SFT_TABLE, where={"build_id": [result.build_id]})
        dpo = lh.read(DPO_TABLE, where={"build_id": [result.build_id]})
    return chain, result, sft, dpo


def test_examples_are_the_chains_own_prompt_for_its_retrieved_context(build):
    chain, result, sft, _ = build
    row = sft[(sft["question_id"] == "q002") & (sft["kind"] == "answer")].iloc[0]
    expected = to_dicts(chain.messages(row["question"], [], chain.retrieve(row["question"])))
    assert json.loads(row["prompt"]) == expected
    assert expected[0]["role"] == "system" and "4817" in expected[-1]["content"]  # the retrieved context is in it
    assert row["completion"] == "4817"
    assert COLLECTOR in list(row["context_doc_ids"])


def test_dont_know_rows_take_the_source_out_of_the_context(build):
    _, result, sft, _ = build
    declined = sft[(sft["kind"] == "dont_know") & (sft["question_id"] == "q002")]
    assert len(declined) == 1, "dont_know_share≈1: every supported question also gets a 'don't know' row"
    row = declined.iloc[0]
    assert row["completion"] == DONT_KNOW
    assert COLLECTOR not in list(row["context_doc_ids"])
    assert "4817" not in json.loads(row["prompt"])[-1]["content"]
    chain = build[0]
    assert chain.retrieve("Which port does the Lumen mobile app use for push notifications?"), "has context"
    unanswerable = sft[sft["question_id"] == "u1"]
    assert list(unanswerable["completion"]) == [DONT_KNOW]
    assert result.sft_kinds.get("dont_know", 0) >= 2


def test_split_is_leak_free_and_the_gated_questions_never_train(build):
    _, result, sft, dpo = build
    for frame in (sft, dpo):
        train = frame[frame["split"] == "train"]
        other = frame[frame["split"] != "train"]
        assert set(train["split_group"]).isdisjoint(other["split_group"])
        assert set(train["question_id"]).isdisjoint(other["question_id"])
    assert "holdout" not in set(sft["split"]), "holdout rows are not written"
    assert "q023" not in set(sft["question_id"]), "q023 shares its document with the gate's question"
    train_docs = {d for docs in sft[sft["split"] == "train"]["context_doc_ids"] for d in docs}
    assert train_docs  # and no train question's own document is a validation question's
    by_q = {q: set(d) for q, _, _, d in QUESTIONS}
    train_q = set(sft[sft["split"] == "train"]["question_id"]) & set(by_q)
    val_q = set(sft[sft["split"] == "validation"]["question_id"]) & set(by_q)
    assert all(by_q[a].isdisjoint(by_q[b]) for a in train_q for b in val_q)
    # q040 ties the collector and retention documents together: their questions share a split
    splits = sft.drop_duplicates("question_id").set_index("question_id")["split"]
    assert splits["q040"] == splits["q001"] == splits["q001b"] == splits["q002"]


def test_dpo_pairs_from_feedback_distractors_and_verbose_non_answers(build):
    _, result, sft, dpo = build
    kinds = set(dpo["kind"])
    assert {"feedback", "distractor", "verbose", "hallucination"} <= kinds
    corrected = dpo[(dpo["kind"] == "feedback") & (dpo["question"] == "Which port serves the Lumen web UI?")]
    assert (corrected["chosen"] == "Port 8080.").all() and (corrected["rejected"] == "Port 80.").all()
    # an up-vote and a down-vote of different answers to the same question make a pair
    disk = dpo[(dpo["kind"] == "feedback") & dpo["question"].str.contains("kb-1042")]
    assert list(disk["rejected"]) == ["Delete everything."]
    assert disk["chosen"].iloc[0].startswith("Run lumenctl")
    assert (dpo["chosen"] != dpo["rejected"]).all()
    fb = sft[sft["origin"] == "feedback"]
    assert {"corrected", "upvoted"} <= set(fb["kind"]) | {"dont_know"}
    assert "Delete everything." not in set(sft["completion"]), "a down-voted answer is never learned"


def test_trl_records_and_rebuilding_with_nothing_changed_writes_nothing(build, target):
    chain, result, sft, _ = build
    with open_lakehouse(target) as lh:
        records = read_sft(lh, result.build_id)
        pairs = read_dpo(lh, result.build_id, "train")
        versions = (lh.version(SFT_TABLE), lh.version(DPO_TABLE))
        again = build_datasets(lh, target, chain)
        assert (lh.version(SFT_TABLE), lh.version(DPO_TABLE)) == versions
    assert again.build_id == result.build_id and not again.created and again.sft_rows == result.sft_rows
    assert len(records) == result.sft_rows["train"]
    assert records[0]["prompt"][0]["role"] == "system" and records[0]["completion"][0]["role"] == "assistant"
    assert {"prompt", "chosen", "rejected"} == set(pairs[0])
    lineage = result.lineage
    assert lineage["dataset_build_id"] == result.build_id and lineage["source_eval_sets"] == "train_pool@1"
    assert lineage["source_index_snapshot"] == chain.lineage["index_snapshot"]


def test_a_new_eval_set_version_is_a_new_build(target, build):
    chain, first, _, _ = build
    with open_lakehouse(target) as lh:
        register_eval_set(lh, "train_pool", _frame(QUESTIONS[:3]))
        second = build_datasets(lh, target, chain)
        register_eval_set(lh, "train_pool", _frame(QUESTIONS))  # restore for the other tests' view
    assert second.created and second.build_id != first.build_id
    assert second.sources["eval_sets"] == {"train_pool": 2}


def test_no_reference_answers_is_a_clear_error(target):
    from dataclasses import replace

    chain = RagChain.from_settings(target)
    with open_lakehouse(target) as lh:
        register_eval_set(lh, "retrieval_only", _frame([(q, t, [], d) for q, t, _, d in QUESTIONS]))
        settings = replace(target, finetune=replace(target.finetune, eval_sets="retrieval_only", feedback=False))
        with pytest.raises(FinetuneDataError, match="retrieval_only.*no questions with reference answers"):
            build_datasets(lh, settings, chain)


def test_split_groups_never_puts_connected_questions_on_both_sides():
    rng = random.Random(1)
    docs = [f"d{i}" for i in range(100)]
    rows = [{"question": f"question {i}", "expected_doc_ids": rng.sample(docs, 2 if rng.random() < 0.1 else 1)}
            for i in range(300)]
    holdout = [{"question": "held", "expected_doc_ids": ["d0"]}]
    groups, splits = split_groups(rows, holdout, split_by="document", validation_share=0.3, seed=0)
    side: dict[str, set[str]] = {}
    for row, split in zip(rows, splits, strict=True):
        for d in row["expected_doc_ids"]:
            side.setdefault(d, set()).add(split)
    assert all(len(s) == 1 for s in side.values()), "a document's questions all land on one side"
    assert side["d0"] == {"holdout"}
    assert {"train", "validation"} <= set(splits)
    # by tag (a SQuAD article): one article, one side
    tagged = [{"question": f"q{i}", "tags": [f"article{i % 7}"], "expected_doc_ids": [f"p{i}"]} for i in range(70)]
    _, by_tag = split_groups(tagged, [], split_by="tag", validation_share=0.3, seed=0)
    per_article: dict[str, set[str]] = {}
    for row, split in zip(tagged, by_tag, strict=True):
        per_article.setdefault(row["tags"][0], set()).add(split)
    assert all(len(s) == 1 for s in per_article.values())
