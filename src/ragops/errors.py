"""The one root of ragops' exceptions.

Every error the project raises on purpose derives from :class:`RagopsError`, so the CLI (and a
notebook, or an application embedding ragops) can tell "ours — print one line saying what failed,
why and what to do" from "a bug — show the traceback". Each subclass lives beside the code that
raises it and keeps the built-in base its callers already catch (``ValueError`` for bad input,
``LookupError`` for "no such thing", ``RuntimeError`` for a failed operation, ``FileNotFoundError``
for a missing snapshot), as delta-rs does with ``DeltaError`` and MLflow with ``MlflowException``::

    RagopsError
    ├── bad input, ValueError ........ BundleError, GatesError, EvalSetError, LoadError, SourceError,
    │                                  SchemaError, InvalidRequest, SettingsError
    ├── not found, LookupError ....... ModelNotRegisteredError, ModelNotFoundError, LLMNotFoundError
    │   └─ FileNotFoundError ......... SnapshotNotFoundError
    └── failed, RuntimeError ......... LakehouseError (TableNotFoundError, ChangeFeedUnavailable),
                                       EmbeddingError, LLMError, JudgeError, DeployError (DeployTimeout),
                                       EvaluationError, GateFailed, TaskFailed, JobLocked, InjectedFailure
"""

from __future__ import annotations


class RagopsError(Exception):
    """An expected failure with a message a user can act on (what failed, why, what to do)."""


__all__ = ["RagopsError"]
