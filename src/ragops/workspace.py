"""The Databricks workspace client, built in one place.

Everything that talks to a workspace (Model Serving deploys, remote embedding and chat
endpoints) gets its ``WorkspaceClient`` from :func:`workspace_client`, so profile / host / token
handling and the retry budget are decided once. The budget is short on purpose: with no
reachable workspace the SDK otherwise retries for 300 s, once while building the client and
again on every call. :func:`call` runs one SDK call and turns connection, auth and API errors
into a :class:`WorkspaceError` that says what was being done.

It sits at the top level (beside ``tracking``) rather than in ``serving`` because ``embedding``
and ``llm`` need it too, and dependencies point downward.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ragops.errors import RagopsError

DEFAULT_RETRY_TIMEOUT_S = 30

_AUTH_ENV = (
    "DATABRICKS_HOST",
    "DATABRICKS_TOKEN",
    "DATABRICKS_CLIENT_ID",
    "DATABRICKS_CLIENT_SECRET",
    "DATABRICKS_CONFIG_PROFILE",
    "DATABRICKS_CONFIG_FILE",
    "DATABRICKS_RUNTIME_VERSION",
)


class WorkspaceError(RagopsError, RuntimeError):
    """No workspace could be configured or reached, or an API call failed; the message says what to do."""


def _config_file() -> Path:
    return Path(os.path.expanduser(os.environ.get("DATABRICKS_CONFIG_FILE") or "~/.databrickscfg"))


def missing_configuration(profile: str | None = None) -> list[str]:
    """What is missing for the SDK to find a workspace (empty when something is configured)."""
    env = {k: os.environ.get(k, "") for k in _AUTH_ENV}
    if env["DATABRICKS_RUNTIME_VERSION"]:  # on a Databricks cluster / serverless: runtime auth
        return []
    if env["DATABRICKS_HOST"] and (env["DATABRICKS_TOKEN"] or env["DATABRICKS_CLIENT_ID"]):
        return []
    missing = []
    if not env["DATABRICKS_HOST"]:
        missing.append("DATABRICKS_HOST is not set")
    if not env["DATABRICKS_TOKEN"] and not env["DATABRICKS_CLIENT_ID"]:
        missing.append("DATABRICKS_TOKEN (or DATABRICKS_CLIENT_ID/DATABRICKS_CLIENT_SECRET) is not set")
    cfg = _config_file()
    if not cfg.is_file():
        missing.append(f"{cfg} does not exist")
    else:
        wanted = profile or env["DATABRICKS_CONFIG_PROFILE"] or "DEFAULT"
        if f"[{wanted}]" not in cfg.read_text(errors="replace"):
            missing.append(f"{cfg} has no [{wanted}] profile")
    return missing


def _no_workspace_message(reason: str, profile: str | None, purpose: str, hint: str) -> str:
    missing = missing_configuration(profile)
    lines = [f"No Databricks workspace is configured, so {purpose}."]
    if missing:
        lines.append("Missing: " + "; ".join(missing) + ".")
    lines.append(
        "Set DATABRICKS_HOST and DATABRICKS_TOKEN, or add a profile to ~/.databrickscfg "
        "(`databricks auth login --host https://<workspace>` / `databricks configure`) and pass --profile."
    )
    if hint:
        lines.append(hint)
    lines.append(f"(databricks-sdk: {reason.splitlines()[0] if reason else 'no credentials'})")
    return "\n".join(lines)


def workspace_client(
    host: str | None = None,
    token: str | None = None,
    profile: str | None = None,
    *,
    retry_timeout_seconds: int = DEFAULT_RETRY_TIMEOUT_S,
    http_timeout_seconds: float | None = None,
    purpose: str = "nothing can be sent to it",
    hint: str = "",
):
    """A ``WorkspaceClient`` with a short retry budget; :class:`WorkspaceError` if none can be configured.

    ``retry_timeout_seconds`` bounds how long the SDK retries an unreachable host. ``purpose``
    ("the chain cannot be deployed …") and ``hint`` (what to do instead) go into the error message.
    """
    from databricks.sdk import WorkspaceClient
    from databricks.sdk.config import Config

    retry = max(1, int(retry_timeout_seconds))  # the SDK treats 0 as "use the 300 s default"
    kwargs: dict[str, Any] = {"retry_timeout_seconds": retry,
                              "http_timeout_seconds": http_timeout_seconds or min(60, retry)}
    if host:
        kwargs["host"] = host
    if token:
        kwargs["token"] = token
    if profile:
        kwargs["profile"] = profile
    try:
        return WorkspaceClient(config=Config(**kwargs))
    except ValueError as exc:
        raise WorkspaceError(_no_workspace_message(str(exc), profile, purpose, hint)) from exc


def call(client, what: str, fn, *args, hint: str = "", error: type[WorkspaceError] = WorkspaceError, **kwargs):
    """Run one SDK call; API errors (except ``NotFound``, which callers handle), connection trouble
    and auth failures become ``error`` (a :class:`WorkspaceError`, or the caller's subclass) saying
    what was being done."""
    import requests
    from databricks.sdk.errors import DatabricksError, NotFound, PermissionDenied, Unauthenticated

    host = getattr(getattr(client, "config", None), "host", None) or "(unknown host)"
    try:
        return fn(*args, **kwargs)
    except (TimeoutError, requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
        raise error(
            f"Databricks workspace {host} is not reachable ({what}): {exc}. Check DATABRICKS_HOST / the "
            f"profile's host and your network." + (f" {hint}" if hint else "")
        ) from exc
    except Unauthenticated as exc:
        raise error(
            f"Databricks workspace {host} rejected the credentials ({what}): {exc}. Check DATABRICKS_TOKEN "
            "or the profile in ~/.databrickscfg."
        ) from exc
    except PermissionDenied as exc:
        raise error(f"Permission denied on {host} ({what}): {exc}") from exc
    except NotFound:
        raise
    except DatabricksError as exc:
        code = getattr(exc, "error_code", None) or type(exc).__name__
        raise error(f"{what} failed on {host}: {code}: {exc}") from exc
