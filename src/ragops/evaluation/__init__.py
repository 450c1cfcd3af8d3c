"""Evaluation: versioned eval sets in Delta, metrics (one file each under ``metrics/``), MLflow
scorers, statistics (bootstrap intervals, paired comparisons), quality gates and promotion.

Metric names are canonical strings such as ``recall@5``, ``ndcg@10``, ``answer_f1`` and
``groundedness``; :func:`ragops.evaluation.metrics.mlflow_name` maps them to names MLflow accepts
(``recall_at_5``).
"""
