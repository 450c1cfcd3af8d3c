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
from ragops.errors import RagopsError
from ragops.lakehouse import open_lakehouse
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


class TaskFailed(RagopsError, RuntimeError):
    """A stage ran to the end but its verdict is "failed" (a quality gate, say): the task prints
    ``report`` on stderr and ``summary`` as its JSON line, and exits 1 — no traceback."""

    def __init__(self, message: str, report: str, summary: Any) -> None:
        super().__init__(message)
        self.report = report
        self.summary = summary


def _payload(summary: Any) -> Any:
    return summary.to_dict() if hasattr(summary, "to_dict") else summary


def run_task(name: str, stage: Callable[..., Any], argv: Sequence[str] | None = None,
             *, needs_lakehouse: bool = True, with_params: bool = False) -> int:
    """``stage(lh, settings)`` — or ``stage(lh, settings, params)`` with ``with_params`` for tasks
    that read parameters beyond the settings (a sweep grid); ``lh`` is None without ``needs_lakehouse``.

    A :class:`RagopsError` (from the stage, the settings or the lakehouse) exits 1 with
    ``task: message`` on stderr (``SystemExit``); anything else is a bug and keeps its traceback."""
    setup_logging()
    params = parse_named_parameters(sys.argv[1:] if argv is None else argv)
    extra = (params,) if with_params else ()
    started = time.perf_counter()
    try:
        settings = Settings.from_variables(params)
        if needs_lakehouse:
            with open_lakehouse(settings) as lh:
                summary = stage(lh, settings, *extra)
        else:  # e.g. logging a model from an index snapshot: no tables are touched
            summary = stage(None, settings, *extra)
    except TaskFailed as exc:
        print(exc.report, file=sys.stderr)
        print(json.dumps({"task": name, "summary": _payload(exc.summary)}, default=str))
        log.error("%s failed: %s", name, exc)
        return 1
    except RagopsError as exc:  # ours: what failed and what to do, no traceback (a bug still has one)
        log.debug("%s failed", name, exc_info=True)
        # SystemExit(message): the process prints it on stderr and exits 1; the local bundle runner,
        # which calls entry points in-process, records the same message as the task's error.
        raise SystemExit(f"{name}: {exc}") from exc
    log.info("%s finished in %.1fs", name, time.perf_counter() - started)
    print(json.dumps({"task": name, "summary": _payload(summary)}, default=str))
    return 0
