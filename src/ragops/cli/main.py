"""``ragops`` — run bundle jobs locally and query what they built.

Every command takes ``--target T`` and ``--var NAME=VALUE`` (repeatable), resolved exactly as
``ragops bundle run`` resolves them, so ``--var root=DIR`` points any command at another local
lakehouse. Each command group is one module of this package that registers its own parser
(``register(subparsers)``) next to its commands; this module only assembles them and turns a
:class:`~ragops.errors.RagopsError` into one line on stderr and exit code 2 (a traceback only with
``--log-level DEBUG``). Any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback

from ragops.cli import bundle, eval_set, gateway, guardrails, index, model, monitor, serve, settings, tables
from ragops.cli import eval as evaluation  # (the module is cli/eval.py; this name keeps the builtin)
from ragops.cli.common import CliError
from ragops.errors import RagopsError
from ragops.logs import setup_logging

log = logging.getLogger("ragops.cli")

#: The command groups, in the order ``ragops --help`` lists them.
GROUPS = (bundle, settings, index, serve, gateway, guardrails, model, evaluation, eval_set, monitor, tables)

__all__ = ["CliError", "build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ragops", description=__doc__.split("\n")[0].replace("``", ""))
    sub = parser.add_subparsers(dest="command", required=True)
    for group in GROUPS:
        group.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    quiet = getattr(args, "json", False) or getattr(args, "quiet", False)
    level = (args.log_level or ("WARNING" if quiet else os.environ.get("RAGOPS_LOG_LEVEL", "INFO"))).upper()
    setup_logging(level)
    try:
        return int(args.fn(args) or 0)
    except RagopsError as exc:
        if level == "DEBUG":
            traceback.print_exc(file=sys.stderr)
        print(f"ragops: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `ragops settings | head`: the reader left; not an error
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
