"""Every supported format, and every kind of broken input, through the loaders."""

from __future__ import annotations

import io
import json

import pandas as pd
import pytest

from ragops.ingest.loaders import load_bytes
from tests.conftest import SAMPLE

MAX = 1_000_000


def load(rel: str, data: bytes | None = None, **kw):
    data = (SAMPLE / rel).read_bytes() if data is None else data
    return load_bytes(data, rel, max_bytes=kw.pop("max_bytes", MAX), **kw)


def only_doc(result):
    assert not result.rejections, result.rejections
    assert len(result.documents) == 1
    return result.documents[0]


def test_markdown_title_from_first_heading():
    doc = only_doc(load("guides/retention.md"))
    assert doc.doc_id == "guides/retention.md"
    assert doc.title == "Retention Policies"
    assert "30 days" in doc.text


def test_markdown_front_matter_becomes_metadata():
    doc = only_doc(load("x.md", b"---\ntitle: From Front Matter\nowner: docs-team\n---\n# Heading\n\nBody text.\n"))
    assert doc.title == "From Front Matter"
    assert doc.metadata["owner"] == "docs-team"
    assert doc.text.startswith("# Heading")


def test_html_drops_scripts_styles_and_navigation():
    doc = only_doc(load("reference/ports-and-protocols.html"))
    assert doc.title.startswith("Ports and Protocols")
    assert "9999" not in doc.text  # decoy text lives in the <script>
    assert "toggleSidebar" not in doc.text and "border-collapse" not in doc.text
    assert "Getting started" not in doc.text  # the <nav> sidebar
    assert "# Ports and Protocols" in doc.text  # headings kept as markdown
    assert "| 8640 |" in doc.text  # table cells separated


def test_pdf_text_is_extracted_from_every_page():
    doc = only_doc(load("whitepapers/storage-engine-architecture.pdf"))
    assert doc.metadata["pages"] == 2
    assert len(doc.text) > 2000


def test_jsonl_one_document_per_line_with_ids_from_the_records():
    result = load("faq/faq.jsonl")
    assert not result.rejections
    assert [d.doc_id for d in result.documents][:2] == ["faq/faq.jsonl#faq-001", "faq/faq.jsonl#faq-002"]
    assert result.documents[0].metadata["external_id"] == "faq-001"


def test_single_json_document_keeps_the_file_path_as_id():
    doc = only_doc(load("kb/kb-1042-disk-full.json"))
    assert doc.doc_id == "kb/kb-1042-disk-full.json"
    assert doc.metadata.get("product_area")


def test_jsonl_with_a_bad_line_keeps_the_good_lines():
    result = load("broken/bad_lines.jsonl")
    assert [d.metadata["external_id"] for d in result.documents] == ["bad-001", "bad-002", "bad-004"]
    assert [(r.source_uri, r.reason_code) for r in result.rejections] == [("broken/bad_lines.jsonl:3", "parse_error")]
    assert "line 3" in result.rejections[0].reason


@pytest.mark.parametrize(
    "rel, code, words",
    [
        ("broken/empty.md", "empty", "0 bytes"),
        ("broken/whitespace_only.txt", "empty", "whitespace"),
        ("broken/binary_blob.txt", "binary", "NUL"),
        ("broken/truncated.pdf", "parse_error", "truncated"),
        ("broken/not_really.pdf", "parse_error", "%PDF-"),
        ("broken/malformed.json", "parse_error", "line 1 column"),
    ],
)
def test_broken_files_are_rejected_with_a_reason(rel, code, words):
    result = load(rel)
    assert not result.documents
    assert len(result.rejections) == 1
    rej = result.rejections[0]
    assert rej.reason_code == code
    assert words in rej.reason


def test_cp1252_text_is_decoded_and_the_encoding_recorded():
    doc = only_doc(load("broken/latin1_notes.txt"))
    assert "é" in doc.text and "ß" in doc.text
    assert doc.metadata["encoding"].lower().replace("_", "") in {"cp1252", "windows1252", "latin1", "iso88591"}


def test_oversized_files_are_rejected_without_parsing():
    result = load("big.txt", b"a" * 2000, max_bytes=1000)
    assert result.rejections[0].reason_code == "too_large"
    assert "2,000 bytes" in result.rejections[0].reason


def test_unsupported_types_are_rejected():
    result = load("diagram.png", b"\x89PNG....")
    assert result.rejections[0].reason_code == "unsupported"
    assert ".md" in result.rejections[0].reason


def test_csv_and_parquet_with_configured_columns():
    csv = b"sku,name,body\nA1,Widget,A small widget.\nA2,Gadget,\nA1,Dup,Again.\n"
    result = load("products.csv", csv, columns=("sku", "name", "body"))
    assert [d.doc_id for d in result.documents] == ["products.csv#A1"]
    assert result.documents[0].title == "Widget"
    assert sorted(r.reason_code for r in result.rejections) == ["duplicate_id", "empty"]

    buf = io.BytesIO()
    pd.DataFrame({"sku": ["B1", "B2"], "name": ["x", "y"], "body": ["first", "second"]}).to_parquet(buf)
    result = load("items.parquet", buf.getvalue(), columns=("sku", "name", "body"))
    assert [d.text for d in result.documents] == ["first", "second"]


def test_structured_source_without_the_text_column_says_which_variable_to_set():
    result = load("products.csv", b"id,content\n1,hello\n")
    assert result.rejections[0].reason_code == "missing_field"
    assert "--var text_column" in result.rejections[0].reason


def test_json_records_need_an_id():
    data = json.dumps([{"text": "no id here"}, {"id": "k", "text": "fine"}]).encode()
    result = load("records.json", data)
    assert [d.doc_id for d in result.documents] == ["records.json#k"]
    assert result.rejections[0].reason_code == "missing_field"


def test_content_hash_changes_with_text_only():
    a = only_doc(load("a.txt", b"Title\n\nBody one."))
    b = only_doc(load("a.txt", b"Title\n\nBody one."))
    c = only_doc(load("a.txt", b"Title\n\nBody two."))
    assert a.content_hash == b.content_hash != c.content_hash


def test_documents_shorter_than_min_chars_are_rejected_with_the_reason():
    result = load("note.txt", b"  tiny  ", min_chars=10)
    assert not result.documents
    (rej,) = result.rejections
    assert rej.reason_code == "too_short" and "4 characters" in rej.reason and "min_document_chars" in rej.reason
    assert only_doc(load("note.txt", b"long enough text", min_chars=10)).text.strip() == "long enough text"
