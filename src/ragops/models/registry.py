"""Aliases on the registered chain: resolve, promote, and remember the previous champion."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ragops.config import Settings
from ragops.errors import RagopsError
from ragops.tracking import configure_mlflow

PREVIOUS_CHAMPION_TAG = "previous_champion_version"


class ModelNotRegisteredError(RagopsError, LookupError):
    pass


@dataclass
class AliasChange:
    model_name: str
    alias: str
    version: str
    previous_version: str | None

    def to_dict(self) -> dict:
        return asdict(self)


def versions_frame(settings: Settings):
    """Every registered version with its aliases and lineage tags, oldest first."""
    import pandas as pd

    client = configure_mlflow(settings, experiment=False)
    name = settings.registered_model_name
    versions = client.search_model_versions(f"name='{name}'")
    aliases: dict[str, list[str]] = {}
    if versions:
        for alias, version in client.get_registered_model(name).aliases.items():
            aliases.setdefault(str(version), []).append(alias)
    rows = [{"version": int(v.version), "aliases": sorted(aliases.get(str(v.version), [])), "run_id": v.run_id,
             "index_snapshot": v.tags.get("index_snapshot"), "prompt_version": v.tags.get("prompt_version"),
             "llm": v.tags.get("llm")} for v in versions]
    columns = ["version", "aliases", "run_id", "index_snapshot", "prompt_version", "llm"]
    return pd.DataFrame(rows, columns=columns).sort_values("version").reset_index(drop=True)


def alias_version(settings: Settings, alias: str) -> str | None:
    client = configure_mlflow(settings, experiment=False)
    try:
        return str(client.get_model_version_by_alias(settings.registered_model_name, alias).version)
    except Exception:
        return None


def default_model_uri(settings: Settings) -> str:
    """``@champion`` if one exists, else ``@challenger`` (a chain logged but not yet promoted)."""
    name = settings.registered_model_name
    for alias in ("champion", "challenger"):
        if alias_version(settings, alias) is not None:
            return f"models:/{name}@{alias}"
    raise ModelNotRegisteredError(
        f"no version of {name!r} has a champion or challenger alias in {settings.tracking_uri}; "
        "run `ragops bundle run rag_chain_job` first"
    )


def promote(settings: Settings, version: str | None = None, from_alias: str = "challenger",
            alias: str = "champion") -> AliasChange:
    """Point ``alias`` at ``version`` (default: the version ``from_alias`` points at)."""
    client = configure_mlflow(settings, experiment=False)
    name = settings.registered_model_name
    if version is None:
        version = alias_version(settings, from_alias)
        if version is None:
            raise ModelNotRegisteredError(f"{name!r} has no @{from_alias} version to promote")
    try:
        client.get_model_version(name, str(version))
    except Exception as exc:
        raise ModelNotRegisteredError(f"{name!r} has no version {version}") from exc
    previous = alias_version(settings, alias)
    client.set_registered_model_alias(name, alias, str(version))
    if previous is not None and previous != str(version):
        client.set_registered_model_tag(name, PREVIOUS_CHAMPION_TAG if alias == "champion" else f"previous_{alias}",
                                        previous)
    return AliasChange(name, alias, str(version), previous)


def rollback(settings: Settings, alias: str = "champion") -> AliasChange:
    """Point ``alias`` back at the version it had before the last promotion.

    The version rolled back from becomes the recorded previous version, so a second rollback
    undoes the first.
    """
    client = configure_mlflow(settings, experiment=False)
    name = settings.registered_model_name
    tag = PREVIOUS_CHAMPION_TAG if alias == "champion" else f"previous_{alias}"
    try:
        previous = client.get_registered_model(name).tags.get(tag)
    except Exception as exc:
        raise ModelNotRegisteredError(f"{name!r} is not registered in {settings.tracking_uri}") from exc
    if not previous:
        raise ModelNotRegisteredError(
            f"{name!r} has no previous @{alias} recorded: nothing to roll back to (a version becomes "
            f"'previous' when `ragops model promote` or the evaluate job moves @{alias} off it)")
    current = alias_version(settings, alias)
    client.set_registered_model_alias(name, alias, str(previous))
    if current is not None and current != str(previous):
        client.set_registered_model_tag(name, tag, current)
        client.set_model_version_tag(name, current, "rolled_back_from", alias)
    return AliasChange(name, alias, str(previous), current)


def resolve_model_uri(settings: Settings, model_uri: str) -> tuple[str, str | None]:
    """``models:/name@alias`` or ``models:/name/3`` → (``models:/name/3``, ``"3"``): the version a URI
    points at now. ``(model_uri, None)`` when it names no registered version (an unknown alias,
    or a runs:/ or file URI)."""
    if not model_uri.startswith("models:/"):
        return model_uri, None
    rest = model_uri[len("models:/"):]
    if "@" in rest:
        name, alias = rest.split("@", 1)
        client = configure_mlflow(settings, experiment=False)
        try:
            version = str(client.get_model_version_by_alias(name, alias).version)
        except Exception:
            return model_uri, None
    else:
        name, _, version = rest.rpartition("/")
        if not name or not version.isdigit():
            return model_uri, None
    return f"models:/{name}/{version}", version
