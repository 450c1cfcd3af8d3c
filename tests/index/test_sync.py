"""Index sync: incremental from the change feed, hash-diff fallback, crash safety, pruning."""

from __future__ import annotations

import pytest

from ragops.chunking import run_chunking
from ragops.embedding.embed import run_embedding
from ragops.index import Searcher, SnapshotStore, run_index_sync
from ragops.index.sync import FAILURE_ENV, InjectedFailure
from ragops.ingest import run_ingest
from ragops.lakehouse import ChangeFeedUnavailable, open_lakehouse
from tests.conftest import run_pipeline


def upstream(lh, settings):
    run_ingest(lh, settings)
    run_chunking(lh, settings)
    run_embedding(lh, settings)


@pytest.fixture
def env(small_corpus, make_settings):
    settings = make_settings(source_path=str(small_corpus))
    run_pipeline(settings)
    return small_corpus, settings, open_lakehouse(settings)


def doc_ids(settings, query, mode="keyword", k=10):
    return {r.doc_id for r in Searcher.open(settings).search(query, k=k, mode=mode)}


def test_first_sync_is_full_and_records_lineage(env):
    _, settings, lh = env
    manifest = SnapshotStore(settings.index_root).manifest()
    assert manifest.sync_mode == "full"
    assert manifest.source_version == lh.version("embeddings")
    assert manifest.source_table == lh.location("embeddings")
    assert manifest.counts["chunks"] == len(lh.read("embeddings"))
    assert (manifest.model, manifest.dimension) == ("all-MiniLM-L6-v2", 384)
    assert manifest.config_hash and manifest.ragops_version


def test_nothing_changed_means_no_new_snapshot(env):
    _, settings, lh = env
    before = SnapshotStore(settings.index_root).current_id()
    summary = run_index_sync(lh, settings)
    assert summary.mode == "up_to_date" and summary.snapshot_id == before
    assert len(SnapshotStore(settings.index_root).list()) == 1


def test_changes_flow_through_the_change_feed(env):
    corpus, settings, lh = env
    (corpus / "guides" / "zebra.md").write_text("# Zebra mode\n\nZebra mode stripes shards across racks.\n")
    (corpus / "release-notes" / "4.0.0.txt").unlink()
    upstream(lh, settings)
    summary = run_index_sync(lh, settings)
    assert summary.mode == "change_feed"
    assert summary.added >= 1 and summary.deleted >= 1
    assert summary.total == len(lh.read("embeddings"))
    assert "guides/zebra.md" in doc_ids(settings, "zebra stripes shards")
    assert "release-notes/4.0.0.txt" not in {
        r.doc_id for r in Searcher.open(settings).search("release notes 4.0.0", k=50, mode="keyword")
    }


def test_engine_without_change_feed_falls_back_to_hash_diff(env, monkeypatch, caplog):
    corpus, settings, lh = env
    (corpus / "guides" / "zebra.md").write_text("# Zebra mode\n\nZebra mode stripes shards across racks.\n")
    upstream(lh, settings)

    def no_cdf(*args, **kwargs):
        raise ChangeFeedUnavailable("this engine has no change data feed")

    monkeypatch.setattr(lh, "changes", no_cdf)
    summary = run_index_sync(lh, settings)
    assert summary.mode == "hash_diff" and summary.added >= 1
    assert "falling back to a content-hash diff" in caplog.text
    assert "guides/zebra.md" in doc_ids(settings, "zebra stripes shards")


@pytest.mark.parametrize("point", ["index_sync:before_publish", "index_sync:before_switch"])
def test_a_crash_mid_sync_leaves_the_previous_snapshot_serving(env, monkeypatch, point):
    corpus, settings, lh = env
    store = SnapshotStore(settings.index_root)
    before = store.current_id()
    (corpus / "guides" / "zebra.md").write_text("# Zebra mode\n\nZebra mode stripes shards across racks.\n")
    upstream(lh, settings)
    monkeypatch.setenv(FAILURE_ENV, point)
    with pytest.raises(InjectedFailure):
        run_index_sync(lh, settings)
    assert store.current_id() == before
    assert "guides/zebra.md" not in doc_ids(settings, "zebra stripes shards")  # old snapshot still answers
    assert doc_ids(settings, "retention")

    monkeypatch.delenv(FAILURE_ENV)
    summary = run_index_sync(lh, settings)  # converges
    assert summary.mode == "change_feed" and store.current_id() != before
    assert "guides/zebra.md" in doc_ids(settings, "zebra stripes shards")
    assert not [p for p in store.snapshots.iterdir() if p.name.startswith(".tmp-")]


def test_config_change_forces_a_full_rebuild(env, make_settings):
    corpus, settings, lh = env
    hnsw = make_settings(source_path=str(corpus), vector_index="hnsw")
    summary = run_index_sync(lh, hnsw)
    assert summary.mode == "full"
    assert SnapshotStore(settings.index_root).manifest().index_config["vector_index"] == "hnsw"
    assert Searcher.open(hnsw).search("retention period", k=3, mode="vector")


def test_old_snapshots_are_pruned(env):
    corpus, settings, lh = env
    for i in range(settings.index.keep_snapshots + 2):
        (corpus / f"extra-{i}.md").write_text(f"# Extra {i}\n\nExtra document number {i}.\n")
        upstream(lh, settings)
        run_index_sync(lh, settings)
    store = SnapshotStore(settings.index_root)
    ids = [m.snapshot_id for m in store.list()]
    assert len(ids) <= settings.index.keep_snapshots + 1
    assert store.current_id() in ids
