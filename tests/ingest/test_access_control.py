"""Document access control at ingest: where allowed groups come from, and what bad ones do."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
from deltalake import write_deltalake

from ragops.ingest import load_bytes, run_ingest
from ragops.lakehouse import open_lakehouse

MB = 1 << 20


def groups_by_doc(lh) -> dict[str, list[str] | None]:
    docs = lh.read("raw_documents", ["doc_id", "metadata"])
    return {d: json.loads(m).get("allowed_groups") for d, m in zip(docs["doc_id"], docs["metadata"], strict=True)}


def rejections(lh) -> dict[str, tuple[str, str]]:
    rej = lh.read("rejected_documents")
    return {u: (c, r) for u, c, r in zip(rej["source_uri"], rej["reason_code"], rej["reason"], strict=True)}


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    root = tmp_path / "corpus"
    (root / "guides").mkdir(parents=True)
    (root / "guides" / "public.md").write_text("# Public\n\nEveryone may read this guide about dashboards.\n")
    (root / "guides" / "oncall.md").write_text("# On-call\n\nThe on-call rota rotates every Monday at 09:00.\n")
    (root / "guides" / "oncall.md.acl.json").write_text(json.dumps({"allowed_groups": ["ops", "sre"]}))
    return root


@pytest.fixture
def env(corpus, make_settings):
    settings = make_settings(source_path=str(corpus))
    return corpus, settings, open_lakehouse(settings)


def test_a_sidecar_restricts_its_document_and_is_not_a_document_itself(env):
    corpus, settings, lh = env
    summary = run_ingest(lh, settings)
    assert (summary.files, summary.documents, summary.rejected) == (2, 2, 0)
    assert groups_by_doc(lh) == {"guides/public.md": None, "guides/oncall.md": ["ops", "sre"]}


def test_rerunning_unchanged_input_writes_nothing(env):
    _, settings, lh = env
    run_ingest(lh, settings)
    version = lh.version("raw_documents")
    summary = run_ingest(lh, settings)
    assert (summary.new, summary.updated, summary.metadata_updated, summary.unchanged) == (0, 0, 0, 2)
    assert lh.version("raw_documents") == version


def test_changing_only_the_groups_rewrites_the_metadata_with_the_same_content_hash(env):
    corpus, settings, lh = env
    run_ingest(lh, settings)
    hashes = dict(lh.read("raw_documents", ["doc_id", "content_hash"]).itertuples(index=False))
    (corpus / "guides" / "oncall.md.acl.json").write_text(json.dumps({"allowed_groups": ["sre"]}))
    (corpus / "guides" / "public.md.acl.json").write_text(json.dumps({"allowed_groups": ["eng"]}))
    summary = run_ingest(lh, settings)
    assert (summary.updated, summary.metadata_updated, summary.unchanged) == (0, 2, 0)
    assert groups_by_doc(lh) == {"guides/public.md": ["eng"], "guides/oncall.md": ["sre"]}
    assert dict(lh.read("raw_documents", ["doc_id", "content_hash"]).itertuples(index=False)) == hashes


@pytest.mark.parametrize("sidecar, words", [
    ('{"allowed_groups": ["ops",', "invalid JSON at line 1"),
    ('{"allowed_group": ["ops"]}', "unknown key(s) ['allowed_group']"),
    ('{"allowed_groups": "ops"}', "must be a list of group names"),
    ('{"allowed_groups": ["ops", 7]}', "allowed_groups[1] is int 7"),
    ('{"allowed_groups": ["ops", "  "]}', "allowed_groups[1] is an empty group name"),
    ('["ops"]', "expected an object"),
])
def test_a_bad_sidecar_rejects_its_document_and_keeps_the_stored_version(env, sidecar, words):
    corpus, settings, lh = env
    run_ingest(lh, settings)
    (corpus / "guides" / "oncall.md").write_text("# On-call\n\nNew text that must not be stored.\n")
    (corpus / "guides" / "oncall.md.acl.json").write_text(sidecar)
    summary = run_ingest(lh, settings)
    assert summary.rejected_by_reason == {"bad_allowed_groups": 1}
    code, reason = rejections(lh)["guides/oncall.md"]
    assert code == "bad_allowed_groups" and "guides/oncall.md.acl.json" in reason and words in reason
    # Never published without its groups, never lost: the last good version stays, groups and all.
    assert groups_by_doc(lh)["guides/oncall.md"] == ["ops", "sre"]
    stored = lh.read("raw_documents").set_index("doc_id")
    assert "rotates every Monday" in stored.loc["guides/oncall.md", "text"]
    # Fixed: the rejection goes, the new version and groups land.
    (corpus / "guides" / "oncall.md.acl.json").write_text('{"allowed_groups": ["ops"]}')
    run_ingest(lh, settings)
    assert rejections(lh) == {} and groups_by_doc(lh)["guides/oncall.md"] == ["ops"]


def test_a_sidecar_without_its_document_is_rejected(env):
    corpus, settings, lh = env
    (corpus / "guides" / "oncal.md.acl.json").write_text('{"allowed_groups": ["ops"]}')  # misspelt
    summary = run_ingest(lh, settings)
    assert summary.documents == 2
    code, reason = rejections(lh)["guides/oncal.md.acl.json"]
    assert code == "orphan_sidecar" and "without its document guides/oncal.md" in reason


def test_markdown_front_matter_names_groups_and_wins_over_the_sidecar():
    doc = b"---\nallowed_groups: [finance, ' legal ']\n---\n# Budget\n\nThe budget is 4.2 million.\n"
    result = load_bytes(doc, "budget.md", max_bytes=MB, allowed_groups=["everyone-in-sidecar"])
    assert result.documents[0].metadata["allowed_groups"] == ["finance", "legal"]
    bad = load_bytes(b"---\nallowed_groups: finance\n---\n# Budget\n\ntext\n", "budget.md", max_bytes=MB)
    assert not bad.documents and bad.rejections[0].reason_code == "bad_allowed_groups"


def test_jsonl_records_carry_their_own_groups_and_a_bad_one_rejects_only_its_line():
    lines = [
        {"id": "a", "text": "public record"},
        {"id": "b", "text": "hr record", "allowed_groups": ["hr"]},
        {"id": "c", "text": "bad record", "allowed_groups": "hr"},
        {"id": "d", "text": "empty list is public", "allowed_groups": []},
        {"id": "e", "text": "nested metadata", "metadata": {"allowed_groups": ["legal"]}},
    ]
    data = "\n".join(json.dumps(r) for r in lines).encode()
    result = load_bytes(data, "kb.jsonl", max_bytes=MB, allowed_groups=["sidecar"])
    got = {d.doc_id: d.metadata.get("allowed_groups") for d in result.documents}
    # Records naming no groups take the file's sidecar; the others keep their own.
    assert got == {"kb.jsonl#a": ["sidecar"], "kb.jsonl#b": ["hr"], "kb.jsonl#d": ["sidecar"],
                   "kb.jsonl#e": ["legal"]}
    [rejection] = result.rejections
    assert rejection.source_uri == "kb.jsonl:3" and rejection.reason_code == "bad_allowed_groups"
    assert "got the string 'hr'" in rejection.reason


def test_csv_cells_hold_comma_separated_names_or_a_json_list():
    data = b'id,text,allowed_groups\n1,first,"eng, ops"\n2,second,"[""hr""]"\n3,third,\n4,fourth,"eng,,ops"\n'
    result = load_bytes(data, "docs.csv", max_bytes=MB)
    got = {d.doc_id: d.metadata.get("allowed_groups") for d in result.documents}
    assert got == {"docs.csv#1": ["eng", "ops"], "docs.csv#2": ["hr"], "docs.csv#3": None}
    assert [(r.source_uri, r.reason_code) for r in result.rejections] == [("docs.csv:5", "bad_allowed_groups")]


def test_a_delta_table_source_with_an_allowed_groups_column(tmp_path, make_settings):
    table = tmp_path / "docs_table"
    frame = pa.table({"id": ["a", "b", "c"], "title": ["A", "B", "C"], "text": ["alpha", "beta", "gamma"],
                      "allowed_groups": pa.array([["eng"], None, [""]], type=pa.list_(pa.string()))})
    write_deltalake(str(table), frame)
    settings = make_settings(source_path=f"delta:{table}")
    lh = open_lakehouse(settings)
    summary = run_ingest(lh, settings)
    assert (summary.documents, summary.rejected_by_reason) == (2, {"bad_allowed_groups": 1})
    assert groups_by_doc(lh) == {"docs_table#a": ["eng"], "docs_table#b": None}
    code, reason = rejections(lh)["docs_table[row 2]"]
    assert code == "bad_allowed_groups" and "allowed_groups[0] is an empty group name" in reason


def test_groups_from_a_parquet_file_in_a_folder(tmp_path, make_settings):
    folder = tmp_path / "src"
    folder.mkdir()
    pd.DataFrame({"id": ["x"], "text": ["restricted row"], "allowed_groups": [["legal", "legal"]]}).to_parquet(
        folder / "rows.parquet")
    settings = make_settings(source_path=str(folder))
    lh = open_lakehouse(settings)
    run_ingest(lh, settings)
    assert groups_by_doc(lh) == {"rows.parquet#x": ["legal"]}
