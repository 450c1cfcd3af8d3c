"""The same ``ingest_job`` on the Spark engine: target ``local_spark`` against a real pysail Spark
Connect server. Stages run through ``mapInPandas`` in the server's Python workers and write with
SQL ``MERGE INTO``; Sail has no change data feed, so index sync falls back to a hash diff."""

from __future__ import annotations

import json

import pytest
from deltalake import DeltaTable

from tests.conftest import copy_corpus
from tests.integration.test_ingest_job import ragops, run_record, search
from tests.spark_server import spark_connect_server

pytestmark = [pytest.mark.slow, pytest.mark.spark]


@pytest.fixture(scope="module")
def server():
    with spark_connect_server() as url:
        yield url


def test_ingest_job_on_spark_connect(server, tmp_path):
    corpus = copy_corpus(tmp_path / "corpus", ["guides/retention.md", "reference/ports-and-protocols.html",
                                                "kb/kb-1042-disk-full.json", "broken/empty.md"])
    root = tmp_path / "state"
    args = ["bundle", "run", "ingest_job", "--target", "local_spark", "--var", f"spark_remote={server}",
            "--var", f"root={root}", "--var", f"source_path={corpus}", "--json"]

    first = ragops(*args)
    assert first.returncode == 0, first.stderr[-4000:]
    record = run_record(first)
    assert record["target"] == "local_spark"
    s = {t["task_key"]: t["summary"] for t in record["tasks"]}
    assert s["ingest"]["documents"] == 3 and s["ingest"]["rejected"] == 1
    assert s["index_sync"]["mode"] == "full"
    # what the Spark engine wrote are real Delta tables
    chunks = DeltaTable(str(root / "lakehouse" / "main" / "ragops" / "chunks")).to_pandas()
    assert len(chunks) == s["chunk"]["chunks_written"] > 3
    assert search(root, "default retention for raw samples")[0]["doc_id"] == "guides/retention.md"

    (corpus / "guides" / "zebra.md").write_text("# Zebra mode\n\nZebra mode stripes shards across racks.\n")
    second = ragops(*args)
    assert second.returncode == 0, second.stderr[-4000:]
    s = {t["task_key"]: t["summary"] for t in run_record(second)["tasks"]}
    assert s["ingest"]["new"] == 1 and s["embed"]["embedded"] >= 1
    assert s["index_sync"]["mode"] == "hash_diff"
    assert "falling back to a content-hash diff" in second.stderr
    assert search(root, "zebra stripes shards", mode="keyword")[0]["doc_id"] == "guides/zebra.md"
    tables = {t["table"]: t for t in json.loads(ragops("tables", "--json", "--var", f"root={root}").stdout)}
    assert tables["raw_documents"]["rows"] == 4
