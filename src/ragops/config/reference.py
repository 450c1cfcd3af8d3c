"""The settings as people read them: a table of every setting with its current value (``ragops
settings``) and the generated reference ``docs/settings.md``. Both come from :func:`list_settings`,
so they cannot drift from the fields."""

from __future__ import annotations

import operator
from typing import Any

from ragops.config.settings import SettingInfo, Settings, list_settings

DOC_HEADER = """# Settings

Every setting is declared once, on its typed config field in `src/ragops/config/settings.py`; this
page is generated from those declarations (`ragops settings --markdown > docs/settings.md`, and a
test fails when it is stale). Set any of them for one run with `--var NAME=VALUE` (every command
and `ragops bundle run`), per target under `targets.<name>.variables` in `databricks.yml`, or as a
job parameter (`--param NAME=VALUE`, or in the Databricks Jobs UI).
"""


def current_value(settings: Settings, info: SettingInfo) -> Any:
    """The value ``settings`` has for one setting (its dotted field path)."""
    return operator.attrgetter(info.path)(settings)


def rows(settings: Settings | None = None) -> list[dict[str, Any]]:
    """One dict per setting: variable, field, type, default, help (and the value, given settings)."""
    out = []
    for info in list_settings():
        row = {"variable": info.name, "field": info.path, "type": info.type, "default": info.bundle_text(),
               "help": info.help}
        if settings is not None:
            row["value"] = info.bundle_text(current_value(settings, info))
        out.append(row)
    return out


def markdown() -> str:
    """``docs/settings.md``: one table per section, in declaration order."""
    lines = [DOC_HEADER]
    section = None
    for info in list_settings():
        here = info.path.rpartition(".")[0] or "settings"
        if here != section:
            section = here
            lines += ["", f"## `{section}`", "", "| variable | type | default | what it does |", "|---|---|---|---|"]
        default = (info.bundle_text() or '""') if info.is_variable else info.from_bundle
        text = info.help.replace("|", "\\|")
        lines.append(f"| `{info.name}` | {info.type} | `{default}` | {text} |")
    return "\n".join(lines) + "\n"
