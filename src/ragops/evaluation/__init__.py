"""Evaluation: versioned eval sets in Delta (``eval_sets/``: schema, sources, store), metrics (one
file each under ``metrics/``, each declaring its name, kind and inputs), MLflow scorers, and the
evaluation itself split by role — ``entities`` (target, result, options record), ``coverage`` (eval
set vs index, checked first), ``harness`` (predict and score), ``results`` (MLflow run and the
``eval_results`` table), ``base`` (the public :func:`evaluate`, :func:`evaluate_model`,
:func:`rerun`) — then statistics (bootstrap intervals, paired comparisons), quality gates,
promotion and sweeps.

Metric names are canonical strings such as ``recall@5``, ``ndcg@10``, ``answer_f1`` and
``groundedness``; :func:`ragops.evaluation.metrics.mlflow_name` maps them to names MLflow accepts
(``recall_at_5``).
"""

from __future__ import annotations

import importlib
from typing import Any

#: The public names, importable from ``ragops.evaluation`` (loaded on first use: importing the
#: package stays cheap, and its submodules can import each other without a cycle through here).
_EXPORTS = {
    "evaluate": "base", "evaluate_model": "base", "rerun": "base", "load_target": "base",
    "EvalTarget": "entities", "EvaluationResult": "entities", "EvaluationError": "entities",
    "EvalSetMismatch": "coverage", "check_coverage": "coverage",
    "load_result": "results", "find_result": "results",
    "EvalSet": "eval_sets", "ensure_eval_set": "eval_sets", "read_eval_set": "eval_sets",
    "register_eval_set": "eval_sets",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'ragops.evaluation' has no attribute {name!r}")
    return getattr(importlib.import_module(f"ragops.evaluation.{_EXPORTS[name]}"), name)
