"""A Databricks serving endpoint's inference table → inference_log rows.

The rows below are what the two payload tables hold (AI Gateway-enabled: request_time,
execution_duration_ms, served_entity_id, requester, logging_error_codes; legacy: timestamp_ms,
execution_time_ms, request_metadata), with the bodies the ragops pyfunc and an OpenAI-style chat
model return. A workspace cannot be reached from here: the Spark read of a Unity Catalog table is
not run; the same sync is run on a real Delta table given as ``delta:<path>``.
"""

from __future__ import annotations

import json

import pandas as pd
import pyarrow as pa
import pytest

from ragops.config import Settings
from ragops.lakehouse import open_lakehouse
from ragops.lakehouse.schemas import validate
from ragops.monitoring.catalog import MonitoringError
from ragops.monitoring.databricks import endpoint_of, from_inference_table, sync_inference_table

PYFUNC_ANSWER = {
    "answer": "Metrics are retained for 30 days by default.",
    "sources": [{"doc_id": "guides/retention.md", "source_uri": "file:///corpus/guides/retention.md",
                 "chunk_id": "c-retention-0", "title": "Retention", "score": 0.82, "vector_score": 0.77}],
    "trace_id": "tr-1",
    "usage": {"prompt_tokens": 412, "completion_tokens": 17, "total_tokens": 429},
    "timings": {"ttft_s": 0.21, "total_s": 0.9},
    "timings_ms": {"retrieval_ms": 12.5, "generation_ms": 880.0, "time_to_first_token_ms": 233.0},
    "lineage": {"index_snapshot": "v000004-20261201T100000-abc123", "prompt_version": 2},
    "access": {"groups": None},
}

FIXTURE = json.loads(json.dumps([
    {   # AI Gateway table, chat request to the ragops pyfunc: one answer object under "predictions"
        "databricks_request_id": "dbx-001", "client_request_id": "client-9", "request_date": "2026-12-01",
        "request_time": "2026-12-01T10:00:01.250Z", "status_code": 200, "sampling_fraction": 1.0,
        "execution_duration_ms": 950,
        "request": json.dumps({"messages": [{"role": "user", "content": "How long are metrics retained?"}]}),
        "response": json.dumps({"predictions": PYFUNC_ANSWER}),
        "served_entity_id": "rag_chain-3", "logging_error_codes": [], "requester": "ann@example.com",
    },
    {   # legacy table: dataframe_split batch of one, request_metadata names the model version
        "databricks_request_id": "dbx-002", "client_request_id": None, "date": "2026-12-01",
        "timestamp_ms": 1796119205000, "status_code": 200, "sampling_fraction": 1.0, "execution_time_ms": 1200,
        "request": json.dumps({"dataframe_split": {"columns": ["question"], "data": [["Which port does the "
                                                                                      "collector use?"]]}}),
        "response": json.dumps({"predictions": [{**PYFUNC_ANSWER, "answer": "Port 4317 (gRPC)."}]}),
        "request_metadata": {"endpoint_name": "rag-chain-prod", "model_name": "main.ragops.rag_chain",
                             "model_version": "4"},
    },
    {   # an OpenAI-style chat completion (an agent or external model behind the endpoint)
        "databricks_request_id": "dbx-003", "request_time": "2026-12-01T10:00:09Z", "status_code": 200,
        "execution_duration_ms": 400,
        "request": json.dumps({"messages": [{"role": "system", "content": "Be brief."},
                                            {"role": "user", "content": "What is the support SLA?"}]}),
        "response": json.dumps({"id": "chatcmpl-1", "object": "chat.completion",
                                "choices": [{"index": 0, "message": {"role": "assistant", "content": "4 hours."},
                                             "finish_reason": "stop"}],
                                "usage": {"prompt_tokens": 30, "completion_tokens": 3}}),
        "served_entity_id": "agent-1", "requester": "svc-bot",
    },
    {   # the model crashed: Databricks' error body
        "databricks_request_id": "dbx-004", "request_time": "2026-12-01T10:00:12Z", "status_code": 500,
        "execution_duration_ms": 30000,
        "request": json.dumps({"messages": [{"role": "user", "content": "Explain disk full errors"}]}),
        "response": json.dumps({"error_code": "INTERNAL_ERROR", "message": "Model server crashed: out of memory"}),
        "served_entity_id": "rag_chain-3", "requester": "ann@example.com",
    },
    {   # a 200 whose response body is not JSON (cut, or written by something else)
        "databricks_request_id": "dbx-005", "request_time": "2026-12-01T10:00:15Z", "status_code": 200,
        "execution_duration_ms": 800,
        "request": json.dumps({"messages": [{"role": "user", "content": "What changed in 4.0.0?"}]}),
        "response": '{"predictions": [{"answer": "Version 4.0',
        "served_entity_id": "rag_chain-3", "requester": "ann@example.com",
    },
    {   # the response was too large to log: Databricks says so in logging_error_codes
        "databricks_request_id": "dbx-006", "request_time": "2026-12-01T10:00:20Z", "status_code": 200,
        "execution_duration_ms": 2100,
        "request": json.dumps({"messages": [{"role": "user", "content": "Summarise every release note"}]}),
        "response": None, "served_entity_id": "rag_chain-3", "logging_error_codes": ["MAX_RESPONSE_SIZE_EXCEEDED"],
        "requester": "ann@example.com",
    },
]))


@pytest.fixture
def mapped() -> pd.DataFrame:
    return from_inference_table(pd.DataFrame(FIXTURE), endpoint="rag_chain_endpoint").set_index("request_id")


def test_every_row_maps_into_the_inference_log_schema(mapped):
    validate("inference_log", mapped.reset_index())
    assert sorted(mapped.index) == [f"dbx-00{i}" for i in range(1, 7)]  # nothing dropped
    assert not mapped["shadow"].any()


def test_pyfunc_answers_keep_question_answer_sources_usage_and_ttft(mapped):
    row = mapped.loc["dbx-001"]
    assert row["question"] == "How long are metrics retained?"
    assert row["answer"] == "Metrics are retained for 30 days by default."
    assert (row["status"], row["http_status"], row["latency_ms"]) == ("ok", 200, 950.0)
    assert (row["prompt_tokens"], row["completion_tokens"], row["ttft_ms"]) == (412, 17, 233.0)
    assert json.loads(row["sources"])[0]["doc_id"] == "guides/retention.md"
    assert list(row["chunk_ids"]) == ["c-retention-0"]
    assert row["timestamp"] == pd.Timestamp("2026-12-01T10:00:01.250Z")
    assert (row["key_name"], row["target"], row["route"]) == ("ann@example.com", "rag_chain-3", "rag_chain_endpoint")


def test_legacy_rows_read_timestamp_ms_execution_time_and_request_metadata(mapped):
    row = mapped.loc["dbx-002"]
    assert row["question"] == "Which port does the collector use?"
    assert row["answer"] == "Port 4317 (gRPC)."
    assert row["timestamp"] == pd.Timestamp(1796119205000, unit="ms", tz="UTC")
    assert row["latency_ms"] == 1200.0
    assert (row["model_name"], row["model_version"]) == ("main.ragops.rag_chain", "4")
    assert row["model_uri"] == "models:/main.ragops.rag_chain/4"


def test_openai_chat_completion_takes_the_last_user_message(mapped):
    row = mapped.loc["dbx-003"]
    assert (row["question"], row["answer"], row["status"]) == ("What is the support SLA?", "4 hours.", "ok")
    assert (row["prompt_tokens"], row["completion_tokens"]) == (30, 3)


def test_a_500_is_an_error_with_the_servers_message(mapped):
    row = mapped.loc["dbx-004"]
    assert (row["status"], row["http_status"]) == ("error", 500)
    assert "out of memory" in row["error"]
    assert row["question"] == "Explain disk full errors" and row["answer"] == ""


def test_a_response_that_is_not_json_keeps_its_row_as_an_error_naming_it(mapped):
    row = mapped.loc["dbx-005"]
    assert (row["status"], row["http_status"]) == ("error", 200)
    assert "response is not JSON" in row["error"]
    assert row["question"] == "What changed in 4.0.0?"


def test_a_body_databricks_did_not_log_is_flagged_truncated_not_an_error(mapped):
    row = mapped.loc["dbx-006"]
    assert row["status"] == "ok" and bool(row["truncated"])
    assert "MAX_RESPONSE_SIZE_EXCEEDED" in row["error"]


def test_rows_without_an_id_or_a_status_are_kept_and_named():
    rows = pd.DataFrame([
        {"databricks_request_id": None, "client_request_id": "client-7", "request_time": "2026-12-01T11:00:00Z",
         "status_code": None, "request": "{}", "response": None},
        {"databricks_request_id": None, "client_request_id": None, "request_time": "2026-12-01T11:00:01Z",
         "status_code": 200, "request": json.dumps({"messages": [{"role": "user", "content": "hi"}]}),
         "response": json.dumps({"unexpected": True})},
    ])
    out = from_inference_table(rows, endpoint="ep").set_index("request_id")
    validate("inference_log", out.reset_index())
    assert "client-7" in out.index and out.loc["client-7", "status"] == "error"
    assert "no status_code" in out.loc["client-7", "error"] and pd.isna(out.loc["client-7", "http_status"])
    other = [i for i in out.index if i.startswith("unidentified-")]
    assert len(other) == 1 and "holds no answer" in out.loc[other[0], "error"]


def test_a_table_without_any_time_column_is_refused_with_its_columns():
    with pytest.raises(MonitoringError, match="has no time"):
        from_inference_table(pd.DataFrame([{"databricks_request_id": "x", "status_code": 200}]))


def test_endpoint_of_the_payload_table_name():
    assert endpoint_of("main.ragops.rag_chain_endpoint_payload") == "rag_chain_endpoint"
    assert endpoint_of("delta:/tmp/x/rag_chain_endpoint_payload") == "rag_chain_endpoint"


def test_sync_copies_only_new_requests(tmp_path):
    from deltalake import write_deltalake

    payload = tmp_path / "rag_chain_endpoint_payload"
    first = pd.DataFrame(FIXTURE).drop(columns=["request_metadata", "date", "timestamp_ms", "execution_time_ms"])
    first = first[first["request_time"].notna()].assign(
        request_time=lambda d: pd.to_datetime(d["request_time"], utc=True, format="ISO8601"))
    first["logging_error_codes"] = first["logging_error_codes"].map(lambda v: v if isinstance(v, list) else [])
    write_deltalake(str(payload), first)
    settings = Settings.from_variables({"root": str(tmp_path / "state"),
                                        "monitor_inference_table": f"delta:{payload}"})
    with open_lakehouse(settings) as lh:
        assert sync_inference_table(lh, settings) == len(first)
        version = lh.version("inference_log")
        assert sync_inference_table(lh, settings) == 0
        assert lh.version("inference_log") == version  # a re-run commits nothing

        later = first.iloc[[0]].assign(databricks_request_id="dbx-100",
                                       request_time=pd.Timestamp("2026-12-01T10:30:00Z"))
        write_deltalake(str(payload), later, mode="append")
        assert sync_inference_table(lh, settings) == 1
        log = lh.read("inference_log")
    assert len(log) == len(first) + 1
    assert set(log["endpoint"]) == {"rag_chain_endpoint"}


class FakeSpark:
    """The two calls the sync makes of a Spark session (``table(...).columns``, ``sql(...).toArrow()``):
    a Unity Catalog table cannot be read from here, so this stands at that edge and records the SQL."""

    def __init__(self, frame: pd.DataFrame) -> None:
        self.frame, self.queries = frame, []

    def table(self, name: str):
        return type("Table", (), {"columns": list(self.frame.columns)})()

    def sql(self, query: str):
        self.queries.append(query)
        return type("Result", (), {"toArrow": lambda _self: pa.Table.from_pandas(self.frame, preserve_index=False)})()


class LakehouseOnSpark:
    """A real local lakehouse, plus the ``spark`` session the Spark engine has."""

    def __init__(self, lh, spark: FakeSpark) -> None:
        self._lh, self.spark = lh, spark

    def __getattr__(self, name: str):
        return getattr(self._lh, name)


def test_a_unity_catalog_table_is_read_through_spark_from_the_newest_copied_row(tmp_path):
    rows = pd.DataFrame(FIXTURE[:1]).assign(request_time=pd.Timestamp("2026-12-01T10:00:01Z"))
    settings = Settings.from_variables({"root": str(tmp_path / "state"),
                                        "monitor_inference_table": "main.ragops.rag_chain_endpoint_payload"})
    spark = FakeSpark(rows)
    with open_lakehouse(settings) as local:
        with pytest.raises(MonitoringError, match="only the spark engine reads"):
            sync_inference_table(local, settings)
        lh = LakehouseOnSpark(local, spark)
        assert sync_inference_table(lh, settings) == 1
        assert spark.queries[-1] == "SELECT * FROM main.ragops.rag_chain_endpoint_payload"  # nothing copied yet
        assert sync_inference_table(lh, settings) == 0
    # the second read starts an hour (late arrivals) before the newest row already copied
    assert spark.queries[-1].endswith("WHERE request_time >= TIMESTAMP '2026-12-01 09:00:01UTC'")
