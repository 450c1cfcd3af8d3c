import numpy as np
import pytest

from ragops.config import IndexConfig
from ragops.index.keyword import KeywordIndex
from ragops.index.vector import VectorIndex, faiss_id, faiss_ids


def unit(rows):
    rng = np.random.default_rng(0)
    v = rng.normal(size=(rows, 16)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_vector_index_add_search_remove(kind, tmp_path):
    vecs = unit(50)
    ids = faiss_ids([f"c{i}" for i in range(50)])
    index = VectorIndex(16, IndexConfig(vector_index=kind))
    index.add(ids, vecs)
    scores, found = index.search(vecs[7], 3)
    assert found[0][0] == ids[7] and scores[0][0] == pytest.approx(1.0, abs=1e-5)
    assert index.remove(ids[:10]) == 10
    assert len(index) == 40
    _, found = index.search(vecs[3], 5)
    assert ids[3] not in found[0]
    _, found = index.search(vecs[20], 3, allowed=ids[30:35])
    assert set(found[0]) <= set(ids[30:35])
    index.save(tmp_path / "v.faiss")
    again = VectorIndex.load(tmp_path / "v.faiss", IndexConfig(vector_index=kind))
    assert len(again) == 40
    assert np.array_equal(np.sort(again.ids()), np.sort(ids[10:]))


def test_faiss_ids_are_stable_and_positive():
    assert faiss_id("doc.md::abc::0001") == faiss_id("doc.md::abc::0001") > 0
    assert faiss_id("a") != faiss_id("b")


def test_dimension_mismatch_is_reported():
    with pytest.raises(ValueError, match="dimension 8"):
        VectorIndex(16, IndexConfig()).add(np.array([1]), np.ones((1, 8), np.float32))


def test_bm25_stems_and_ignores_stop_words(tmp_path):
    texts = ["Backups are running nightly", "The collector listens on a port", "Retention policies delete data"]
    index = KeywordIndex.build(texts, IndexConfig())
    scores, pos = index.search("backup run", 3)
    assert pos[0] == 0 and len(pos) == 1  # stemming matched backups/running; zero scores dropped
    assert len(index.search("the a on", 3)[1]) == 0  # only stop words
    assert len(index.search("zebra", 3)[1]) == 0  # unknown term
    _, pos = index.search("data port", 3, mask=np.array([0, 0, 1], np.float32))
    assert list(pos) == [2]
    index.save(tmp_path / "bm25")
    assert list(KeywordIndex.load(tmp_path / "bm25", IndexConfig(), 3).search("collector", 1)[1]) == [1]
