"""FAISS vector index with stable int64 ids derived from chunk ids, and deletes.

``flat`` (exact inner product on normalised vectors = cosine) is the default; ``hnsw`` trades a
little recall for sub-linear search on large corpora. FAISS HNSW cannot delete in place, so
deletes on an HNSW index rebuild it from its own stored vectors.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from pathlib import Path

import faiss
import numpy as np

from ragops.config import IndexConfig, SettingsError


def faiss_id(chunk_id: str) -> int:
    """Deterministic 63-bit id: no id-allocation state to keep in sync."""
    return int.from_bytes(hashlib.blake2b(chunk_id.encode(), digest_size=8).digest(), "big") & 0x7FFF_FFFF_FFFF_FFFF


def faiss_ids(chunk_ids: Iterable[str]) -> np.ndarray:
    return np.fromiter((faiss_id(c) for c in chunk_ids), dtype=np.int64)


class VectorIndex:
    def __init__(self, dimension: int, config: IndexConfig, index: faiss.Index | None = None) -> None:
        self.dimension = dimension
        self.config = config
        self.index = index if index is not None else self._new()

    def _new(self) -> faiss.Index:
        if self.config.vector_index == "hnsw":
            inner = faiss.IndexHNSWFlat(self.dimension, self.config.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            inner.hnsw.efSearch = self.config.hnsw_ef_search
        elif self.config.vector_index == "flat":
            inner = faiss.IndexFlatIP(self.dimension)
        else:
            raise SettingsError(f"vector_index={self.config.vector_index!r}: use flat or hnsw")
        return faiss.IndexIDMap2(inner)

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def ids(self) -> np.ndarray:
        return faiss.vector_to_array(self.index.id_map).astype(np.int64)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if len(ids):
            vectors = np.ascontiguousarray(vectors, dtype=np.float32)
            if vectors.shape[1] != self.dimension:
                raise ValueError(f"vectors have dimension {vectors.shape[1]}, the index has {self.dimension}")
            self.index.add_with_ids(vectors, np.asarray(ids, dtype=np.int64))

    def remove(self, ids: Sequence[int] | np.ndarray) -> int:
        ids = np.asarray(ids, dtype=np.int64)
        if not len(ids) or not len(self):
            return 0
        if self.config.vector_index == "flat":
            return int(self.index.remove_ids(faiss.IDSelectorBatch(ids)))
        # HNSW: rebuild from the stored vectors minus the removed ids.
        current = self.ids()
        keep = ~np.isin(current, ids)
        vectors = self.index.index.reconstruct_n(0, len(current))
        removed = int((~keep).sum())
        self.index = self._new()
        self.add(current[keep], vectors[keep])
        return removed

    def search(self, query: np.ndarray, k: int, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, ids) for each query row; ``allowed`` restricts to those ids (metadata filter)."""
        query = np.ascontiguousarray(np.atleast_2d(query), dtype=np.float32)
        k = min(k, len(self))
        if k <= 0:
            return np.zeros((len(query), 0), np.float32), np.zeros((len(query), 0), np.int64)
        params = selector = None
        if allowed is not None:
            # SWIG does not keep the selector alive through the params object: hold it here.
            selector = faiss.IDSelectorBatch(np.asarray(allowed, dtype=np.int64))
            if self.config.vector_index == "hnsw":
                params = faiss.SearchParametersHNSW(sel=selector, efSearch=max(self.config.hnsw_ef_search, k))
            else:
                params = faiss.SearchParameters(sel=selector)
        scores, ids = self.index.search(query, k, params=params)
        del selector
        if allowed is not None and self.config.vector_index == "hnsw":
            want = min(k, len(allowed))
            if (ids >= 0).sum(axis=1).min() < want:
                # A selective filter (access groups, say) can cut HNSW's graph walk off before it
                # finds k allowed vectors; the allowed set is then small, so score it exactly.
                allowed = np.asarray(allowed, dtype=np.int64)
                return self._exact(query, want, allowed[np.isin(allowed, self.ids())])
        return scores, ids

    def _exact(self, query: np.ndarray, k: int, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        k = min(k, len(ids))
        if k == 0:
            return np.zeros((len(query), 0), np.float32), np.zeros((len(query), 0), np.int64)
        vectors = np.stack([self.index.reconstruct(int(i)) for i in ids])
        sims = query @ vectors.T
        top = np.argsort(-sims, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(sims, top, axis=1).astype(np.float32), ids[top]

    def save(self, path: Path) -> None:
        faiss.write_index(self.index, str(path))

    @classmethod
    def load(cls, path: Path, config: IndexConfig, mmap: bool = False) -> VectorIndex:
        flags = faiss.IO_FLAG_MMAP if mmap else 0
        index = faiss.read_index(str(path), flags)
        if config.vector_index == "hnsw":
            faiss.downcast_index(index.index).hnsw.efSearch = config.hnsw_ef_search
        return cls(index.d, config, index)
