"""Tiered rules files — the evaluation gates (``data/eval/gates.yml``) and the monitor's alert rules
(``data/monitoring/alerts.yml``) — read and walked the same way: YAML, a mapping of tier → list of
rules, every problem a :class:`~ragops.errors.RulesFileError` (the caller's subclass) naming the
file, tier, rule index and key. What a rule means is each caller's own parser."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from ragops.errors import RulesFileError


def read_rules_yaml(path: str | Path, error: type[RulesFileError], missing_hint: str) -> tuple[Any, str]:
    """(the parsed document, its source name); a missing file or bad YAML raises ``error``."""
    import yaml

    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise error(f"no such file; {missing_hint}", source) from exc
    try:
        return yaml.safe_load(text), source
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark else ""
        raise error(f"invalid YAML{at}: {getattr(exc, 'problem', None) or exc}", source) from exc


def tier_entries(data: Any, tiers: Sequence[str], source: str,
                 error: type[RulesFileError]) -> Iterator[tuple[str, int, Any]]:
    """(tier, index, entry) of every rule of a non-empty document, in file order."""
    if not isinstance(data, Mapping):
        raise error(f"expected a mapping with keys {', '.join(tiers)} at the top level", source)
    for tier, entries in data.items():
        if tier not in tiers:
            raise error(f"unknown tier {tier!r}; tiers are {', '.join(tiers)}", source, str(tier))
        if entries is None:
            continue
        if not isinstance(entries, list):
            raise error("expected a list of rules (`- metric: …`)", source, tier)
        for i, entry in enumerate(entries):
            yield tier, i, entry
