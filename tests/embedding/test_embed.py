"""The embed stage: only changed chunks are embedded; vectors carry model and dimension."""

from __future__ import annotations

import numpy as np

from ragops.chunking import run_chunking
from ragops.embedding.embed import run_embedding
from ragops.ingest import run_ingest
from ragops.lakehouse import open_lakehouse


def test_embed_stage_is_incremental(small_corpus, make_settings):
    settings = make_settings(source_path=str(small_corpus))
    lh = open_lakehouse(settings)
    run_ingest(lh, settings)
    run_chunking(lh, settings)
    first = run_embedding(lh, settings)
    emb = lh.read("embeddings")
    assert first.embedded == len(lh.read("chunks")) == len(emb)
    assert set(emb["model"]) == {"all-MiniLM-L6-v2"} and set(emb["dimension"]) == {384}
    assert np.allclose([np.linalg.norm(v) for v in emb["vector"]], 1.0, atol=1e-4)

    v = lh.version("embeddings")
    assert run_embedding(lh, settings).embedded == 0
    assert lh.version("embeddings") == v

    path = small_corpus / "guides" / "retention.md"
    path.write_text(path.read_text() + "\n\nA brand new closing paragraph about compaction windows.\n")
    (small_corpus / "release-notes" / "4.0.0.txt").unlink()
    run_ingest(lh, settings)
    run_chunking(lh, settings)
    second = run_embedding(lh, settings)
    n_retention = len(lh.read("chunks", where={"doc_id": ["guides/retention.md"]}))
    assert 1 <= second.embedded <= n_retention  # only the retention chunks whose text changed
    assert second.deleted >= 1
    assert "release-notes/4.0.0.txt" not in set(lh.read("embeddings")["doc_id"])
