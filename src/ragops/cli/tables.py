"""``ragops tables``: the lakehouse tables with their Delta versions and row counts."""

from __future__ import annotations

import argparse
import json

from ragops.cli.common import add_common, load_settings


def cmd_tables(args: argparse.Namespace) -> int:
    from ragops.lakehouse import describe_tables, open_lakehouse

    settings = load_settings(args)
    with open_lakehouse(settings) as lh:
        frame = describe_tables(lh)
    rows = frame.astype(object).where(frame.notna(), None).to_dict("records")
    if args.json:
        print(json.dumps(rows))
        return 0
    for r in rows:
        v = "-" if r["version"] is None else f"v{r['version']}"
        print(f"{r['table']:<20} {v:>6} {r['rows']:>8} rows  {r['location']}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tables", help="lakehouse tables with versions and row counts")
    p.add_argument("--json", action="store_true")
    add_common(p)
    p.set_defaults(fn=cmd_tables)
