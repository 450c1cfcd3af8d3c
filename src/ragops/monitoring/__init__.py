"""Monitoring: the loop from production back into improvement.

The monitor job (``resources/monitor_job.yml``, :func:`ragops.monitoring.job.run_monitor`) reads
the rows of ``inference_log`` and ``feedback`` it has not seen yet (their change feed), folds them
into windowed, mergeable aggregates per route and model version (:mod:`.traffic`), adds query drift
(:mod:`.drift`), index freshness and pipeline health (:mod:`.health`), writes ``monitoring_metrics``,
raises and clears ``alerts`` (:mod:`.alerts`), turns down-voted and corrected answers into eval rows
pending review, and renders the dashboard (:mod:`.report`). Every metric name is declared once, in
:mod:`.catalog`.
"""
