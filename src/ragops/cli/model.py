"""``ragops model list | promote | rollback``: registered chain versions and their aliases."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

from ragops.cli.common import add_common, load_settings


def _move_alias(args: argparse.Namespace, move: Callable[[Any], Any], how: str = "") -> int:
    """Run an alias move (promote, rollback) and print the change: JSON or one line."""
    change = move(load_settings(args))
    print(json.dumps(change.to_dict()) if args.json else
          f"{change.model_name}@{change.alias} {how}→ version {change.version} (was {change.previous_version})")
    return 0


def cmd_promote(args: argparse.Namespace) -> int:
    from ragops.models.registry import promote

    return _move_alias(args, lambda settings: promote(settings, args.version, args.from_alias, args.alias))


def cmd_rollback(args: argparse.Namespace) -> int:
    from ragops.models.registry import rollback

    return _move_alias(args, lambda settings: rollback(settings, args.alias), "rolled back ")


def cmd_list(args: argparse.Namespace) -> int:
    from ragops.models.registry import versions_frame

    settings = load_settings(args)
    rows = versions_frame(settings).to_dict("records")
    if args.json:
        print(json.dumps(rows, default=str))
        return 0
    if not rows:
        print(f"no versions of {settings.registered_model_name!r} in {settings.tracking_uri}")
    for r in rows:
        aliases = ",".join("@" + a for a in r["aliases"])
        print(f"{settings.registered_model_name} v{r['version']:<4} {aliases:<24} snapshot {r['index_snapshot']}  "
              f"prompt v{r['prompt_version']}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    model = sub.add_parser("model", help="registered chain versions and aliases")
    msub = model.add_subparsers(dest="model_command", required=True)
    p = msub.add_parser("promote", help="point @champion at a version (default: the @challenger)")
    p.add_argument("--version")
    p.add_argument("--from-alias", default="challenger")
    p.add_argument("--alias", default="champion")
    p.add_argument("--json", action="store_true")
    add_common(p)
    p.set_defaults(fn=cmd_promote)
    p = msub.add_parser("list", help="versions with aliases and lineage")
    p.add_argument("--json", action="store_true")
    add_common(p)
    p.set_defaults(fn=cmd_list)
    p = msub.add_parser("rollback", help="point @champion back at the version it had before the last promotion")
    p.add_argument("--alias", default="champion")
    p.add_argument("--json", action="store_true")
    add_common(p)
    p.set_defaults(fn=cmd_rollback)
