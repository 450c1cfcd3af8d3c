"""``ragops bundle run ingest_job`` end to end, as a user runs it: real CLI processes, real Delta
tables, the real embedding model and real FAISS/BM25 snapshots."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, copy_corpus

pytestmark = pytest.mark.slow
RAGOPS = str(Path(sys.executable).with_name("ragops"))


def ragops(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "RAGOPS_PROGRESS": "0", **(env or {})}
    return subprocess.run([RAGOPS, *args], cwd=REPO, capture_output=True, text=True, env=full_env, timeout=600)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    base = tmp_path_factory.mktemp("job")
    corpus = copy_corpus(base / "corpus")
    return corpus, base / "state"


def run_job(corpus: Path, root: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return ragops("bundle", "run", "ingest_job", "--var", f"source_path={corpus}", "--var", f"root={root}",
                  "--json", env=env)


def run_record(proc: subprocess.CompletedProcess) -> dict:
    return json.loads(proc.stdout.strip().splitlines()[-1])


def summaries(proc) -> dict:
    return {t["task_key"]: t["summary"] for t in run_record(proc)["tasks"]}


def versions(root: Path) -> dict:
    proc = ragops("tables", "--json", "--var", f"root={root}")
    return {t["table"]: t["version"] for t in json.loads(proc.stdout)}


def search(root: Path, query: str, mode: str = "hybrid", k: int = 5) -> list[dict]:
    proc = ragops("search", query, "--json", "--mode", mode, "--k", str(k), "--var", f"root={root}")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)["results"]


def test_full_lifecycle(workspace):
    corpus, root = workspace

    # 1. first run builds everything
    first = run_job(corpus, root)
    assert first.returncode == 0, first.stderr[-3000:]
    s = summaries(first)
    assert s["ingest"]["documents"] == 6 and s["ingest"]["rejected"] == 2
    assert s["index_sync"]["mode"] == "full" and s["index_sync"]["total"] == s["embed"]["embedded"] > 6
    hits = search(root, "How long is raw data retained by default?")
    assert hits[0]["doc_id"] == "guides/retention.md"

    # 2. a second run over unchanged input writes nothing
    before = versions(root)
    second = run_job(corpus, root)
    assert second.returncode == 0, second.stderr[-3000:]
    s = summaries(second)
    assert (s["ingest"]["new"], s["ingest"]["updated"], s["ingest"]["deleted"]) == (0, 0, 0)
    assert s["chunk"]["chunks_written"] == 0 and s["embed"]["embedded"] == 0
    assert s["index_sync"]["mode"] == "up_to_date"
    assert versions(root) == before

    # 3. add one file, change one, delete one: only those flow through
    (corpus / "guides" / "quasar.md").write_text(
        "# Quasar export\n\nThe quasar exporter streams metrics to cold storage every 17 minutes.\n")
    sla = corpus / "guides" / "collector-setup.md"
    sla.write_text(sla.read_text() + "\n\n## Heartbeats\n\nThe collector sends a heartbeat every 42 seconds.\n")
    (corpus / "release-notes" / "4.0.0.txt").unlink()
    third = run_job(corpus, root)
    assert third.returncode == 0, third.stderr[-3000:]
    s = summaries(third)
    assert (s["ingest"]["new"], s["ingest"]["updated"], s["ingest"]["deleted"]) == (1, 1, 1)
    assert s["chunk"]["rechunked_documents"] == 2
    assert 2 <= s["embed"]["embedded"] < s["index_sync"]["total"]  # not a re-embed of everything
    assert s["index_sync"]["mode"] == "change_feed" and s["index_sync"]["deleted"] >= 1
    assert search(root, "quasar exporter cold storage", mode="keyword")[0]["doc_id"] == "guides/quasar.md"
    assert search(root, "heartbeat interval seconds", mode="keyword")[0]["doc_id"] == "guides/collector-setup.md"
    assert all(r["doc_id"] != "release-notes/4.0.0.txt" for r in search(root, "release 4.0.0 notes", k=20))

    # 4. a crash in the middle of index sync: the job fails naming the task, the old snapshot answers
    (corpus / "guides" / "nebula.md").write_text("# Nebula mode\n\nNebula mode compresses blocks with zstd level 19.\n")
    crashed = run_job(corpus, root, env={"RAGOPS_INJECT_FAILURE": "index_sync:before_switch"})
    assert crashed.returncode == 1
    assert "index_sync" in crashed.stderr and "injected failure" in crashed.stderr
    tasks = {t["task_key"]: t["status"] for t in run_record(crashed)["tasks"]}
    assert tasks == {"ingest": "succeeded", "chunk": "succeeded", "embed": "succeeded", "index_sync": "failed"}
    assert all(r["doc_id"] != "guides/nebula.md" for r in search(root, "nebula zstd", mode="keyword"))
    assert search(root, "quasar exporter", mode="keyword")[0]["doc_id"] == "guides/quasar.md"

    # 5. the next run converges
    recovered = run_job(corpus, root)
    assert recovered.returncode == 0, recovered.stderr[-3000:]
    s = summaries(recovered)
    assert s["embed"]["embedded"] == 0 and s["index_sync"]["mode"] == "change_feed"
    assert search(root, "nebula zstd", mode="keyword")[0]["doc_id"] == "guides/nebula.md"
