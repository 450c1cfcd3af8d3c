"""``ragops monitor report``: render the monitoring dashboard to one self-contained HTML file.

    ragops monitor report                          # <root>/reports/monitor/monitor.html
    ragops monitor report --out site/ --var root=/tmp/demo
    ragops monitor report --no-projection          # skip embedding recent queries (no model load)

It reads what ``ragops bundle run monitor_job`` wrote (``monitoring_metrics``, ``alerts``,
``monitoring_runs``) plus ``embeddings`` and ``inference_log`` for the 2-D projection, and prints the
file's path. The gateway serves the same page at ``/monitor``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ragops.cli.common import CliError, add_common, load_settings


def cmd_report(args: argparse.Namespace) -> int:
    from ragops.lakehouse import open_lakehouse
    from ragops.monitoring.report import build_report, render_html, save_html

    if args.max_windows < 1:
        raise CliError(f"--max-windows {args.max_windows}: give 1 or more")
    settings = load_settings(args)
    out = Path(args.out) if args.out else Path(settings.root) / "reports" / "monitor"
    with open_lakehouse(settings) as lh:
        data = build_report(lh, settings, max_windows=args.max_windows, project_queries=not args.no_projection)
    page = render_html(data)
    path = save_html(page, out)
    what = ("no monitoring data yet: run `ragops bundle run monitor_job` first" if data.empty else
            f"{data.metrics['window_start'].nunique()} windows, {len(data.alerts)} alerts")
    print(f"{path} ({len(page.encode('utf-8')) / 1024:.0f} KB; {what})")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("monitor", help="the monitoring dashboard (metrics, drift, freshness, alerts)")
    msub = p.add_subparsers(dest="monitor_command", required=True)
    r = msub.add_parser("report", help="render the dashboard to one self-contained HTML file")
    r.add_argument("--out", help="folder to write monitor.html into (default: <root>/reports/monitor/)")
    r.add_argument("--max-windows", type=int, default=48, help="most recent metric windows plotted (default 48)")
    r.add_argument("--no-projection", action="store_true",
                   help="skip the 2-D projection of corpus and query embeddings (no embedding model load)")
    add_common(r)
    r.set_defaults(fn=cmd_report)
