"""Semantic similarity: embedding cosine between the answer and the closest reference."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from ragops.evaluation.metrics._metric import MetricInfo
from ragops.evaluation.metrics._text import as_references, clip01

#: texts → (n, dim) array of L2-normalised rows, e.g. ``get_embedder(EmbeddingConfig()).encode``
EmbedFn = Callable[[list[str]], np.ndarray]


def cosines(embed: EmbedFn, first: str, others: Sequence[str]) -> np.ndarray:
    """Cosine of ``first`` with each of ``others``, embedded in one batch.

    Rows are re-normalised here, so an embedder that does not normalise still gives cosines.
    """
    vectors = np.asarray(embed([first, *others]), dtype=np.float64)
    if vectors.ndim != 2 or vectors.shape[0] != len(others) + 1:
        raise ValueError(f"embed returned shape {vectors.shape} for {len(others) + 1} texts; expected "
                         "(n_texts, dim) — pass a function like Embedder.encode")
    if not np.isfinite(vectors).all():
        raise ValueError("embed returned NaN/inf values; check the embedding model")
    norms = np.linalg.norm(vectors, axis=1)
    vectors = vectors / np.maximum(norms, 1e-12)[:, None]
    return vectors[1:] @ vectors[0]


def semantic_similarity(prediction: str | None, references: Sequence[str] | None,
                        embed: EmbedFn) -> float | None:
    """Max cosine similarity between the prediction's embedding and each reference's, clipped to
    [0, 1] (negative cosines mean "unrelated" and count 0).

    Credits paraphrases that share no words with the reference; scores depend on the embedding
    model, so compare runs made with the same one. An empty prediction scores 0.0; ``None`` when
    there is no reference answer (not applicable).
    """
    refs = as_references(references)
    if not refs:
        return None
    if not prediction or not prediction.strip():
        return 0.0
    return clip01(float(np.max(cosines(embed, prediction, refs))))


METRIC = MetricInfo("semantic_similarity", "answer", "embedding cosine with the closest expected answer",
                    semantic_similarity,
                    needs=("answer", "expected_answers", "embed"), order=60)
