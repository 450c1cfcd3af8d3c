"""The ingest stage against real Delta tables: incremental, idempotent, and safe with bad input."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest
from deltalake import write_deltalake

from ragops.ingest import SourceError, run_ingest
from ragops.lakehouse import open_lakehouse


@pytest.fixture
def env(small_corpus, make_settings):
    settings = make_settings(source_path=str(small_corpus))
    return small_corpus, settings, open_lakehouse(settings)


def test_first_run_loads_documents_and_records_rejections(env):
    corpus, settings, lh = env
    summary = run_ingest(lh, settings)
    assert (summary.files, summary.documents, summary.new, summary.rejected) == (8, 6, 6, 2)
    assert summary.rejected_by_reason == {"empty": 1, "binary": 1}
    docs = lh.read("raw_documents")
    assert set(docs["format"]) == {"md", "html", "pdf", "txt", "json"}
    rejected = lh.read("rejected_documents").set_index("source_uri")
    assert rejected.loc["broken/binary_blob.txt", "reason_code"] == "binary"


def test_rerun_over_unchanged_input_writes_nothing(env):
    corpus, settings, lh = env
    run_ingest(lh, settings)
    versions = (lh.version("raw_documents"), lh.version("rejected_documents"))
    summary = run_ingest(lh, settings)
    assert (summary.new, summary.updated, summary.deleted, summary.unchanged) == (0, 0, 0, 6)
    assert (lh.version("raw_documents"), lh.version("rejected_documents")) == versions


def test_added_changed_and_removed_files_flow_through(env):
    corpus, settings, lh = env
    run_ingest(lh, settings)
    (corpus / "guides" / "new-feature.md").write_text("# Quantum Widgets\n\nQuantum widgets ship in 5.0.\n")
    retention = corpus / "guides" / "retention.md"
    retention.write_text(retention.read_text() + "\n\nRetention can be changed per tenant with lumenctl.\n")
    (corpus / "release-notes" / "4.0.0.txt").unlink()
    summary = run_ingest(lh, settings)
    assert (summary.new, summary.updated, summary.deleted) == (1, 1, 1)
    docs = lh.read("raw_documents").set_index("doc_id")
    assert "guides/new-feature.md" in docs.index
    assert "release-notes/4.0.0.txt" not in docs.index
    assert "per tenant with lumenctl" in docs.loc["guides/retention.md", "text"]


def test_a_file_that_breaks_keeps_its_last_good_version(env):
    corpus, settings, lh = env
    run_ingest(lh, settings)
    good = lh.read("raw_documents", where={"doc_id": ["pricing/support-sla.pdf"]})["text"].iloc[0]
    pdf = corpus / "pricing" / "support-sla.pdf"
    original = pdf.read_bytes()
    pdf.write_bytes(original[: len(original) // 3])  # truncated upload
    summary = run_ingest(lh, settings)
    assert summary.deleted == 0
    stored = lh.read("raw_documents", where={"doc_id": ["pricing/support-sla.pdf"]})
    assert stored["text"].iloc[0] == good
    rejected = lh.read("rejected_documents").set_index("source_uri")
    assert rejected.loc["pricing/support-sla.pdf", "reason_code"] == "parse_error"

    pdf.write_bytes(original)  # fixed again: the rejection goes away
    run_ingest(lh, settings)
    assert "pricing/support-sla.pdf" not in set(lh.read("rejected_documents")["source_uri"])


def test_glob_source_only_takes_matching_files(small_corpus, make_settings):
    settings = make_settings(source_path=str(small_corpus / "guides" / "*.md"))
    lh = open_lakehouse(settings)
    summary = run_ingest(lh, settings)
    assert summary.documents == 2
    assert set(lh.read("raw_documents")["doc_id"]) == {"retention.md", "collector-setup.md"}


def test_delta_table_source_with_configured_columns(tmp_path, make_settings):
    table = tmp_path / "docs_table"
    write_deltalake(str(table), pd.DataFrame({"key": ["a", "b"], "heading": ["A", "B"], "body": ["alpha", "beta"]}))
    settings = make_settings(source_path=f"delta:{table}", id_column="key", title_column="heading", text_column="body")
    lh = open_lakehouse(settings)
    summary = run_ingest(lh, settings)
    assert summary.documents == 2
    docs = lh.read("raw_documents").sort_values("doc_id")
    assert docs["doc_id"].tolist() == ["docs_table#a", "docs_table#b"]
    assert docs["title"].tolist() == ["A", "B"]


def test_missing_source_is_a_clear_error(make_settings, tmp_path):
    settings = make_settings(source_path=str(tmp_path / "nope"))
    with pytest.raises(SourceError, match="does not exist; pass --var source_path"):
        run_ingest(open_lakehouse(settings), settings)
    empty = tmp_path / "empty_dir"
    empty.mkdir()
    settings = make_settings(source_path=str(empty))
    with pytest.raises(SourceError, match="matches no files"):
        run_ingest(open_lakehouse(settings), settings)


def test_hidden_files_are_ignored(small_corpus, make_settings):
    shutil.copy(small_corpus / "guides" / "retention.md", small_corpus / ".draft.md")
    settings = make_settings(source_path=str(small_corpus))
    assert run_ingest(open_lakehouse(settings), settings).files == 8


def test_min_document_chars_rejects_short_rows_of_a_table(tmp_path, make_settings):
    table = tmp_path / "docs_table"
    write_deltalake(str(table), pd.DataFrame({"id": ["a", "b"], "title": ["A", "B"], "text": ["ok", "a longer body"]}))
    settings = make_settings(source_path=f"delta:{table}", min_document_chars="5")
    lh = open_lakehouse(settings)
    summary = run_ingest(lh, settings)
    assert summary.documents == 1
    rejected = lh.read("rejected_documents")
    assert rejected["reason_code"].tolist() == ["too_short"]
