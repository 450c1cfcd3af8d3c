"""What every task entry point does: parse named parameters, build settings, open the lakehouse,
run one stage, print a JSON summary line."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from ragops.config import Settings
from ragops.lakehouse import Lakehouse, open_lakehouse
from ragops.logs import setup_logging

log = logging.getLogger("ragops.jobs")


def parse_named_parameters(argv: Sequence[str]) -> dict[str, str]:
    """``--key=value`` / ``--key value`` pairs, as Databricks passes ``named_parameters``."""
    params: dict[str, str] = {}
    args = list(argv)
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--"):
            raise SystemExit(f"unexpected argument {arg!r}: task parameters look like --name=value")
        key, eq, value = arg[2:].partition("=")
        if not eq:
            if i + 1 >= len(args) or args[i + 1].startswith("--"):
                raise SystemExit(f"parameter --{key} has no value")
            value = args[i + 1]
            i += 1
        params[key.replace("-", "_")] = value
        i += 1
    return params


def run_task(name: str, stage: Callable[[Lakehouse | None, Settings], Any], argv: Sequence[str] | None = None,
             *, needs_lakehouse: bool = True) -> int:
    setup_logging()
    params = parse_named_parameters(sys.argv[1:] if argv is None else argv)
    settings = Settings.from_variables(params)
    started = time.perf_counter()
    if needs_lakehouse:
        with open_lakehouse(settings) as lh:
            summary = stage(lh, settings)
    else:  # e.g. logging a model from an index snapshot: no tables are touched
        summary = stage(None, settings)
    payload = summary.to_dict() if hasattr(summary, "to_dict") else summary
    log.info("%s finished in %.1fs", name, time.perf_counter() - started)
    print(json.dumps({"task": name, "summary": payload}, default=str))
    return 0
