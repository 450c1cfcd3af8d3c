"""What an evaluation is about and what it returns: the target, the result, and the options record.

The options an evaluation runs with are the target's :class:`ragops.config.EvaluationConfig`
(overridden with :func:`dataclasses.replace`). :func:`options_record` is the part of it that
changes the numbers; its hash is a tag of every evaluation run, so a stored result is reused only
for the same options, and :func:`options_from_record` turns a run's record back into a config for
:func:`ragops.evaluation.base.rerun`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import pandas as pd

from ragops.config import EvaluationConfig, config_hash
from ragops.errors import RagopsError
from ragops.evaluation.stats import MetricSummary

#: Prefix of the MLflow tags an evaluation run carries (``ragops.eval.eval_set`` …).
TAG = "ragops.eval."
#: Bootstrap resamples behind every metric's 95% interval.
N_BOOT = 1000


class EvaluationError(RagopsError, RuntimeError):
    """An evaluation cannot run or its stored result cannot be read; the message says what to do."""


def options_record(cfg: EvaluationConfig) -> dict[str, Any]:
    """What an evaluation computes, as logged in the run's ``eval_options`` param.

    Same keys and values as the record runs have always carried (so their hashes still match):
    ``limit`` 0 ("all") is ``None``; ``judge`` is the judge's LLM config or ``None``.
    """
    from dataclasses import asdict

    judge = cfg.judge()
    return {"ks": list(cfg.ks), "ndcg_k": cfg.ndcg_k, "answers": cfg.answers,
            "judge": asdict(judge) if judge is not None else None, "harness": cfg.harness,
            "n_boot": N_BOOT, "limit": cfg.limit or None}


def options_hash(cfg: EvaluationConfig) -> str:
    """Hash of what changes the numbers (not the harness, which only changes speed)."""
    record = options_record(cfg)
    record.pop("harness")
    return config_hash(record)


def options_from_record(record: Mapping[str, Any], base: EvaluationConfig | None = None) -> EvaluationConfig:
    """The config a past run's ``eval_options`` record describes (``base`` supplies the rest)."""
    judge = record.get("judge") or {}
    return replace(base or EvaluationConfig(), ks=tuple(record.get("ks") or (5, 10)),
                   ndcg_k=int(record.get("ndcg_k", 10)), answers=bool(record.get("answers", True)),
                   harness=record.get("harness") or "mlflow", limit=int(record.get("limit") or 0),
                   judge_backend=judge.get("backend", ""), judge_model=judge.get("model", ""),
                   judge_endpoint=judge.get("endpoint", ""))


@dataclass
class EvalTarget:
    """A chain to evaluate, with where it came from."""

    chain: Any  # ragops.chain.RagChain
    model_uri: str | None = None
    model_version: str | None = None

    @property
    def lineage(self) -> dict[str, Any]:
        return dict(self.chain.lineage)


@dataclass
class EvaluationResult:
    run_id: str
    eval_set: str
    eval_set_version: int
    eval_sets_table_version: int | None
    model_uri: str | None
    model_version: str | None
    lineage: dict[str, Any]
    options: EvaluationConfig
    summaries: dict[str, MetricSummary]
    per_question: pd.DataFrame  # question_id, question, answer, retrieved_doc_ids, <metric>..., failures
    seconds: dict[str, float] = field(default_factory=dict)
    reused: bool = False

    def metrics(self) -> dict[str, float | None]:
        return {name: s.mean for name, s in self.summaries.items()}

    def scores(self, metric: str) -> dict[str, float | None]:
        """Per-question values of one metric (question_id → value; None = n/a or failed)."""
        if metric not in self.per_question.columns:
            return {}
        col = self.per_question[metric]
        return {q: (None if pd.isna(v) else float(v)) for q, v in zip(self.per_question["question_id"], col,
                                                                          strict=True)}

    def to_dict(self) -> dict[str, Any]:
        """Flat JSON: metric names as keys, then the run id, lineage and interval details."""
        out: dict[str, Any] = {name: (None if v is None else round(v, 4)) for name, v in self.metrics().items()}
        out.update({
            "run_id": self.run_id,
            "model_uri": self.model_uri,
            "model_version": self.model_version,
            "eval_set": self.eval_set,
            "eval_set_version": self.eval_set_version,
            "eval_sets_table_version": self.eval_sets_table_version,
            "questions": int(len(self.per_question)),
            "confidence_intervals": {n: [s.ci_low, s.ci_high] for n, s in self.summaries.items()},
            "failures": {n: s.n_failed for n, s in self.summaries.items() if s.n_failed},
            "lineage": self.lineage,
            "seconds": self.seconds,
            "reused": self.reused,
        })
        return out

    def summary_frame(self) -> pd.DataFrame:
        rows = [{"metric": n, **{k: v for k, v in s.to_dict().items() if k != "name"}}
                for n, s in self.summaries.items()]
        return pd.DataFrame(rows)
