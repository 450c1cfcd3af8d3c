"""What every command group shares: the ``--target``/``--var`` options, settings resolution, and
the one-line usage error. Domain logic lives in the packages the commands call, never here."""

from __future__ import annotations

import argparse
from typing import Any

from ragops.errors import RagopsError


class CliError(RagopsError):
    """A usage error (a bad flag value, a missing argument): printed as one line, exit code 2."""


def pairs(values: list[str] | None, flag: str) -> dict[str, str]:
    """``NAME=VALUE`` items of a repeatable flag → a dict (a malformed item is a :class:`CliError`)."""
    out: dict[str, str] = {}
    for item in values or []:
        name, eq, value = item.partition("=")
        if not eq or not name:
            raise CliError(f"{flag} {item!r}: expected NAME=VALUE")
        out[name.strip()] = value
    return out


def add_common(p: argparse.ArgumentParser) -> None:
    """``--target``, ``--var`` and ``--log-level``: accepted by every command."""
    p.add_argument("--target", "-t", help="bundle target (default: the target marked default)")
    p.add_argument("--var", action="append", metavar="NAME=VALUE", help="override a bundle variable (repeatable)")
    p.add_argument("--log-level", default=None,
                   help="DEBUG (also prints tracebacks), INFO (default), WARNING")


def load_settings(args: argparse.Namespace) -> Any:
    """Settings for the chosen target: bundle variables + ``--var`` overrides (defaults if no bundle here)."""
    from ragops.bundle import settings_for

    return settings_for(args.target, pairs(args.var, "--var"))


def model_uri(args: argparse.Namespace, settings: Any) -> str:
    """``--model-uri`` when given, else the registry default (``@champion``, else ``@challenger``)."""
    from ragops.models.registry import default_model_uri

    return args.model_uri or default_model_uri(settings)


def add_model_uri(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model-uri", help="default: models:/rag_chain@champion (else @challenger)")


def id_text_lines(lines, where: str, id_keys: tuple[str, ...] = ("id",)):
    """``(id, text)`` of each JSONL line ``{"id": ..., "text": "..."}`` (blank lines skipped; the line
    number when there is no id): what ``ragops search --queries`` and ``ragops guardrails check
    --jsonl`` read. A bad line is a CliError naming ``where`` and the line."""
    import json

    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise CliError(f"{where}:{n}: not JSON ({exc.msg})") from None
        if not isinstance(item, dict) or not isinstance(item.get("text"), str):
            raise CliError(f'{where}:{n}: expected an object with a string "text" (and an "id")')
        yield next((item[k] for k in id_keys if k in item), n), item["text"]
