"""The chunk stage: only new/changed documents, stale chunks removed, config hash in every id."""

from __future__ import annotations

import pytest

from ragops.chunking import run_chunking
from ragops.ingest import run_ingest
from ragops.lakehouse import open_lakehouse


@pytest.fixture
def env(small_corpus, make_settings):
    settings = make_settings(source_path=str(small_corpus), chunk_size="96", chunk_overlap="16")
    lh = open_lakehouse(settings)
    run_ingest(lh, settings)
    return small_corpus, settings, lh


def test_chunks_record_where_they_came_from(env):
    _, settings, lh = env
    summary = run_chunking(lh, settings)
    chunks = lh.read("chunks")
    docs = lh.read("raw_documents").set_index("doc_id")
    assert summary.chunks_written == len(chunks) > len(docs)
    assert chunks["chunk_id"].str.contains(f"::{summary.chunk_config_hash}::").all()
    assert (chunks["n_tokens"] <= 96).all()
    for row in chunks.head(20).itertuples():
        assert docs.loc[row.doc_id, "text"][row.start_char : row.end_char] == row.text


def test_only_changed_documents_are_rechunked(env):
    corpus, settings, lh = env
    run_chunking(lh, settings)
    v = lh.version("chunks")
    assert run_chunking(lh, settings).rechunked_documents == 0
    assert lh.version("chunks") == v

    path = corpus / "guides" / "retention.md"
    path.write_text(path.read_text().replace("30 days", "45 days"))
    run_ingest(lh, settings)
    summary = run_chunking(lh, settings)
    assert summary.rechunked_documents == 1
    text = " ".join(lh.read("chunks", where={"doc_id": ["guides/retention.md"]})["text"])
    assert "45 days" in text and "30 days" not in text


def test_shorter_document_leaves_no_stale_chunks(env):
    corpus, settings, lh = env
    run_chunking(lh, settings)
    before = len(lh.read("chunks", where={"doc_id": ["guides/collector-setup.md"]}))
    (corpus / "guides" / "collector-setup.md").write_text("# Collector\n\nNow very short.\n")
    run_ingest(lh, settings)
    summary = run_chunking(lh, settings)
    after = lh.read("chunks", where={"doc_id": ["guides/collector-setup.md"]})
    assert before > 1 and len(after) == 1
    assert summary.chunks_deleted == before - 1


def test_deleted_documents_lose_their_chunks(env):
    corpus, settings, lh = env
    run_chunking(lh, settings)
    (corpus / "release-notes" / "4.0.0.txt").unlink()
    run_ingest(lh, settings)
    run_chunking(lh, settings)
    assert "release-notes/4.0.0.txt" not in set(lh.read("chunks")["doc_id"])


def test_a_config_change_rechunks_everything_and_drops_old_ids(env, make_settings):
    corpus, settings, lh = env
    first = run_chunking(lh, settings)
    other = make_settings(source_path=str(corpus), chunk_strategy="markdown", chunk_size="96", chunk_overlap="16")
    second = run_chunking(lh, other)
    assert second.chunk_config_hash != first.chunk_config_hash
    assert second.rechunked_documents == second.documents
    assert set(lh.read("chunks")["chunk_config_hash"]) == {second.chunk_config_hash}
