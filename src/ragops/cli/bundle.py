"""``ragops bundle validate | summary | run``: Databricks Asset Bundle jobs, locally."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ragops.cli.common import add_common, pairs


def cmd_validate(args: argparse.Namespace) -> int:
    from ragops.bundle import validate

    bundle, issues = validate(None, args.target, pairs(args.var, "--var"))
    if issues:
        print(f"bundle is NOT valid ({len(issues)} problem{'s' * (len(issues) != 1)}):", file=sys.stderr)
        for issue in issues:
            print(f"  {issue}", file=sys.stderr)
        return 1
    assert bundle is not None
    jobs = ", ".join(f"{name} ({len(job['tasks'])} tasks)" for name, job in bundle.jobs.items())
    print(f"bundle {bundle.name!r} is valid for target {bundle.target!r}: {jobs}")
    return 0


def cmd_summary(args: argparse.Namespace) -> int:
    from ragops.bundle import load_bundle

    bundle = load_bundle(None, args.target, pairs(args.var, "--var"))
    if args.json:
        print(json.dumps({"name": bundle.name, "target": bundle.target, "targets": bundle.targets,
                          "variables": bundle.variables, "jobs": {k: [t["task_key"] for t in v["tasks"]]
                                                                  for k, v in bundle.jobs.items()}}, indent=2))
        return 0
    print(f"bundle {bundle.name} — target {bundle.target} (targets: {', '.join(bundle.targets)})")
    for name, job in bundle.jobs.items():
        chain = " → ".join(t["task_key"] for t in job["tasks"])
        print(f"  job {name}: {chain}")
    for k, v in sorted(bundle.variables.items()):
        print(f"  var {k} = {v}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from ragops.bundle import load_bundle, run_job
    from ragops.bundle.runner import state_root

    console = Console(stderr=True)
    bundle = load_bundle(None, args.target, pairs(args.var, "--var"))
    params = pairs(args.param, "--param")
    runs_dir = state_root(bundle, params) / "runs"

    def on_task(tr) -> None:
        mark = {"succeeded": "[green]✓[/]", "failed": "[red]✗[/]", "skipped": "[yellow]-[/]",
                "excluded": "[dim]○[/]"}[tr.status]
        console.print(f"{mark} {args.job}.{tr.task_key} {tr.status} in {tr.seconds:.1f}s")

    console.print(f"[bold]running {args.job}[/] on target [bold]{bundle.target}[/] "
                  f"(engine {bundle.variables.get('engine')})")
    run = run_job(bundle, args.job, params, runs_dir=runs_dir, on_task=on_task)

    table = Table(title=f"{run.job} run {run.run_id} — {'succeeded' if run.ok else 'FAILED'} in {run.seconds:.1f}s")
    for col in ("task", "status", "seconds", "summary"):
        table.add_column(col)
    for t in run.tasks:
        summary = t.error if t.status != "succeeded" else _short_summary(t.summary)
        table.add_row(t.task_key, t.status, f"{t.seconds:.1f}", summary)
    console.print(table)
    if args.json:
        print(json.dumps(run.to_dict(), default=str))
    if not run.ok:
        failed = ", ".join(t.task_key for t in run.failed) or "?"
        console.print(f"[red]job {run.job} failed at task(s): {failed}[/]")
        return 1
    console.print(f"state in {runs_dir.parent}; next: [bold]ragops search \"your question\"[/]")
    return 0


def _short_summary(summary: Any) -> str:
    if not isinstance(summary, dict):
        return ""
    keys = ("documents", "new", "updated", "deleted", "rejected", "chunks_written", "embedded", "mode",
            "added", "total", "snapshot_id", "version", "outcome", "job", "run_id")
    return ", ".join(f"{k}={summary[k]}" for k in keys if k in summary and summary[k] not in (None, ""))


def register(sub: argparse._SubParsersAction) -> None:
    bundle = sub.add_parser("bundle", help="validate and run Databricks Asset Bundle jobs locally")
    bsub = bundle.add_subparsers(dest="bundle_command", required=True)
    p = bsub.add_parser("validate", help="check databricks.yml, resources/ and bundles/")
    add_common(p)
    p.set_defaults(fn=cmd_validate)
    p = bsub.add_parser("summary", help="targets, jobs and resolved variables")
    add_common(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=cmd_summary)
    p = bsub.add_parser("run", help="run a job's tasks locally in dependency order")
    p.add_argument("job")
    add_common(p)
    p.add_argument("--param", action="append", metavar="NAME=VALUE", help="override a job parameter")
    p.add_argument("--json", action="store_true", help="also print the run record as JSON on stdout")
    p.set_defaults(fn=cmd_run)
