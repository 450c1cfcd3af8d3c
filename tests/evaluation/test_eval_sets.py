"""Versioned eval sets in Delta: idempotent registration, time travel, clear errors, and the loaders."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from ragops.evaluation.eval_sets import (
    EVAL_COLUMNS,
    EvalSetError,
    from_feedback,
    list_eval_sets,
    load_beir,
    load_jsonl,
    load_source,
    load_squad,
    read_eval_set,
    register_eval_set,
    squad_corpus,
)
from ragops.lakehouse import open_lakehouse
from ragops.lakehouse.schemas import utcnow
from tests.conftest import DATASETS, REPO

QUESTIONS = REPO / "data" / "eval" / "questions.jsonl"
SCIFACT = DATASETS / "scifact"
SQUAD = DATASETS / "squad_v1.1" / "dev-v1.1.json"
needs_scifact = pytest.mark.skipif(not (SCIFACT / "queries.jsonl").is_file(),
                                   reason=f"SciFact (BEIR layout) not found at {SCIFACT}")
needs_squad = pytest.mark.skipif(not SQUAD.is_file(), reason=f"SQuAD v1.1 dev set not found at {SQUAD}")


@pytest.fixture
def lh(make_settings):
    with open_lakehouse(make_settings()) as lakehouse:
        yield lakehouse


def table_state(lh) -> tuple[int | None, pd.DataFrame]:
    frame = lh.read("eval_sets", ["eval_set", "version", "question_id", "question"])
    return lh.version("eval_sets"), frame.sort_values(["version", "question_id"]).reset_index(drop=True)


def write_jsonl(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# --- registration and versions -------------------------------------------------------------------------
def test_register_versions_only_on_change_and_time_travels(lh):
    questions = load_jsonl(QUESTIONS)
    first = register_eval_set(lh, "lumen", questions)
    assert (first.version, first.rows, first.created) == (1, 36, True)
    commits = len(lh.history("eval_sets"))

    again = register_eval_set(lh, "lumen", questions.sample(frac=1, random_state=1))  # same rows, new order
    assert (again.version, again.created) == (1, False)
    assert lh.version("eval_sets") == first.table_version and len(lh.history("eval_sets")) == commits

    changed = questions.copy()
    changed.loc[changed["question_id"] == "q002", "question"] = "Which port does the Collector use for gRPC?"
    second = register_eval_set(lh, "lumen", changed)
    assert (second.version, second.rows, second.created) == (2, 36, True)
    assert second.table_version == first.table_version + 1

    latest = read_eval_set(lh, "lumen")
    assert (latest.version, latest.table_version, len(latest)) == (2, second.table_version, 36)
    q002 = latest.frame.set_index("question_id").loc["q002"]
    assert q002["question"] == "Which port does the Collector use for gRPC?"
    assert q002["expected_answers"] == ["4817"] and q002["tags"] == ["collector", "ports", "md", "easy"]

    v1 = read_eval_set(lh, "lumen", 1).frame.set_index("question_id")
    assert v1.loc["q002", "question"].startswith("On which port does the Lumen Collector")

    # Re-running an old evaluation: the table as it was then, where version 2 did not exist yet.
    past = read_eval_set(lh, "lumen", table_version=first.table_version)
    assert (past.version, past.table_version) == (1, first.table_version)
    assert past.frame.equals(read_eval_set(lh, "lumen", 1).frame)

    listing = list_eval_sets(lh)
    assert listing[["eval_set", "version", "questions", "origins"]].to_dict("records") == [
        {"eval_set": "lumen", "version": 1, "questions": 36, "origins": "hand-written"},
        {"eval_set": "lumen", "version": 2, "questions": 36, "origins": "hand-written"},
    ]


def test_origin_override_counts_as_a_change_and_sets_are_independent(lh):
    questions = load_jsonl(QUESTIONS)
    register_eval_set(lh, "lumen", questions)
    relabelled = register_eval_set(lh, "lumen", questions, origin="curated")
    assert (relabelled.version, relabelled.created) == (2, True)
    assert set(read_eval_set(lh, "lumen").frame["origin"]) == {"curated"}
    other = register_eval_set(lh, "lumen-small", questions.head(5))
    assert (other.version, other.rows) == (1, 5)
    assert read_eval_set(lh, "lumen").version == 2


def test_unknown_names_and_versions_say_what_exists(lh):
    with pytest.raises(EvalSetError, match="no eval sets registered yet"):
        read_eval_set(lh, "lumen")
    assert list_eval_sets(lh).empty
    register_eval_set(lh, "lumen", load_jsonl(QUESTIONS))
    with pytest.raises(EvalSetError, match=r"no eval set 'lumn'.*available: lumen \(versions 1\)"):
        read_eval_set(lh, "lumn")
    with pytest.raises(EvalSetError, match=r"no version 3 .*versions are \[1\]"):
        read_eval_set(lh, "lumen", 3)
    with pytest.raises(EvalSetError, match=r"no version 9; its versions are 0\.\.1"):
        read_eval_set(lh, "lumen", table_version=9)


# --- bad input -----------------------------------------------------------------------------------------
def _bad_frames() -> dict[str, tuple[pd.DataFrame, str]]:
    good = load_jsonl(QUESTIONS).head(3)
    dup = good.copy()
    dup.loc[2, "question_id"] = "q001"
    no_question = good.copy()
    no_question.loc[1, "question"] = None
    not_a_list = good.copy().astype(object)
    not_a_list.at[0, "expected_answers"] = "30 days"
    bad_item = good.copy()
    bad_item.at[2, "expected_doc_ids"] = ["guides/retention.md", 7]
    return {
        "duplicate question_id": (dup, r"row 2 \(question_id 'q001'\): duplicate question_id, first used at row 0"),
        "missing question": (no_question, r"row 1 \(question_id 'q002'\): field 'question' is missing or empty"),
        "answers not a list": (not_a_list, r"row 0 \(question_id 'q001'\): field 'expected_answers' must be a list"),
        "non-string doc id": (bad_item, r"field 'expected_doc_ids'\[1\] must be a string, got int"),
        "no question column": (good.drop(columns=["question"]), r"missing required field\(s\) \['question'\]"),
        "misspelt field": (good.rename(columns={"expected_answers": "expected_answer"}),
                           r"unknown field 'expected_answer'; did you mean 'expected_answers'"),
    }


@pytest.mark.parametrize("case", list(_bad_frames()))
def test_bad_input_is_rejected_and_nothing_is_written(lh, case):
    register_eval_set(lh, "lumen", load_jsonl(QUESTIONS))
    before = table_state(lh)
    frame, message = _bad_frames()[case]
    with pytest.raises(EvalSetError, match=message):
        register_eval_set(lh, "lumen", frame)
    after = table_state(lh)
    assert after[0] == before[0] and after[1].equals(before[1])


def test_jsonl_errors_name_the_file_and_line(tmp_path):
    lines = QUESTIONS.read_text(encoding="utf-8").splitlines()[:4]
    broken = write_jsonl(tmp_path / "broken.jsonl", [lines[0], "", lines[1][:-5], lines[2]])
    with pytest.raises(EvalSetError, match=r"broken\.jsonl: line 3: invalid JSON"):
        load_jsonl(broken)
    dup = write_jsonl(tmp_path / "dup.jsonl", [lines[0], lines[1], lines[0]])
    with pytest.raises(EvalSetError, match=r"dup\.jsonl: line 3 \(question_id 'q001'\): duplicate question_id, "
                                           r"first used at line 1"):
        load_jsonl(dup)
    rec = json.loads(lines[0]) | {"expected_answers": "30 days"}
    scalar = write_jsonl(tmp_path / "scalar.jsonl", [json.dumps(rec)])
    with pytest.raises(EvalSetError, match=r"line 1 .*'expected_answers' must be a list of strings.*\[\"30 days\"\]"):
        load_jsonl(scalar)
    minimal = write_jsonl(tmp_path / "minimal.jsonl", ['{"question_id": "m1", "question": " Why? "}'])
    assert load_jsonl(minimal).iloc[0].to_dict() == {
        "question_id": "m1", "question": "Why?", "expected_answers": [], "expected_doc_ids": [], "tags": [],
        "origin": "unknown"}
    with pytest.raises(EvalSetError, match="not found"):
        load_jsonl(tmp_path / "missing.jsonl")


def test_empty_and_misnamed_sets_are_refused(lh):
    with pytest.raises(EvalSetError, match="no questions to register"):
        register_eval_set(lh, "lumen", pd.DataFrame(columns=EVAL_COLUMNS))
    with pytest.raises(EvalSetError, match="eval set name"):
        register_eval_set(lh, " lumen", load_jsonl(QUESTIONS))
    assert not lh.exists("eval_sets") or lh.read("eval_sets").empty


# --- public datasets -----------------------------------------------------------------------------------
@needs_scifact
def test_beir_loader_reads_judged_queries_with_ingest_doc_ids(lh):
    test = load_beir(SCIFACT)
    assert len(test) == 300 and test["question_id"].is_unique
    assert all(d.startswith("corpus.jsonl#") for ids in test["expected_doc_ids"] for d in ids)
    first = test.set_index("question_id").loc["1"]
    assert first["expected_doc_ids"] == ["corpus.jsonl#31715818"] and first["expected_answers"] == []
    assert first["tags"] == ["beir", "test"] and first["origin"] == "imported"
    assert sum(len(ids) for ids in test["expected_doc_ids"]) == 339  # every judgement, none lost

    train = load_source(f"beir:{SCIFACT}:train")
    assert len(train) == 809 and set(train["tags"].map(tuple)) == {("beir", "train")}
    assert load_beir(SCIFACT, doc_id_prefix="scifact/corpus.jsonl#").iloc[0]["expected_doc_ids"][0].startswith(
        "scifact/corpus.jsonl#")
    with pytest.raises(EvalSetError, match=r"available splits: \['test', 'train'\]"):
        load_beir(SCIFACT, split="dev")

    registered = register_eval_set(lh, "scifact", test)
    assert read_eval_set(lh, "scifact").frame.equals(test.sort_values("question_id").reset_index(drop=True))
    assert not register_eval_set(lh, "scifact", load_source(f"beir:{SCIFACT}")).created
    assert registered.rows == 300


@needs_squad
def test_squad_sample_is_seeded_and_matches_the_exported_corpus():
    a, b = load_squad(SQUAD, sample=500, seed=0), load_source(f"squad:{SQUAD}:500")
    assert len(a) == 500 and a.equals(b) and a["question_id"].is_unique
    assert not a["question_id"].equals(load_squad(SQUAD, sample=500, seed=1)["question_id"])

    corpus = squad_corpus(SQUAD)
    assert len(corpus) == 2067 and corpus["id"].is_unique
    texts = corpus.set_index("id")["text"]
    for row in a.itertuples():
        assert len(row.expected_doc_ids) == 1 and row.expected_doc_ids[0] in texts.index
        # Every gold answer is a span of the paragraph the question expects.
        assert all(ans in texts[row.expected_doc_ids[0]] for ans in row.expected_answers)

    full = load_squad(SQUAD).set_index("question_id")
    assert len(full) == 10570
    super_bowl = full.loc["56be4db0acb8001400a502ec"]  # three annotators, one answer text
    assert super_bowl["expected_answers"] == ["Denver Broncos"]
    assert super_bowl["expected_doc_ids"] == ["Super_Bowl_50/0"] and super_bowl["tags"] == ["Super_Bowl_50"]
    assert load_squad(SQUAD, sample=3, doc_id_prefix="squad.jsonl#").iloc[0]["expected_doc_ids"][0].startswith(
        "squad.jsonl#")


def test_load_source_specs(tmp_path):
    assert len(load_source(str(QUESTIONS))) == 36
    assert len(load_source(f"jsonl:{QUESTIONS}")) == 36
    with pytest.raises(EvalSetError, match=r"not understood; use jsonl:<path>"):
        load_source(f"csv:{QUESTIONS}")
    with pytest.raises(EvalSetError, match="sample must be a whole number"):
        load_source(f"squad:{tmp_path / 'dev.json'}:half")


# --- feedback ------------------------------------------------------------------------------------------
def _log_row(request_id: str, question: str, answer: str, sources: list[dict] | str | None) -> dict:
    return {"request_id": request_id, "shadow": False, "timestamp": utcnow(), "endpoint": "ragops",
            "key_name": "k1", "route": "rag_chain", "target": "champion", "model_name": "rag",
            "model_uri": "models:/rag/3", "model_version": "3", "question": question, "answer": answer,
            "sources": sources if isinstance(sources, str) or sources is None else json.dumps(sources),
            "chunk_ids": [], "status": "ok", "http_status": 200, "error": None, "latency_ms": 120.0,
            "ttft_ms": 40.0, "prompt_tokens": 300, "completion_tokens": 20, "lineage": "{}",
            "access_groups": None, "guardrails": "[]", "truncated": False}


def _feedback_row(feedback_id: str, request_id: str, rating: int | None, corrected: str | None = None,
                  minutes: int = 0) -> dict:
    return {"feedback_id": feedback_id, "request_id": request_id, "key_name": "k1", "rating": rating, "comment": None,
            "corrected_answer": corrected, "user_id": "u1", "created_at": utcnow() + pd.Timedelta(minutes=minutes)}


def test_from_feedback_turns_rated_and_corrected_answers_into_questions(lh):
    assert from_feedback(lh).columns.tolist() == EVAL_COLUMNS and from_feedback(lh).empty
    sources = [{"doc_id": "guides/retention.md", "chunk_id": "c1", "score": 0.9},
               {"doc_id": "guides/downsampling.md", "chunk_id": "c2", "score": 0.5},
               {"doc_id": "guides/retention.md", "chunk_id": "c3", "score": 0.4}]
    lh.upsert("inference_log", pd.DataFrame([
        _log_row("r1", "How long are raw samples kept?", "30 days", sources),
        _log_row("r2", "What port does the collector use?", "Port 9000", sources[:1]),
        _log_row("r3", "Who wrote Lumen?", "Nobody knows", None),
        _log_row("r4", "Unrated question", "Some answer", sources),
        _log_row("r5", "Disputed question", "Disputed answer", sources),
    ]))
    lh.upsert("feedback", pd.DataFrame([
        _feedback_row("f1", "r1", 1),
        _feedback_row("f2", "r2", -1, "4817", minutes=1),
        _feedback_row("f3", "r2", None, "Port 4817 (gRPC)", minutes=2),  # the latest correction wins
        _feedback_row("f4", "r3", -1),
        _feedback_row("f5", "r5", 1),
        _feedback_row("f6", "r5", -1),
    ]).astype({"rating": "Int32"}))  # nullable: one row has no rating
    frame = from_feedback(lh).set_index("question_id")
    assert sorted(frame.index) == ["fb-r1", "fb-r2"]
    assert frame.loc["fb-r1", "expected_answers"] == ["30 days"]
    assert frame.loc["fb-r1", "expected_doc_ids"] == ["guides/retention.md", "guides/downsampling.md"]
    assert frame.loc["fb-r2", "expected_answers"] == ["Port 4817 (gRPC)"]
    assert frame.loc["fb-r2", "expected_doc_ids"] == []
    assert set(frame["origin"]) == {"feedback"}
    version = register_eval_set(lh, "feedback", frame.reset_index())
    assert (version.version, version.rows) == (1, 2)
