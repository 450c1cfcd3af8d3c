"""The one root of ragops' exceptions.

Every error the project raises on purpose derives from :class:`RagopsError`, so the CLI (and a
notebook, or an application embedding ragops) can tell "ours — print one line saying what failed,
why and what to do" from "a bug — show the traceback". Each subclass lives beside the code that
raises it and keeps the built-in base its callers already catch (``ValueError`` for bad input,
``LookupError`` for "no such thing", ``RuntimeError`` for a failed operation, ``FileNotFoundError``
for a missing snapshot), as delta-rs does with ``DeltaError`` and MLflow with ``MlflowException``::

    RagopsError
    ├── bad input, ValueError ........ BundleError, EvalSetError, LoadError, SourceError,
    │                                  SchemaError, InvalidRequest, SettingsError,
    │                                  RulesFileError (GatesError, AlertRulesError)
    ├── not found, LookupError ....... ModelNotRegisteredError, ModelNotFoundError, LLMNotFoundError
    │   └─ FileNotFoundError ......... SnapshotNotFoundError
    └── failed, RuntimeError ......... LakehouseError (TableNotFoundError, ChangeFeedUnavailable),
                                       EmbeddingError, LLMError, JudgeError, DeployError (DeployTimeout),
                                       EvaluationError, GateFailed, TaskFailed, JobLocked, InjectedFailure,
                                       MonitoringError
"""

from __future__ import annotations


class RagopsError(Exception):
    """An expected failure with a message a user can act on (what failed, why, what to do)."""


class RulesFileError(RagopsError, ValueError):
    """A problem in a tiered rules file — the evaluation gates, the monitor's alert rules — naming the
    file, tier, rule index and key it is about (``gates.yml: block[2] key 'min': ...``)."""

    def __init__(
        self, message: str, file: str, tier: str | None = None, index: int | None = None, key: str | None = None
    ) -> None:
        self.file, self.tier, self.index, self.key, self.detail = file, tier, index, key, message
        where = file
        if tier is not None:
            where += f": {tier}"
            if index is not None:
                where += f"[{index}]"
        if key is not None:
            where += f" key {key!r}"
        super().__init__(f"{where}: {message}")


__all__ = ["RagopsError", "RulesFileError"]
