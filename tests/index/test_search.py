"""Search over the sample corpus snapshot: modes, k, filters, and errors."""

from __future__ import annotations

import pytest

from ragops.index import Searcher, SnapshotNotFoundError


@pytest.fixture(scope="module")
def searcher(built):
    settings, _ = built
    return Searcher.open(settings)


@pytest.mark.parametrize("mode", ["vector", "keyword", "hybrid"])
def test_each_mode_finds_the_right_document(searcher, mode):
    results = searcher.search("What is the default retention period for raw samples?", k=5, mode=mode)
    assert len(results) == 5
    assert "guides/retention.md" in [r.doc_id for r in results[:3]]
    assert [r.rank for r in results] == [1, 2, 3, 4, 5]
    assert results[0].score >= results[-1].score


def test_results_carry_source_and_text(searcher):
    r = searcher.search("collector grpc port", k=1)[0]
    assert r.chunk_id.startswith(r.doc_id + "::")
    assert r.source_uri and r.text and r.title


def test_filters_restrict_results(searcher):
    results = searcher.search("port", k=5, mode="hybrid", filters={"source_uri": "reference/*"})
    assert results and all(r.source_uri.startswith("reference/") for r in results)
    results = searcher.search("port", k=5, mode="keyword", filters={"doc_id": ["guides/retention.md"]})
    assert {r.doc_id for r in results} <= {"guides/retention.md"}
    assert searcher.search("port", k=5, filters={"doc_id": "nothing-matches"}) == []


def test_batch_search_matches_single_queries(searcher):
    queries = ["retention period", "collector port"]
    batch = searcher.search_batch(queries, k=3, mode="vector")
    assert [[r.chunk_id for r in rs] for rs in batch] == [
        [r.chunk_id for r in searcher.search(q, k=3, mode="vector")] for q in queries
    ]


def test_bad_arguments_are_explained(searcher):
    with pytest.raises(ValueError, match="mode='fuzzy' is not one of"):
        searcher.search("x", mode="fuzzy")
    with pytest.raises(ValueError, match="cannot filter on 'owner'"):
        searcher.search("x", filters={"owner": "me"})
    assert searcher.search("qwertyuiop zxcvbnm", k=3, mode="keyword") == []


def test_no_snapshot_yet(make_settings):
    with pytest.raises(SnapshotNotFoundError, match="run `ragops bundle run ingest_job` first"):
        Searcher.open(make_settings())
