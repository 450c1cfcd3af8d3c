"""The Spark engine against a local pysail Spark Connect server: real Delta tables, SQL MERGE,
batch functions through ``mapInPandas`` in the server's own Python workers."""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import threading
import time

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from deltalake import DeltaTable

from ragops.chunking.chunk import chunk_documents
from ragops.config import ChunkingConfig, Settings
from ragops.lakehouse import (
    ChangeFeedUnavailable,
    LakehouseError,
    SchemaError,
    TableNotFoundError,
    open_lakehouse,
)
from ragops.lakehouse.local import LocalLakehouse
from ragops.lakehouse.schemas import CHUNKS, TABLES, spec, utcnow

pytest.importorskip("pysail")
from ragops.lakehouse import spark as spark_module  # noqa: E402
from ragops.lakehouse.spark import ISIN_MAX_VALUES, SparkCapabilities, SparkLakehouse, ddl_columns  # noqa: E402
from tests.spark_server import spark_connect_server  # noqa: E402

pytestmark = pytest.mark.spark

CHUNKING = ChunkingConfig(strategy="recursive", chunk_size=16, chunk_overlap=4)


@pytest.fixture(scope="module")
def spark_url():
    with spark_connect_server() as url:
        yield url


@pytest.fixture
def lh(spark_url, tmp_path):
    lakehouse = open_lakehouse(Settings(engine="spark", spark_remote=spark_url, root=tmp_path))
    yield lakehouse
    lakehouse.close()


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


def documents(texts: dict[str, str]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "doc_id": d,
                "source": "s",
                "source_uri": f"file:///{d}",
                "format": "md",
                "title": d.upper(),
                "text": t,
                "content_hash": f"h-{d}",
                "size_bytes": len(t),
                "metadata": "{}",
                "ingested_at": utcnow(),
            }
            for d, t in texts.items()
        ]
    )


def rows(df: pd.DataFrame, key: str, *cols: str) -> list[tuple]:
    return [tuple(r) for r in df.sort_values(key)[[key, *cols]].itertuples(index=False)]


def test_tables_are_created_from_declared_schemas(lh):
    assert isinstance(lh, SparkLakehouse) and lh.table_mode == "path"
    lh.ensure_tables()
    lh.ensure_tables()  # idempotent: no second version
    for name, ts in TABLES.items():
        assert lh.location(name) == str(lh.settings.table_path(name))
        assert lh.version(name) == 0
        stored = pa.schema(DeltaTable(lh.location(name)).schema().to_arrow())
        assert stored.names == ts.columns
        assert [f.nullable for f in stored] == [f.nullable for f in ts.schema]
        assert lh.read(name).columns.tolist() == ts.columns and lh.read(name).empty
    emb = pa.schema(DeltaTable(lh.location("embeddings")).schema().to_arrow())
    assert pa.types.is_list(emb.field("vector").type) and emb.field("vector").type.value_type == pa.float32()
    assert pa.types.is_int32(emb.field("dimension").type)
    # Sail cannot create tables with Change Data Feed: the engine says so instead of failing.
    assert lh.supports_change_feed is False
    assert "delta.enableChangeDataFeed" not in DeltaTable(lh.location("embeddings")).metadata().configuration


def test_capabilities_are_probed_once_per_server_and_logged_once(spark_url, tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(spark_module, "_CAPABILITIES", {})
    caplog.set_level(logging.INFO, logger="ragops.lakehouse.spark")
    first = SparkLakehouse(Settings(engine="spark", spark_remote=spark_url, root=tmp_path / "a"))
    second = SparkLakehouse(Settings(engine="spark", spark_remote=spark_url, root=tmp_path / "b"))
    # What pysail 0.7.2 supports (see the module docstring); the test server sets a checkpoint path.
    assert first.capabilities == SparkCapabilities(create_sql=False, cdf_tables=False, change_feed=False,
                                                   history_sql=False, checkpoint=True)
    assert second.capabilities is first.capabilities
    assert sum("server capabilities" in r.getMessage() for r in caplog.records) == 1
    assert list((tmp_path / "a" / "lakehouse" / "_probe").glob("*")) == []  # the scratch table is gone


def test_declared_schema_translates_to_spark_ddl():
    ddl = ddl_columns(spec("embeddings").schema)
    assert "`chunk_id` STRING NOT NULL" in ddl
    assert "`dimension` INT NOT NULL" in ddl
    assert "`vector` ARRAY<FLOAT> NOT NULL" in ddl
    assert "`embedded_at` TIMESTAMP," in ddl + ","
    assert "`start_char` BIGINT" in ddl_columns(spec("chunks").schema)
    assert "`expected_answers` ARRAY<STRING>" in ddl_columns(spec("eval_sets").schema)
    assert "`latency_ms` DOUBLE" in ddl_columns(spec("inference_log").schema)


def test_upsert_updates_and_inserts_by_key(lh):
    first = lh.upsert("feedback", feedback(["a", "b"], rating=1, comment="first"))
    second = lh.upsert("feedback", feedback(["b", "c"], rating=4, comment="second"))
    assert (first.rows, second.rows) == (2, 2)
    assert second.version == first.version + 1 == lh.version("feedback")
    df = lh.read("feedback")
    assert rows(df, "feedback_id", "rating", "comment", "request_id") == [
        ("a", 1, "first", "r-a"),
        ("b", 4, "second", "r-b"),
        ("c", 4, "second", "r-c"),
    ]
    assert df["created_at"].dt.tz is not None and df["corrected_answer"].isna().all()
    # Only some columns, only some keys.
    some = lh.read("feedback", ["feedback_id", "rating"], where={"feedback_id": ["c", "a", "zzz"]})
    assert some.columns.tolist() == ["feedback_id", "rating"]
    assert rows(some, "feedback_id", "rating") == [("a", 1), ("c", 4)]
    # A real Delta table: delta-rs reads the same rows.
    assert rows(DeltaTable(lh.location("feedback")).to_pandas(), "feedback_id", "rating", "comment") == rows(
        df, "feedback_id", "rating", "comment"
    )
    assert DeltaTable(lh.location("feedback")).version() == lh.version("feedback")


def test_long_key_lists_select_by_join(lh):
    lh.upsert("feedback", feedback([f"k{i}" for i in range(30)]))
    wanted = [f"k{i}" for i in range(0, 30, 7)] + [f"missing{i}" for i in range(ISIN_MAX_VALUES + 10)]
    got = lh.read("feedback", ["feedback_id"], where={"feedback_id": wanted})
    assert sorted(got["feedback_id"]) == ["k0", "k14", "k21", "k28", "k7"]


def test_empty_writes_create_no_version(lh):
    lh.upsert("feedback", feedback(["a"]))
    v = lh.version("feedback")
    result = lh.upsert("feedback", feedback([]))
    assert (result.rows, result.version) == (0, None)
    assert lh.delete("feedback", "feedback_id", []).rows == 0
    assert lh.append("feedback", feedback([])).version is None
    assert lh.version("feedback") == v
    # Nothing is created for an empty write to a table that does not exist yet.
    assert lh.upsert("rejected_documents", pd.DataFrame()).version is None
    assert not lh.exists("rejected_documents") and lh.version("rejected_documents") is None


def test_append_and_delete_by_keys(lh):
    lh.append("feedback", feedback(["a", "b", "c"]))
    v = lh.version("feedback")
    result = lh.delete("feedback", "feedback_id", ["a", "c", "zzz"])
    assert result.version == v + 1
    assert lh.read("feedback")["feedback_id"].tolist() == ["b"]
    assert DeltaTable(lh.location("feedback")).to_pandas()["feedback_id"].tolist() == ["b"]


def test_time_travel_by_version_and_timestamp(lh):
    lh.upsert("feedback", feedback(["a"], comment="first"))
    v1 = lh.version("feedback")
    time.sleep(0.2)
    between = pd.Timestamp.now(tz="UTC").to_pydatetime()
    time.sleep(0.2)
    lh.upsert("feedback", feedback(["a", "b"], comment="second"))
    assert rows(lh.read("feedback"), "feedback_id", "comment") == [("a", "second"), ("b", "second")]
    assert rows(lh.read("feedback", version=v1), "feedback_id", "comment") == [("a", "first")]
    assert rows(lh.read("feedback", timestamp=between), "feedback_id", "comment") == [("a", "first")]
    with pytest.raises(LakehouseError, match="as of version 99"):
        lh.read("feedback", version=99)


def test_history_lists_commits_newest_first(lh):
    lh.upsert("feedback", feedback(["a"]))
    lh.delete("feedback", "feedback_id", ["a"])
    hist = lh.history("feedback")
    assert [h["version"] for h in hist] == [2, 1, 0]
    assert [h["operation"] for h in hist] == ["MERGE", "MERGE", "CREATE TABLE"]
    assert hist[0]["operationMetrics"]["numTargetRowsDeleted"] == 1
    assert [h["version"] for h in lh.history("feedback", limit=1)] == [2]
    assert [h["version"] for h in DeltaTable(lh.location("feedback")).history()] == [2, 1, 0]


def test_change_feed_is_reported_unavailable_on_sail(lh):
    lh.upsert("raw_documents", documents({"d0": "one", "d1": "two"}))
    v = lh.version("raw_documents")
    lh.upsert("raw_documents", documents({"d0": "uno"}))
    with pytest.raises(ChangeFeedUnavailable, match="raw_documents"):
        lh.changes("raw_documents", v)
    # A fresh engine on the same server asks no second time and gets the same answer.
    fresh = SparkLakehouse(lh.settings)
    assert fresh.capabilities is lh.capabilities and fresh.supports_change_feed is False
    with pytest.raises(ChangeFeedUnavailable, match="cannot create tables with it"):
        fresh.changes("raw_documents", v)
    with pytest.raises(ChangeFeedUnavailable, match="feedback"):
        lh.changes("feedback", 0)


def test_bad_types_are_rejected_before_writing(lh):
    lh.upsert("feedback", feedback(["a"]))
    v = lh.version("feedback")
    bad = feedback(["b"]).astype({"rating": object})
    bad.loc[0, "rating"] = "123"
    with pytest.raises(SchemaError, match=r"column 'rating' expects integer values .* got str '123'"):
        lh.upsert("feedback", bad)
    with pytest.raises(SchemaError, match="rating"):
        lh.append("feedback", bad)
    nulls = feedback(["d"])
    nulls.loc[0, "request_id"] = None
    with pytest.raises(SchemaError, match="'request_id' must not be null"):
        lh.upsert("feedback", nulls)
    with pytest.raises(LakehouseError, match="duplicate keys"):
        lh.upsert("feedback", feedback(["e", "e"]))
    assert lh.version("feedback") == v
    assert lh.read("feedback")["feedback_id"].tolist() == ["a"]


def test_unknown_and_missing_tables_have_clear_errors(lh):
    with pytest.raises(KeyError, match="unknown table 'docs'"):
        lh.read("docs")
    with pytest.raises(TableNotFoundError, match="run the ingest job first"):
        lh.read("chunks")
    assert lh.version("chunks") is None


def test_concurrent_merges_are_retried(lh):
    lh.upsert("feedback", feedback(["seed"]))
    errors = []

    def writer(prefix):
        try:
            for i in range(3):
                lh.upsert("feedback", feedback([f"{prefix}{i}"]))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(p,)) for p in "xyz"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(lh.read("feedback")) == 10
    assert lh.version("feedback") == 10


def _describe(batch: pd.DataFrame, *, tag: str) -> pd.DataFrame:
    """Two output rows per input row, saying which batch (size, process) produced them."""
    return pd.DataFrame(
        {
            "key": [f"{tag}-{k}-{j}" for k in batch["k"] for j in (0, 1)],
            "n": [int(n) * 10 + j for n in batch["n"] for j in (0, 1)],
            "batch_size": [len(batch)] * (2 * len(batch)),
            "pid": [os.getpid()] * (2 * len(batch)),
        }
    )


OUT = pa.schema([("key", pa.string()), ("n", pa.int64()), ("batch_size", pa.int32()), ("pid", pa.int64())])


def test_map_batches_runs_the_function_in_spark_workers_like_the_local_engine(lh, tmp_path):
    df = pd.DataFrame({"k": [f"x{i}" for i in range(10)], "n": range(10)})
    fn = functools.partial(_describe, tag="t")
    out = lh.map_batches(df, fn, OUT, batch_rows=3, desc="describe")
    assert out.columns.tolist() == OUT.names
    assert out["key"].tolist() == [f"t-x{i}-{j}" for i in range(10) for j in (0, 1)]  # input order
    assert out["n"].tolist() == [i * 10 + j for i in range(10) for j in (0, 1)]
    assert out["batch_size"].tolist() == [3] * 18 + [1] * 2  # the local engine's batches
    assert (out["pid"] != os.getpid()).all()  # ran in the server's Python, not here
    local = LocalLakehouse(Settings(root=tmp_path / "local")).map_batches(df, fn, OUT, batch_rows=3)
    pd.testing.assert_frame_equal(out.drop(columns="pid"), local.drop(columns="pid"), check_dtype=False)
    # A closure over a plain config (pickled by value), and an empty input.
    suffix = "!"
    shout = lh.map_batches(
        df.head(4), lambda b: pd.DataFrame({"s": b["k"] + suffix}), pa.schema([("s", pa.string())])
    )
    assert shout["s"].tolist() == ["x0!", "x1!", "x2!", "x3!"]
    assert lh.map_batches(df.head(0), fn, OUT).columns.tolist() == OUT.names


def test_map_batches_reports_the_workers_error(lh):
    def boom(batch):
        raise ValueError("cannot parse row 7")

    with pytest.raises(LakehouseError, match="describe: .*ValueError: cannot parse row 7"):
        lh.map_batches(pd.DataFrame({"k": ["a"]}), boom, OUT, desc="describe")


def _expected_chunks(docs: pd.DataFrame) -> pd.DataFrame:
    return chunk_documents(docs, cfg=CHUNKING, tokenizer_name="regex", cfg_hash="cfg1")


CHUNK_COLS = [
    "chunk_id",
    "doc_id",
    "chunk_index",
    "text",
    "n_tokens",
    "start_char",
    "end_char",
    "title",
    "section",
]

TEXTS = {
    "d0": "Retention keeps raw events for thirty days. " * 4,
    "d1": "# Setup\n\nInstall the collector, then point it at the gateway on port 4317. " * 3,
    "d2": "Short note.",
}


@pytest.mark.parametrize("checkpoint", [True, False], ids=["checkpoint", "staging-table"])
def test_transform_table_merges_the_function_output_without_collecting(lh, checkpoint):
    if not checkpoint:  # what a server without localCheckpoint gets: a staging Delta table
        lh = SparkLakehouse(lh.settings, capabilities=dataclasses.replace(lh.capabilities, checkpoint=False))
    docs = documents(TEXTS)
    lh.upsert("raw_documents", docs)
    fn = functools.partial(chunk_documents, cfg=CHUNKING, tokenizer_name="regex", cfg_hash="cfg1")
    result = lh.transform_table(
        "raw_documents",
        fn,
        "chunks",
        where={"doc_id": ["d0", "d1", "nope"]},
        columns=["doc_id", "title", "text", "source_uri", "content_hash"],
        batch_rows=1,
        desc="chunk",
    )
    expected = _expected_chunks(docs[docs["doc_id"].isin(["d0", "d1"])])
    assert len(expected) > 4
    assert result.rows == len(expected)
    assert result.version == lh.version("chunks") == 1  # created (v0), one MERGE (v1)
    got = lh.read("chunks")
    assert rows(got, "chunk_id", *CHUNK_COLS[1:]) == rows(expected, "chunk_id", *CHUNK_COLS[1:])
    assert rows(DeltaTable(lh.location("chunks")).to_pandas(), "chunk_id", "text") == rows(
        expected, "chunk_id", "text"
    )
    assert lh.capabilities.checkpoint is checkpoint
    assert list(lh.settings.lakehouse_root.glob("_staging/*")) == []  # staging cleaned up

    # Nothing selected, or nothing produced: no new version.
    assert lh.transform_table("raw_documents", fn, "chunks", where={"doc_id": []}).version is None
    none = lh.transform_table("raw_documents", fn, "chunks", where={"doc_id": ["nope"]})
    assert (none.rows, none.version) == (0, None)
    assert lh.version("chunks") == 1


def _bad_chunks(batch: pd.DataFrame) -> pd.DataFrame:
    out = _expected_chunks(batch).astype({"n_tokens": object})
    out["n_tokens"] = "123"
    return out


def test_transform_table_rejects_bad_output_and_writes_nothing(lh):
    lh.upsert("raw_documents", documents(TEXTS))
    with pytest.raises(SchemaError, match="column 'n_tokens' expects integer values"):
        lh.transform_table("raw_documents", _bad_chunks, "chunks", where={"doc_id": ["d0"]})
    assert not lh.exists("chunks")


def test_transform_table_output_columns_follow_the_table(lh):
    assert CHUNKS.columns[:3] == ["chunk_id", "doc_id", "chunk_index"]
    lh.upsert("raw_documents", documents({"d2": TEXTS["d2"]}))
    fn = functools.partial(chunk_documents, cfg=CHUNKING, tokenizer_name="regex", cfg_hash="cfg1")
    lh.transform_table("raw_documents", fn, "chunks", where={"doc_id": ["d2"]})
    got = lh.read("chunks")
    assert got.columns.tolist() == CHUNKS.columns
    assert got[["chunk_id", "text"]].values.tolist() == [["d2::cfg1::0000", "Short note."]]
    assert str(got["chunk_index"].dtype) == "int32"


def _fake_embed(batch: pd.DataFrame, *, dim: int) -> pd.DataFrame:
    """Deterministic 'vectors' from the text, and nulls where the schema allows them."""
    out = batch[["chunk_id", "doc_id", "content_hash", "text", "title", "source_uri"]].copy()
    out["section"] = None
    out["model"] = "fake"
    out["dimension"] = np.int32(dim)
    out["vector"] = [np.arange(dim, dtype=np.float32) * len(t) / 7 for t in batch["text"]]
    out["embedded_at"] = pd.NaT
    return out


def test_transform_table_writes_vectors_and_nulls(lh):
    lh.upsert("raw_documents", documents(TEXTS))
    chunk = functools.partial(chunk_documents, cfg=CHUNKING, tokenizer_name="regex", cfg_hash="cfg1")
    lh.transform_table("raw_documents", chunk, "chunks", where={"doc_id": list(TEXTS)})
    chunks = lh.read("chunks", ["chunk_id", "doc_id", "content_hash", "text", "title", "source_uri"])
    some = sorted(chunks["chunk_id"])[::2]
    result = lh.transform_table(
        "chunks", functools.partial(_fake_embed, dim=4), "embeddings", where={"chunk_id": some}, batch_rows=2
    )
    assert result.rows == len(some) and result.version == 1
    got = lh.read("embeddings").set_index("chunk_id").loc[some]
    texts = chunks.set_index("chunk_id").loc[some, "text"]
    for cid, vector in got["vector"].items():
        np.testing.assert_allclose(vector, np.arange(4, dtype=np.float32) * len(texts[cid]) / 7, rtol=1e-6)
    assert got["section"].isna().all() and got["embedded_at"].isna().all()
    assert (got["dimension"] == 4).all() and str(got["dimension"].dtype) == "int32"
    stored = DeltaTable(lh.location("embeddings")).to_pandas().set_index("chunk_id").loc[some]
    np.testing.assert_allclose(np.stack(stored["vector"]), np.stack(got["vector"]))


def test_session_errors_say_what_to_set(monkeypatch, tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dead = SparkLakehouse(Settings(engine="spark", spark_remote=f"sc://127.0.0.1:{port}", root=tmp_path))
    with pytest.raises(LakehouseError, match="no Spark Connect server answers"):
        dead.exists("feedback")

    import delta

    def no_jars(builder, *args, **kwargs):
        raise RuntimeError("[unresolved dependency: io.delta#delta-spark_2.13;4.0.0: not found]")

    monkeypatch.delenv("SPARK_REMOTE", raising=False)
    monkeypatch.delenv("DATABRICKS_RUNTIME_VERSION", raising=False)
    monkeypatch.setattr(delta, "configure_spark_with_delta_pip", no_jars)
    local = SparkLakehouse(Settings(engine="spark", root=tmp_path))
    assert local.table_mode == "path"
    with pytest.raises(LakehouseError, match=r"--var spark_remote=sc://host:port .* Databricks"):
        local.exists("feedback")


def test_table_mode_follows_the_runtime(monkeypatch, tmp_path):
    settings = Settings(
        engine="spark", spark_remote="sc://127.0.0.1:1", root=tmp_path, catalog="dev", schema="rag"
    )
    assert SparkLakehouse(settings).location("chunks") == str(
        tmp_path / "lakehouse" / "dev" / "rag" / "chunks"
    )
    named = SparkLakehouse(settings, table_mode="name")
    assert named.location("chunks") == "dev.rag.chunks"
    assert named._target("chunks") == "`dev`.`rag`.`chunks`"
    monkeypatch.setenv("DATABRICKS_RUNTIME_VERSION", "17.3")
    assert SparkLakehouse(settings).table_mode == "name"
