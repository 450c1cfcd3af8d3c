"""Databricks Asset Bundle support: load and validate ``databricks.yml``, run jobs locally."""

from ragops.bundle.loader import Bundle, BundleError, find_bundle_root, load_bundle
from ragops.bundle.locks import JobLocked
from ragops.bundle.runner import JobRun, TaskRun, run_job
from ragops.bundle.validate import Issue, validate, validate_bundle
from ragops.bundle.variables import NON_SETTING_VARIABLES


def settings_for(target: str | None = None, overrides=None, root=None):
    """Settings of a bundle target (+ ``--var``-style overrides): what every command, job and
    notebook uses. Outside a bundle checkout, the defaults plus the overrides.

    ``overrides`` may name any setting's variable (:func:`ragops.config.list_settings`), so a
    notebook passes just the variables it shows; a name the bundle does not declare is a
    :class:`BundleError`, a value of the wrong type a :class:`~ragops.config.SettingsError`."""
    from ragops.config import Settings

    # Empty values (an unset notebook widget, a blank parameter) mean "keep the target's value".
    overrides = {k: v for k, v in dict(overrides or {}).items() if v not in (None, "")}
    bundle_root = root or find_bundle_root()
    if bundle_root is None:
        return Settings.from_variables({"target": target or "local", **dict(overrides or {})})
    bundle = load_bundle(bundle_root, target, overrides)
    return Settings.from_variables(bundle.settings_variables(), base_dir=bundle.root)


__all__ = [
    "settings_for",
    "Bundle",
    "BundleError",
    "Issue",
    "JobLocked",
    "JobRun",
    "NON_SETTING_VARIABLES",
    "TaskRun",
    "find_bundle_root",
    "load_bundle",
    "run_job",
    "validate",
    "validate_bundle",
]
