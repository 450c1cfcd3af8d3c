"""The inference log: journal → Delta, lossless across kill -9, idempotent replay, truncation, no secrets,
and the Databricks inference-table mapping. Real Delta tables (delta-rs) on a tmp root."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import pytest

from ragops.lakehouse import open_lakehouse
from ragops.serving.gateway.journal import (
    WRITERS,
    InferenceLog,
    InferenceLogError,
    InferenceRecord,
    from_databricks_payload,
    import_databricks_payload,
    redact_secrets,
    to_row,
)

REPO = Path(__file__).resolve().parents[3]
TABLE = "inference_log"


def make_record(request_id: str, **overrides) -> InferenceRecord:
    """A realistic served request (also imported by the child processes below)."""
    fields = dict(
        request_id=request_id,
        timestamp=datetime.now(timezone.utc),
        key_name="alice",
        route="rag_chain",
        target="champion",
        model_uri="models:/rag_chain@champion",
        model_version="3",
        lineage={"index_snapshot": "snap-42", "prompt_version": "v2", "chain_config_hash": "abc123"},
        question="How long are raw samples kept?",
        answer="Raw samples are kept for 30 days.",
        sources=[{"doc_id": "guides/retention.md", "source_uri": "file:///guides/retention.md",
                  "chunk_id": "c1", "score": 0.91}],
        chunk_ids=["c1"],
        status="ok",
        http_status=200,
        error=None,
        latency_ms=812.5,
        ttft_ms=120.0,
        prompt_tokens=312,
        completion_tokens=14,
        access_groups=["eng"],
    )
    fields.update(overrides)
    return InferenceRecord(**fields)


CHILD = textwrap.dedent("""
    import os, sys, time
    sys.path.insert(0, {repo!r})
    from ragops.config import Settings
    from ragops.serving.gateway.journal import InferenceLog
    from tests.serving.gateway.test_journal import make_record

    mode, root = sys.argv[1], sys.argv[2]
    log = InferenceLog(Settings.from_variables({{"root": root}}), flush_every_s=0.3, max_batch=100_000)
    log.start()
    if mode == "loop":  # record until killed; an id is printed only once record() has returned
        for i in range(20_000):
            request_id = f"req-{{i:06d}}"
            log.record(make_record(request_id))
            sys.stdout.write(request_id + "\\n")
            sys.stdout.flush()
            time.sleep(0.002)
        time.sleep(600)
    elif mode == "flush-and-die":  # everything in Delta and checkpointed, then a crash (no close())
        for i in range(int(sys.argv[3])):
            log.record(make_record(f"req-{{i:06d}}"))
        log.flush()
        os._exit(0)
""").format(repo=str(REPO))


def run_child(tmp_path: Path, *args: str) -> subprocess.Popen:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    return subprocess.Popen([sys.executable, str(script), *args], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=open(tmp_path / "child.stderr", "w"), text=True)


def delta_ids(settings) -> list[str]:
    lh = open_lakehouse(settings)
    if not lh.exists(TABLE):
        return []
    return lh.read(TABLE, ["request_id"])["request_id"].tolist()


def journals(settings) -> list[Path]:
    return sorted((settings.root / "gateway" / "journal").glob("*.jsonl"))


def test_rows_recorded_before_kill_9_are_in_delta_once_after_restart(make_settings, tmp_path):
    settings = make_settings()
    child = run_child(tmp_path, "loop", str(settings.root))
    lines: list[str] = []

    def read_ids() -> None:
        for line in child.stdout:
            lines.append(line)

    reader = threading.Thread(target=read_ids, daemon=True)
    reader.start()
    try:
        # Kill it mid-way: its flusher has written some rows to Delta, and it keeps recording.
        deadline = time.monotonic() + 60
        while not (len(lines) >= 300 and delta_ids(settings)):
            assert child.poll() is None, (tmp_path / "child.stderr").read_text()
            assert time.monotonic() < deadline, "the child neither recorded nor flushed in 60 s"
            time.sleep(0.05)
        seen_flushed = len(lines)
        while len(lines) < seen_flushed + 10:  # a few more, recorded after a flush we saw
            assert time.monotonic() < deadline
            time.sleep(0.005)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    reader.join(timeout=10)
    assert child.returncode == -signal.SIGKILL
    reported = [line.strip() for line in lines if line.endswith("\n")]  # a torn last line was not reported
    assert reported == [f"req-{i:06d}" for i in range(len(reported))]
    before = delta_ids(settings)
    assert 0 < len(before) < len(reported), "the kill must leave recorded rows that only the journal has"
    (dead,) = journals(settings)

    restarted = InferenceLog(settings, flush_every_s=60)
    restarted.start()  # replays the dead process's journal
    try:
        after = delta_ids(settings)
        assert len(after) == len(set(after)), "a replayed row was duplicated"
        # Exactly the reported ids; the one the child may have recorded but not yet printed is allowed.
        unreported = set(after) - set(reported)
        assert set(reported) <= set(after) and unreported <= {f"req-{len(reported):06d}"}
        assert not dead.exists()  # replayed, then removed
    finally:
        restarted.close()
    assert journals(settings) == []  # fully flushed journals do not pile up


def test_replaying_rows_already_in_delta_neither_duplicates_nor_loses(make_settings, tmp_path):
    settings = make_settings()
    child = run_child(tmp_path, "flush-and-die", str(settings.root), "40")
    assert child.wait(timeout=120) == 0, (tmp_path / "child.stderr").read_text()
    assert sorted(delta_ids(settings)) == [f"req-{i:06d}" for i in range(40)]
    # A crash between the Delta commit and the checkpoint: the checkpoint is lost, the journal is not.
    (dead,) = journals(settings)
    dead.with_suffix(".ckpt").unlink()
    lh = open_lakehouse(settings)
    version = lh.version(TABLE)

    for _ in range(2):  # replay, then start once more: nothing left to replay
        log = InferenceLog(settings, flush_every_s=60)
        log.start()
        log.close()
    assert lh.version(TABLE) == version + 1, "the lost checkpoint should have made start() replay all 40 rows"
    assert sorted(delta_ids(settings)) == [f"req-{i:06d}" for i in range(40)]
    assert journals(settings) == []


@pytest.mark.parametrize("writer", WRITERS)
def test_lines_the_table_refuses_are_set_aside_and_do_not_block_the_others(make_settings, writer):
    settings = make_settings()
    folder = settings.root / "gateway" / "journal"
    folder.mkdir(parents=True)
    good = json.dumps(to_row(make_record("good"), 32_000))
    bad_time = json.dumps({**to_row(make_record("bad-time"), 32_000), "timestamp": "yesterday"})
    torn = good[: len(good) // 2]  # the owner died inside write(2): its record() never returned
    (folder / "4242-deadbeef.jsonl").write_text(f"{good}\nnot json at all\n{bad_time}\n{torn}")
    with InferenceLog(settings, flush_every_s=60, writer=writer):
        pass  # start() replays the dead journal
    assert delta_ids(settings) == ["good"]
    set_aside = (folder / "rejected" / "4242-deadbeef.jsonl").read_text().splitlines()
    assert len(set_aside) == 2 and "not json at all" in set_aside
    assert [json.loads(line)["request_id"] for line in set_aside if line != "not json at all"] == ["bad-time"]
    assert journals(settings) == []


def test_oversized_fields_are_truncated_and_flagged_never_dropped(make_settings):
    settings = make_settings()
    big_sources = [{"doc_id": f"doc-{i}", "chunk_id": f"c{i}", "score": 0.5, "text": "x" * 500} for i in range(20)]
    with InferenceLog(settings, max_field_chars=400) as log:
        log.record(make_record("big", question="q" * 1000, answer="a" * 5000, sources=big_sources,
                               chunk_ids=[f"c{i}" for i in range(20)]))
        log.record(make_record("small"))
        assert log.flush() == 2
    rows = open_lakehouse(settings).read(TABLE).set_index("request_id")
    big = rows.loc["big"]
    assert big["truncated"] and big["question"] == "q" * 400 and big["answer"] == "a" * 400
    kept = json.loads(big["sources"])  # still JSON, best-ranked sources first
    assert len(big["sources"]) <= 400 and kept and kept[0]["doc_id"] == "doc-0"
    assert list(big["chunk_ids"]) == [f"c{i}" for i in range(20)]
    assert not rows.loc["small", "truncated"]


def test_no_api_key_reaches_the_journal_or_the_table(make_settings):
    settings = make_settings()
    key = "sk-ragops-3f9c2a7d1e5b4c8a9f0e"
    # An upstream's error can echo the request's headers back; the log must not keep the key.
    rec = make_record("r-secret", status="error", http_status=502,
                      error=f"upstream said 401 for headers {{'Authorization': 'Bearer {key}'}} api_key={key}",
                      lineage={"upstream": f"https://up.example/v1?token={key}"})
    log = InferenceLog(settings, flush_every_s=60)
    log.start()
    try:
        log.record(rec)
        (journal,) = journals(settings)
        assert key.encode() not in journal.read_bytes()
        log.flush()
    finally:
        log.close()
    row = open_lakehouse(settings).read(TABLE).iloc[0]
    assert row["key_name"] == "alice" and "[REDACTED]" in row["error"]
    assert all(key not in str(v) for v in row.to_dict().values())


def test_redaction_keeps_what_a_person_needs():
    assert redact_secrets("HTTP 401 Unauthorized") == "HTTP 401 Unauthorized"
    assert redact_secrets("Authorization: Bearer abcdefgh12345") == "Authorization: Bearer [REDACTED]"


@pytest.mark.parametrize("writer", WRITERS)
def test_rows_reach_delta_without_an_explicit_flush(make_settings, writer):
    settings = make_settings()
    with InferenceLog(settings, flush_every_s=0.2, writer=writer) as log:
        for i in range(3):
            log.record(make_record(f"bg-{i}"))
        deadline = time.monotonic() + 30
        # depth falls once the checkpoint is written, just after the commit (later with the writer process)
        while sorted(delta_ids(settings)) != ["bg-0", "bg-1", "bg-2"] or log.depth() != 0:
            assert time.monotonic() < deadline, "the flusher thread did not write the rows in 30 s"
            time.sleep(0.1)


def test_depth_seen_and_the_latest_record_of_a_request_wins(make_settings):
    settings = make_settings()
    log = InferenceLog(settings, flush_every_s=60)
    log.start()
    other = InferenceLog(settings, flush_every_s=60)  # another worker on the same machine
    other.start()
    try:
        log.record(make_record("r1", answer="first"))
        log.record(make_record("r1", answer="second"))
        log.record(make_record("r1", answer="shadow's", shadow=True, target="challenger"))
        log.record(make_record("r2"))
        assert log.depth() == 4
        assert log.seen("r1") and other.seen("r2"), "un-flushed rows are found in the other worker's journal"
        assert not other.seen("nope")
        assert log.flush() == 4 and log.depth() == 0
    finally:
        log.close()
        other.close()
    rows = open_lakehouse(settings).read(TABLE)
    assert sorted(zip(rows["request_id"], rows["shadow"], rows["answer"], strict=True)) == [
        ("r1", False, "second"), ("r1", True, "shadow's"), ("r2", False, "Raw samples are kept for 30 days.")]
    fresh = InferenceLog(settings)  # no memory of them: the table answers
    assert fresh.seen("r2") and not fresh.seen("r3")


@pytest.mark.parametrize("writer", WRITERS)
def test_rows_wait_in_the_journal_while_delta_is_down(make_settings, writer):
    settings = make_settings()
    table_path = settings.table_path(TABLE)
    table_path.parent.mkdir(parents=True)
    table_path.write_text("not a Delta table")  # writes to the table fail until this is gone
    log = InferenceLog(settings, flush_every_s=60, writer=writer)
    log.start()
    try:
        for i in range(5):
            log.record(make_record(f"down-{i}"))
        with pytest.raises(Exception):  # noqa: B017 - whatever the storage raises
            log.flush()
        assert log.depth() == 5
        table_path.unlink()
        assert log.flush() == 5 and log.depth() == 0
    finally:
        log.close()
    assert sorted(delta_ids(settings)) == [f"down-{i}" for i in range(5)]


def test_the_own_journal_is_rotated_and_removed_once_flushed(make_settings):
    settings = make_settings()
    log = InferenceLog(settings, flush_every_s=60, rotate_bytes=1)
    log.start()
    try:
        for batch in range(3):
            for i in range(4):
                log.record(make_record(f"rot-{batch}-{i}"))
            log.flush()
            assert len(journals(settings)) == 1  # the old journal went once drained
    finally:
        log.close()
    assert len(delta_ids(settings)) == 12 and journals(settings) == []


def test_an_unknown_writer_is_an_error_naming_the_choices(make_settings):
    with pytest.raises(InferenceLogError, match="thread, process"):
        InferenceLog(make_settings(), writer="fork")


def test_record_outside_start_and_close_is_an_error(make_settings):
    log = InferenceLog(make_settings())
    with pytest.raises(InferenceLogError, match="before start"):
        log.record(make_record("x"))
    log.start()
    log.close()
    with pytest.raises(InferenceLogError, match="after close"):
        log.record(make_record("x"))


# --- Databricks inference tables ------------------------------------------------------------------
#: Hand-written from the documented AI Gateway payload table schema (databricks_request_id,
#: client_request_id, request_date, request_time, status_code, sampling_fraction,
#: execution_duration_ms, request, response, logging_error_codes, served_entity_id, requester);
#: the response body is what this gateway (and the chain behind an endpoint) returns.
DATABRICKS_ROW = {
    "databricks_request_id": "5d2c7a4e-9b1f-4e8a-a3c2-0f6d1b7e9a21",
    "client_request_id": "my-client-17",
    "request_date": "2026-11-30",
    "request_time": pd.Timestamp("2026-11-30 14:03:27.512"),
    "status_code": 200,
    "sampling_fraction": 1.0,
    "execution_duration_ms": 1840,
    "request": json.dumps({"messages": [{"role": "system", "content": "Be brief."},
                                        {"role": "user", "content": "What port does the collector use?"}],
                           "max_tokens": 256}),
    "response": json.dumps({
        "id": "chatcmpl-5d2c", "object": "chat.completion", "created": 1795961007, "model": "rag_chain",
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": "Port 4817 (gRPC)."}}],
        "usage": {"prompt_tokens": 402, "completion_tokens": 9, "total_tokens": 411},
        "sources": [{"doc_id": "reference/ports-and-protocols.html", "chunk_id": "c7", "score": 0.88}],
        "model_version": "4",
        "lineage": {"index_snapshot": "snap-9", "prompt_version": "v2"},
    }),
    "logging_error_codes": [],
    "served_entity_id": "a1b2c3d4e5f60718293a4b5c6d7e8f90",
    "requester": "svc-support-bot@example.com",
}


def test_a_databricks_inference_table_row_maps_to_an_inference_log_row(make_settings):
    row = from_databricks_payload(DATABRICKS_ROW, endpoint="rag-chain-endpoint")
    assert row["request_id"] == "5d2c7a4e-9b1f-4e8a-a3c2-0f6d1b7e9a21"
    assert row["timestamp"] == pd.Timestamp("2026-11-30 14:03:27.512", tz="UTC")
    assert (row["question"], row["answer"]) == ("What port does the collector use?", "Port 4817 (gRPC).")
    assert (row["status"], row["http_status"], row["latency_ms"]) == ("ok", 200, 1840.0)
    assert (row["prompt_tokens"], row["completion_tokens"]) == (402, 9)
    assert row["key_name"] == "svc-support-bot@example.com" and row["endpoint"] == "rag-chain-endpoint"
    assert row["target"] == "a1b2c3d4e5f60718293a4b5c6d7e8f90" and row["model_version"] == "4"
    assert row["chunk_ids"] == ["c7"] and json.loads(row["sources"])[0]["doc_id"].startswith("reference/")
    assert json.loads(row["lineage"])["client_request_id"] == "my-client-17"
    assert not row["truncated"] and row["error"] is None

    # Imported into the table the gateway writes, as often as a sync job runs: one row.
    lh = open_lakehouse(make_settings())
    failed = {**DATABRICKS_ROW, "databricks_request_id": "e-1", "status_code": 429,
              "response": json.dumps({"error_code": "REQUEST_LIMIT_EXCEEDED", "message": "rate limit hit"})}
    for _ in range(2):
        import_databricks_payload(lh, [DATABRICKS_ROW, failed], endpoint="rag-chain-endpoint")
    rows = lh.read(TABLE).set_index("request_id")
    assert sorted(rows.index) == ["5d2c7a4e-9b1f-4e8a-a3c2-0f6d1b7e9a21", "e-1"]
    assert rows.loc["e-1", ["status", "http_status", "error"]].tolist() == ["refused", 429, "rate limit hit"]


def test_a_databricks_row_whose_payload_was_not_logged_is_kept_and_flagged():
    row = from_databricks_payload({**DATABRICKS_ROW, "status_code": 503, "response": None,
                                   "logging_error_codes": ["MAX_RESPONSE_SIZE_EXCEEDED"]})
    assert row["truncated"] and row["status"] == "error" and row["answer"] == ""
    assert "MAX_RESPONSE_SIZE_EXCEEDED" in row["error"]
