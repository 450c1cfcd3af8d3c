"""Search an index snapshot: vector, keyword or hybrid (reciprocal rank fusion), with filters.

``groups`` is document access control: ``None`` searches every chunk (a local owner,
evaluation); a tuple of group names searches only chunks that are public or name one of those
groups (``()``: public chunks only). Like ``filters`` it is a mask applied inside the FAISS and
BM25 searches, so the top k are the best k chunks the caller may see — never fewer because
hidden chunks ranked higher (see :mod:`ragops.index.access`).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from ragops.config import SEARCH_MODES, Settings
from ragops.embedding import Embedder, embedder_identity, get_embedder
from ragops.errors import RagopsError
from ragops.index.access import AccessIndex, check_groups
from ragops.index.fusion import reciprocal_rank_fusion
from ragops.index.snapshot import Snapshot, SnapshotStore

Filters = Mapping[str, str | Sequence[str]]
FILTERABLE = ("doc_id", "source_uri", "title", "section", "chunk_id")


class SearchError(RagopsError, ValueError):
    """A search the index cannot answer as asked (a filter on an unknown field, a bad mode or k,
    a snapshot built with another embedding model)."""


@dataclass
class SearchResult:
    chunk_id: str
    doc_id: str
    source_uri: str
    title: str
    section: str
    score: float
    text: str
    rank: int
    #: cosine similarity to the query (calibrated: what "relevant" thresholds use), in every mode
    vector_score: float | None = None
    #: BM25 score when the chunk matched keywords
    keyword_score: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


class Searcher:
    """Holds one loaded snapshot and the query embedder; cheap to query many times.

    ``embedder`` may be a zero-argument callable that builds it: it is then called on the first
    query that needs a query vector, once (a keyword-only search without vector scores never loads
    the embedding model)."""

    def __init__(self, snapshot: Snapshot, embedder: Embedder | Callable[[], Embedder] | None, *, rrf_k: int = 60,
                 hybrid_weights: tuple[float, float] = (1.0, 1.0)) -> None:
        self.snapshot = snapshot
        if embedder is not None and not hasattr(embedder, "encode"):
            self._embedder, self._make_embedder = None, embedder
        else:
            self._embedder, self._make_embedder = embedder, None
        self.rrf_k = rrf_k
        self.hybrid_weights = hybrid_weights
        rows = snapshot.rows
        self._rows = rows
        self._position = pd.Series(np.arange(len(rows)), index=rows["faiss_id"].to_numpy())
        self._access = AccessIndex(rows.get("allowed_groups"))

    @classmethod
    def open(cls, settings: Settings, snapshot_id: str | None = None) -> Searcher:
        snapshot = SnapshotStore(settings.index_root).load(snapshot_id, settings.index)
        want = snapshot.manifest.model
        if want and embedder_identity(settings.embedding) != want:
            raise SearchError(
                f"index snapshot {snapshot.manifest.snapshot_id} was built with embedding model {want!r}, "
                f"but this target is configured for {embedder_identity(settings.embedding)!r}; "
                "re-run the ingest job, or set --var embedding_model / embedding_runtime / embedding_dtype to what "
                "the snapshot was built with"
            )
        embedder = get_embedder(settings.embedding) if len(snapshot.rows) else None
        return cls.for_config(snapshot, embedder, settings.index)

    @property
    def embedder(self) -> Embedder | None:
        if self._embedder is None and self._make_embedder is not None:
            self._embedder, self._make_embedder = self._make_embedder(), None
        return self._embedder

    @classmethod
    def for_config(cls, snapshot: Snapshot, embedder: Embedder | Callable[[], Embedder] | None, config) -> Searcher:
        """A searcher with the fusion settings of an :class:`IndexConfig`."""
        return cls(snapshot, embedder, rrf_k=config.rrf_k,
                   hybrid_weights=(config.hybrid_vector_weight, config.hybrid_keyword_weight))

    @property
    def manifest(self):
        return self.snapshot.manifest

    # --- filters ---------------------------------------------------------------------------
    def _mask(self, filters: Filters | None, groups: tuple[str, ...] | None = None) -> np.ndarray | None:
        """Rows a search may return (None: all): the filters' matches the caller's groups may see."""
        mask = None
        if groups is not None and not self._access.all_public:
            mask = self._access.mask(groups, self.snapshot.manifest.snapshot_id)
        if not filters:
            return mask
        mask = np.ones(len(self._rows), dtype=bool) if mask is None else mask
        for field, wanted in filters.items():
            if field not in FILTERABLE:
                raise SearchError(f"cannot filter on {field!r}; filterable fields: {', '.join(FILTERABLE)}")
            patterns = [wanted] if isinstance(wanted, str) else list(wanted)
            values = self._rows[field].fillna("").astype(str)
            mask &= values.map(lambda v, p=patterns: any(fnmatch.fnmatchcase(v, pat) for pat in p)).to_numpy()
        return mask

    # --- ranking ---------------------------------------------------------------------------
    def _vector(self, qvec: np.ndarray, n: int, mask: np.ndarray | None) -> list[tuple[int, float]]:
        allowed = self._rows["faiss_id"].to_numpy()[mask] if mask is not None else None
        if allowed is not None and not len(allowed):
            return []
        scores, ids = self.snapshot.vectors.search(qvec, n, allowed)
        return [(int(self._position[i]), float(s)) for s, i in zip(scores[0], ids[0], strict=True) if i >= 0]

    def _keyword(self, query: str, n: int, mask: np.ndarray | None) -> list[tuple[int, float]]:
        weight = mask.astype(np.float32) if mask is not None else None
        scores, positions = self.snapshot.keywords.search(query, n, weight)
        return [(int(p), float(s)) for s, p in zip(scores, positions, strict=True)]

    def search(self, query: str, k: int = 5, mode: str = "hybrid", filters: Filters | None = None, *,
               vector_scores: bool = True, groups: Sequence[str] | None = None) -> list[SearchResult]:
        return self.search_batch([query], k=k, mode=mode, filters=filters, vector_scores=vector_scores,
                                 groups=groups)[0]

    def search_batch(self, queries: list[str], k: int = 5, mode: str = "hybrid",
                     filters: Filters | None = None, *, vector_scores: bool = True,
                     groups: Sequence[str] | None = None) -> list[list[SearchResult]]:
        """``vector_scores=False`` leaves keyword-only hits without ``vector_score`` (keyword mode then
        needs no query vector, hence no embedding model). ``groups``: the caller's access groups
        (None: no access filter; see the module docstring)."""
        if mode not in SEARCH_MODES:
            raise SearchError(f"mode={mode!r} is not one of {', '.join(SEARCH_MODES)}")
        if k < 1:
            raise SearchError("k must be at least 1")
        groups = check_groups(groups)
        if not len(self._rows):
            return [[] for _ in queries]
        mask = self._mask(filters, groups)
        if mask is not None and not mask.any():
            return [[] for _ in queries]  # nothing visible: no need to embed the queries
        depth = max(k, 100) if mode == "hybrid" else k
        need_vectors = mode != "keyword" or vector_scores
        qvecs = self.embedder.encode(list(queries)) if need_vectors else None
        out = []
        for i, query in enumerate(queries):
            vec: list[tuple[int, float]] = []
            kw: list[tuple[int, float]] = []
            if mode == "vector":
                ranked = vec = self._vector(qvecs[i : i + 1], k, mask)
            elif mode == "keyword":
                ranked = kw = self._keyword(query, k, mask)
            else:
                vec = self._vector(qvecs[i : i + 1], depth, mask)
                kw = self._keyword(query, depth, mask)
                ranked = reciprocal_rank_fusion(
                    [[p for p, _ in vec], [p for p, _ in kw]], k=self.rrf_k, weights=self.hybrid_weights
                )[:k]
            cos, bm25 = dict(vec), dict(kw)
            results = []
            for rank, (pos, score) in enumerate(ranked, start=1):
                similarity = cos.get(pos)
                if similarity is None and qvecs is not None:  # a keyword-only hit: score it against the query too
                    similarity = float(self._vector_of(pos) @ qvecs[i])
                results.append(self._result(pos, score, rank, similarity, bm25.get(pos)))
            out.append(results)
        return out

    def _vector_of(self, pos: int) -> np.ndarray:
        return self.snapshot.vectors.index.reconstruct(int(self._rows["faiss_id"].iat[pos]))

    def _result(self, pos: int, score: float, rank: int, similarity: float | None = None,
                keyword: float | None = None) -> SearchResult:
        r = self._rows.iloc[pos]
        return SearchResult(
            chunk_id=r.chunk_id, doc_id=r.doc_id, source_uri=r.source_uri, title=r.title or "",
            section=r.section or "", score=round(float(score), 6), text=r.text, rank=rank,
            vector_score=None if similarity is None else round(float(similarity), 6),
            keyword_score=None if keyword is None else round(float(keyword), 6),
        )
