"""BM25 keyword index (bm25s: sparse-matrix BM25, English stop words + Snowball stemming).

bm25s has no in-place updates, so each sync rebuilds the keyword index from the snapshot's
texts; tokenizing and indexing SciFact's 5k abstracts takes about a second, far below the
cost of embedding even 1% of them.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import bm25s
import numpy as np

from ragops.config import IndexConfig

log = logging.getLogger(__name__)


@functools.lru_cache(maxsize=2)
def _stemmer(language: str):
    if not language:
        return None
    import Stemmer

    return Stemmer.Stemmer(language)


class KeywordIndex:
    def __init__(self, config: IndexConfig, retriever: bm25s.BM25 | None = None, size: int = 0) -> None:
        self.config = config
        self.retriever = retriever
        self.size = size

    def _tokenize(self, texts: list[str], return_ids: bool):
        return bm25s.tokenize(
            texts, stopwords="en", stemmer=_stemmer(self.config.stemmer), return_ids=return_ids, show_progress=False
        )

    @classmethod
    def build(cls, texts: list[str], config: IndexConfig) -> KeywordIndex:
        index = cls(config, size=len(texts))
        if texts:
            retriever = bm25s.BM25(k1=config.bm25_k1, b=config.bm25_b)
            retriever.index(index._tokenize(texts, return_ids=True), show_progress=False)
            index.retriever = retriever
        return index

    def search(self, query: str, k: int, mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, positions) for one query; positions index the snapshot's rows.
        ``mask`` (0/1 per row) restricts results (metadata filter). Zero-score rows are dropped."""
        if self.retriever is None or self.size == 0:
            return np.zeros(0, np.float32), np.zeros(0, np.int64)
        tokens = self._tokenize([query], return_ids=False)[0]
        tokens = [t for t in tokens if t in self.retriever.vocab_dict]
        if not tokens:
            return np.zeros(0, np.float32), np.zeros(0, np.int64)
        k = min(k, self.size)
        docs, scores = self.retriever.retrieve(
            [tokens], k=k, show_progress=False, weight_mask=mask, n_threads=1
        )
        docs, scores = docs[0].astype(np.int64), scores[0].astype(np.float32)
        keep = scores > 0
        return scores[keep], docs[keep]

    def save(self, path: Path) -> None:
        if self.retriever is not None:
            self.retriever.save(str(path))

    @classmethod
    def load(cls, path: Path, config: IndexConfig, size: int) -> KeywordIndex:
        if size == 0 or not path.exists():
            return cls(config, None, 0)
        return cls(config, bm25s.BM25.load(str(path)), size)
