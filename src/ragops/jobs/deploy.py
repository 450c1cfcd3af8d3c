"""Task ``deploy``: the registered chain version an alias points at → a Databricks Model Serving endpoint.

Named parameters (besides the usual settings ones, ``catalog``, ``schema`` …):

``alias``          alias or version number to serve (default ``champion``)
``endpoint_name``  serving endpoint (default ``ragops-rag-chain``)
``model_name``     registered model (default ``<catalog>.<schema>.rag_chain``)
``workload_size``  Small | Medium | Large (default ``Small``)
``scale_to_zero``  true | false (default ``true``)
``timeout_s``      how long to wait for the endpoint to be ready (default 1200)
``poll_s``         seconds between state polls (default 10)
``profile``        ~/.databrickscfg profile (default: environment / DEFAULT profile / runtime auth)
``retry_timeout_s`` how long the SDK retries an unreachable workspace (default 30)

Unlike the pipeline tasks it does not open the lakehouse: it only talks to the workspace.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Sequence

from ragops.config import Settings
from ragops.jobs.common import parse_named_parameters
from ragops.logs import setup_logging
from ragops.serving.deploy import (
    DEFAULT_ENDPOINT,
    DEFAULT_RETRY_TIMEOUT_S,
    DeployError,
    default_model_name,
    deploy,
    workspace_client,
)

log = logging.getLogger("ragops.jobs")


def _as_bool(value: str) -> bool:
    text = str(value).strip().lower()
    if text in {"1", "true", "yes", "on"}:
        return True
    if text in {"0", "false", "no", "off"}:
        return False
    raise SystemExit(f"deploy: expected true or false, got {value!r}")


def main(argv: Sequence[str] | None = None) -> int:
    setup_logging()
    params = parse_named_parameters(sys.argv[1:] if argv is None else argv)
    # Databricks passes every named parameter; an empty job parameter means "use the default".
    p = {k: v.strip() for k, v in params.items() if v is not None and v.strip() != ""}
    settings = Settings.from_variables(p)
    try:
        timeout_s = float(p.get("timeout_s", 1200))
        poll_s = float(p.get("poll_s", 10))
        retry_s = int(p.get("retry_timeout_s", DEFAULT_RETRY_TIMEOUT_S))
    except ValueError as exc:
        raise SystemExit(f"deploy: bad numeric parameter: {exc}") from exc
    started = time.perf_counter()
    try:
        client = workspace_client(profile=p.get("profile"), retry_timeout_seconds=retry_s)
        result = deploy(
            client,
            model_name=p.get("model_name") or default_model_name(settings.catalog, settings.schema),
            alias_or_version=p.get("alias", "champion"),
            endpoint_name=p.get("endpoint_name", DEFAULT_ENDPOINT),
            workload_size=p.get("workload_size", "Small"),
            scale_to_zero=_as_bool(p.get("scale_to_zero", "true")),
            timeout_s=timeout_s,
            poll_s=poll_s,
        )
    except DeployError as exc:
        log.error("deploy failed: %s", exc)
        print(f"ragops-deploy: {exc}", file=sys.stderr)
        return 1
    log.info("deploy finished in %.1fs (%s)", time.perf_counter() - started, result.action)
    print(json.dumps({"task": "deploy", "summary": result.to_dict()}, default=str))
    return 0
