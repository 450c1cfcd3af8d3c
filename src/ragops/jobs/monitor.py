"""Task ``monitor``: fold new inference-log rows and feedback into ``monitoring_metrics``, raise and
clear alerts, send rejected answers back to evaluation, render the dashboard. Exits non-zero while a
``page``-tier alert fires (the run is "failed", so the job's own failure notification pages too)."""

from __future__ import annotations

from collections.abc import Sequence

from ragops.jobs.common import TaskFailed, run_task


def monitor(lh, settings):
    from ragops.monitoring.job import run_monitor

    run = run_monitor(lh, settings)
    text = run.format()
    if run.paging:
        names = ", ".join(f"{a.get('rule')}{' on ' + a['route'] if a.get('route') else ''}" for a in run.paging)
        message = f"{len(run.paging)} page alert(s) firing: {names}"
        raise TaskFailed(message, f"{text}\n{message}", run)  # the last line is what the run record shows
    print(text)
    return run


def main(argv: Sequence[str] | None = None) -> int:
    return run_task("monitor", monitor, argv)
