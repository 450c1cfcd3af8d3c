"""The delta-rs engine: real Delta tables on disk."""

from __future__ import annotations

import threading
import time

import pandas as pd
import pytest
from deltalake import DeltaTable

from ragops.lakehouse import ChangeFeedUnavailable, SchemaError, TableNotFoundError, open_lakehouse
from ragops.lakehouse.schemas import utcnow


def feedback(ids, rating=5, comment="ok"):
    return pd.DataFrame(
        {
            "feedback_id": ids,
            "request_id": [f"r-{i}" for i in ids],
            "key_name": ["k1"] * len(ids),
            "rating": pd.array([rating] * len(ids), dtype="int32"),
            "comment": [comment] * len(ids),
            "corrected_answer": [None] * len(ids),
            "user_id": ["u1"] * len(ids),
            "created_at": [utcnow()] * len(ids),
        }
    )


@pytest.fixture
def lh(make_settings):
    return open_lakehouse(make_settings())


def test_tables_are_created_from_declared_schemas_with_change_feed(lh):
    lh.ensure_tables()
    dt = DeltaTable(lh.location("embeddings"))
    assert dt.metadata().configuration.get("delta.enableChangeDataFeed") == "true"
    assert DeltaTable(lh.location("feedback")).metadata().configuration.get("delta.enableChangeDataFeed") == "true"
    assert "delta.enableChangeDataFeed" not in DeltaTable(lh.location("rejected_documents")).metadata().configuration
    assert dt.schema().to_arrow().names[:3] == ["chunk_id", "doc_id", "content_hash"]


def test_upsert_updates_and_inserts_by_key(lh):
    lh.upsert("feedback", feedback(["a", "b"], rating=1))
    lh.upsert("feedback", feedback(["b", "c"], rating=4))
    df = lh.read("feedback").sort_values("feedback_id")
    assert df["feedback_id"].tolist() == ["a", "b", "c"]
    assert df["rating"].tolist() == [1, 4, 4]


def test_empty_writes_create_no_version(lh):
    lh.upsert("feedback", feedback(["a"]))
    v = lh.version("feedback")
    assert lh.upsert("feedback", feedback([])).version is None
    assert lh.delete("feedback", "feedback_id", []).rows == 0
    assert lh.version("feedback") == v


def test_delete_by_keys(lh):
    lh.upsert("feedback", feedback(["a", "b", "c"]))
    lh.delete("feedback", "feedback_id", ["a", "c", "zzz"])
    assert lh.read("feedback")["feedback_id"].tolist() == ["b"]


def test_time_travel_by_version_and_timestamp(lh):
    lh.upsert("feedback", feedback(["a"], comment="first"))
    v1 = lh.version("feedback")
    time.sleep(0.05)
    between = pd.Timestamp.now(tz="UTC").to_pydatetime()
    time.sleep(0.05)
    lh.upsert("feedback", feedback(["a"], comment="second"))
    assert lh.read("feedback")["comment"].tolist() == ["second"]
    assert lh.read("feedback", version=v1)["comment"].tolist() == ["first"]
    assert lh.read("feedback", timestamp=between)["comment"].tolist() == ["first"]


def test_change_feed_since_a_version(lh):
    from ragops.lakehouse.schemas import spec

    df = pd.DataFrame({c: [] for c in spec("raw_documents").columns})
    rows = []
    for i, text in enumerate(["one", "two"]):
        rows.append({"doc_id": f"d{i}", "source": "s", "source_uri": f"d{i}", "format": "txt", "title": "t",
                     "text": text, "content_hash": text, "size_bytes": 3, "metadata": "{}", "ingested_at": utcnow()})
    lh.upsert("raw_documents", pd.DataFrame(rows, columns=df.columns))
    v = lh.version("raw_documents")
    lh.upsert("raw_documents", pd.DataFrame([{**rows[0], "text": "uno", "content_hash": "uno"}]))
    lh.delete("raw_documents", "doc_id", ["d1"])
    ch = lh.changes("raw_documents", v)
    got = sorted(zip(ch["doc_id"], ch["_change_type"], strict=True))
    assert got == [("d0", "update_postimage"), ("d0", "update_preimage"), ("d1", "delete")]
    assert lh.changes("raw_documents", lh.version("raw_documents")).empty


def test_change_feed_missing_on_a_table_without_it(lh):
    def rejected(uri):
        return pd.DataFrame({"source_uri": [uri], "source": ["s"], "format": ["md"], "reason_code": ["empty"],
                             "reason": ["the file is empty"], "size_bytes": pd.array([0], dtype="int64"),
                             "rejected_at": [utcnow()]})

    lh.upsert("rejected_documents", rejected("a.md"))
    lh.upsert("rejected_documents", rejected("b.md"))
    with pytest.raises(ChangeFeedUnavailable, match="rejected_documents"):
        lh.changes("rejected_documents", 0)


def test_bad_types_are_rejected_before_writing(lh):
    lh.upsert("feedback", feedback(["a"]))
    v = lh.version("feedback")
    bad = feedback(["b"]).astype({"rating": object})
    bad.loc[0, "rating"] = "123"
    with pytest.raises(SchemaError, match=r"column 'rating' expects integer values .* got str '123'"):
        lh.upsert("feedback", bad)
    missing = feedback(["c"]).drop(columns=["comment"])
    with pytest.raises(SchemaError, match=r"missing \['comment'\]"):
        lh.upsert("feedback", missing)
    nulls = feedback(["d"])
    nulls.loc[0, "request_id"] = None
    with pytest.raises(SchemaError, match="'request_id' must not be null"):
        lh.upsert("feedback", nulls)
    assert lh.version("feedback") == v
    assert lh.read("feedback")["feedback_id"].tolist() == ["a"]


def test_duplicate_keys_in_one_batch_are_refused(lh):
    with pytest.raises(Exception, match="duplicate keys"):
        lh.upsert("feedback", feedback(["a", "a"]))


def test_unknown_and_missing_tables_have_clear_errors(lh):
    with pytest.raises(KeyError, match="unknown table 'docs'"):
        lh.read("docs")
    with pytest.raises(TableNotFoundError, match="run the ingest job first"):
        lh.read("chunks")


def test_concurrent_merges_are_retried(lh):
    lh.upsert("feedback", feedback(["seed"]))
    errors = []

    def writer(prefix):
        try:
            for i in range(4):
                lh.upsert("feedback", feedback([f"{prefix}{i}"]))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(p,)) for p in "xyz"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(lh.read("feedback")) == 13


def test_history_lists_commits_newest_first(lh):
    lh.upsert("feedback", feedback(["a"]))
    lh.delete("feedback", "feedback_id", ["a"])
    hist = lh.history("feedback")
    assert [h["version"] for h in hist] == sorted((h["version"] for h in hist), reverse=True)
    assert hist[0]["operation"] == "MERGE"
