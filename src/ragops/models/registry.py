"""The registered chain: its name, aliases resolved to versions, promote, and the previous champion.

This module is the one place that spells the model's name (:func:`model_name`, from
:attr:`Settings.registered_model_name`) and turns an alias, a version number or a ``models:/`` URI
into a version (:func:`resolve`, :func:`alias_version`, and :func:`resolve_version`, which
``ragops ask`` uses: one read-only query of a local sqlite registry instead of MLflow's import and
store, MLflow's client for any other registry or an unexpected schema).

"Not found" is told apart from every other failure: only MLflow's "no such resource" answers read
as "no such alias / version" (:func:`is_not_found`); an auth, network or server error propagates.
What the stores answer, checked against MLflow 3.17: a missing model or version is
``RESOURCE_DOES_NOT_EXIST`` everywhere; a missing *alias* is ``RESOURCE_DOES_NOT_EXIST`` from
Unity Catalog but ``INVALID_PARAMETER_VALUE`` ("Registered model alias … not found.") from the
sqlite and file stores, so that code counts as "not found" only with that message.
"""

from __future__ import annotations

import dataclasses
import sqlite3
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ragops.config import Settings
from ragops.errors import RagopsError
from ragops.tracking import NOT_FOUND_CODES, configure_mlflow, is_not_found  # noqa: F401 - re-exported

PREVIOUS_CHAMPION_TAG = "previous_champion_version"
#: The aliases tried, in order, when no model is named: a promoted chain, else one logged but not promoted.
DEFAULT_ALIASES = ("champion", "challenger")


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
    name = model_name(settings)
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


def model_name(settings: Settings, *, unity_catalog: bool = False) -> str:
    """The registered chain's name: :attr:`Settings.registered_model_name`. ``unity_catalog=True``
    gives its three-level Unity Catalog name (``<catalog>.<schema>.rag_chain``) whatever the
    tracking URI, which is what Model Serving needs."""
    if unity_catalog:
        settings = dataclasses.replace(settings, mlflow_tracking_uri="databricks")
    return settings.registered_model_name


def alias_model_version(settings: Settings, alias: str, name: str | None = None) -> Any | None:
    """MLflow's ``ModelVersion`` (version, run, tags) that ``alias`` points at, or None when the alias
    (or the model) does not exist. Any other registry failure (auth, network, server) raises."""
    from mlflow.exceptions import MlflowException

    client = configure_mlflow(settings, experiment=False)
    try:
        return client.get_model_version_by_alias(name or model_name(settings), alias)
    except MlflowException as exc:
        if is_not_found(exc):
            return None
        raise


def alias_version(settings: Settings, alias: str, name: str | None = None) -> str | None:
    """The version ``alias`` points at, or None when the alias (or the model) does not exist."""
    mv = alias_model_version(settings, alias, name)
    return None if mv is None else str(mv.version)


def resolve(settings: Settings, ref: str | int) -> tuple[str, str | None]:
    """An alias (``champion``, ``@champion``), a version (``3``) or a URI → (pinned URI, version).

    ``models:/name@alias`` / ``models:/name/3`` / ``champion`` / ``3`` → (``models:/name/3``, ``"3"``):
    the version it points at now. ``(uri, None)`` when it names no registered version — an unknown
    alias, or a runs:/ or file URI. Bare aliases and versions refer to this target's chain.
    """
    ref = str(ref).strip()
    parsed = _parse(settings, ref)
    if parsed is None:  # runs:/…, file:…, a path: not a registry reference
        return ref, None
    name, alias, version = parsed
    if not ref.startswith("models:/"):
        ref = f"models:/{name}" + (f"/{version}" if version else f"@{alias}")
    if alias is not None:
        version = alias_version(settings, alias, name)
        if version is None:
            return ref, None
    return f"models:/{name}/{version}", version


#: The name evaluation (and older callers) import; the same function.
resolve_model_uri = resolve


def default_model_uri(settings: Settings) -> str:
    """``@champion`` if one exists, else ``@challenger`` (a chain logged but not yet promoted)."""
    return resolve_version(settings, None)[1]


@dataclass(frozen=True)
class ModelVersionRef:
    """A registered version: what the cache is keyed by (name, version) and checked against (source)."""

    name: str
    version: str
    source: str

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


def _parse(settings: Settings, model_uri: str) -> tuple[str, str | None, str | None] | None:
    """``models:/name@alias`` / ``models:/name/3`` / ``champion`` / ``3`` → (name, alias, version);
    None for what is not a registry reference (runs:/, a path)."""
    ref = str(model_uri).strip()
    if not ref.startswith("models:/"):
        if "/" in ref or ":" in ref:
            return None
        return (model_name(settings), None, ref) if ref.isdigit() else (model_name(settings), ref.lstrip("@"), None)
    rest = ref[len("models:/"):]
    if "@" in rest:
        name, alias = rest.split("@", 1)
        return name, alias, None
    name, _, version = rest.rpartition("/")
    return (name, None, version) if name and version.isdigit() else None


def _sqlite_path(settings: Settings) -> Path | None:
    uri = settings.tracking_uri
    return Path(uri[len("sqlite:///"):]) if uri.startswith("sqlite:///") else None


def _sqlite_lookup(db: Path, name: str, alias: str | None, version: str | None) -> ModelVersionRef | None:
    """One read-only query of MLflow's sqlite registry (tables ``registered_model_aliases`` and
    ``model_versions``, unchanged since MLflow 2.3; checked against 3.17). Raises ``sqlite3.Error``
    when the schema is not that one, so the caller falls back to MLflow's client."""
    live = "(mv.current_stage IS NULL OR mv.current_stage != 'Deleted_Internal')"
    if alias is not None:
        sql = ("SELECT mv.version, mv.source FROM registered_model_aliases a JOIN model_versions mv "
               f"ON mv.name = a.name AND mv.version = a.version WHERE a.name = ? AND a.alias = ? AND {live}")
        args: tuple[Any, ...] = (name, alias)
    else:
        sql = f"SELECT mv.version, mv.source FROM model_versions mv WHERE mv.name = ? AND mv.version = ? AND {live}"
        args = (name, int(version or 0))
    with sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True) as conn:
        rows = conn.execute(sql, args).fetchall()
    if len(rows) > 1:  # several workspaces in one store: let MLflow pick
        raise sqlite3.OperationalError("ambiguous")
    return ModelVersionRef(name, str(rows[0][0]), str(rows[0][1])) if rows else None


def _mlflow_lookup(settings: Settings, name: str, alias: str | None, version: str | None) -> ModelVersionRef | None:
    from mlflow.exceptions import MlflowException

    client = configure_mlflow(settings, experiment=False)
    try:
        mv = client.get_model_version_by_alias(name, alias) if alias else client.get_model_version(name, version)
    except MlflowException as exc:
        if is_not_found(exc):
            return None
        raise
    return ModelVersionRef(name, str(mv.version), str(mv.source))


def lookup_version(settings: Settings, name: str, alias: str | None, version: str | None) -> ModelVersionRef | None:
    """The registered version an alias (or a version number) names, with the lightest call that
    answers: sqlite directly for a local registry, else MLflow's client. None when there is none."""
    db = _sqlite_path(settings)
    if db is not None and db.exists():
        try:
            return _sqlite_lookup(db, name, alias, version)
        except sqlite3.Error:
            pass
    return _mlflow_lookup(settings, name, alias, version)


def resolve_version(settings: Settings, model_uri: str | None) -> tuple[ModelVersionRef | None, str]:
    """``model_uri`` (default ``@champion``, else ``@challenger``) → (its registered version, the URI
    asked for); the version is None when ``model_uri`` is not a registry reference. Raises
    ``ModelNotRegisteredError`` when it names none."""
    if model_uri is None:
        name = model_name(settings)
        for alias in DEFAULT_ALIASES:
            ref = lookup_version(settings, name, alias, None)
            if ref is not None:
                return ref, f"models:/{name}@{alias}"
        raise ModelNotRegisteredError(
            f"no version of {name!r} has a champion or challenger alias in {settings.tracking_uri}; "
            "run `ragops bundle run rag_chain_job` first")
    parsed = _parse(settings, model_uri)
    if parsed is None:
        return None, model_uri
    ref = lookup_version(settings, *parsed)
    if ref is None:
        raise ModelNotRegisteredError(f"{model_uri!r} names no registered version in {settings.tracking_uri}")
    return ref, model_uri


def promote(settings: Settings, version: str | None = None, from_alias: str = "challenger",
            alias: str = "champion") -> AliasChange:
    """Point ``alias`` at ``version`` (default: the version ``from_alias`` points at)."""
    from mlflow.exceptions import MlflowException

    client = configure_mlflow(settings, experiment=False)
    name = model_name(settings)
    if version is None:
        version = alias_version(settings, from_alias)
        if version is None:
            raise ModelNotRegisteredError(f"{name!r} has no @{from_alias} version to promote")
    try:
        client.get_model_version(name, str(version))
    except MlflowException as exc:
        if not is_not_found(exc):
            raise
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
    from mlflow.exceptions import MlflowException

    client = configure_mlflow(settings, experiment=False)
    name = model_name(settings)
    tag = PREVIOUS_CHAMPION_TAG if alias == "champion" else f"previous_{alias}"
    try:
        previous = client.get_registered_model(name).tags.get(tag)
    except MlflowException as exc:
        if not is_not_found(exc):
            raise
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
