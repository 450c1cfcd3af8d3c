"""Databricks Asset Bundle support: load and validate ``databricks.yml``, run jobs locally."""

from ragops.bundle.loader import Bundle, BundleError, find_bundle_root, load_bundle
from ragops.bundle.runner import JobRun, TaskRun, run_job
from ragops.bundle.validate import Issue, validate, validate_bundle

__all__ = [
    "Bundle",
    "BundleError",
    "Issue",
    "JobRun",
    "TaskRun",
    "find_bundle_root",
    "load_bundle",
    "run_job",
    "validate",
    "validate_bundle",
]
