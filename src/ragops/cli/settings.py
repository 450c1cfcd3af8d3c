"""``ragops settings``: every setting, its bundle variable and its value for the target."""

from __future__ import annotations

import argparse
import json

from ragops.cli.common import add_common, load_settings


def cmd_settings(args: argparse.Namespace) -> int:
    from ragops.config import reference

    if args.markdown:
        print(reference.markdown(), end="")
        return 0
    rows = reference.rows(load_settings(args))
    if args.json:
        print(json.dumps(rows))
        return 0
    width = max(len(r["variable"]) for r in rows)
    for r in rows:
        changed = "" if r["value"] == r["default"] else f"   (default {r['default']})"
        print(f"{r['variable']:<{width}}  {r['value']}{changed}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("settings", help="every setting (bundle variable) with its value for the target")
    p.add_argument("--json", action="store_true", help="variable, field, type, default, value, help per setting")
    p.add_argument("--markdown", action="store_true", help="the settings reference (docs/settings.md)")
    add_common(p)
    p.set_defaults(fn=cmd_settings)
