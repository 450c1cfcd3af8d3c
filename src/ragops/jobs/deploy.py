"""Task ``deploy``: the registered chain version an alias points at → a Databricks Model Serving endpoint.

Named parameters besides the usual settings ones (``catalog``, ``schema`` …) are declared once in
:data:`PARAMETERS` (name, type, default, help); an empty value keeps the default, as Databricks
passes every job parameter.

Unlike the pipeline tasks it does not open the lakehouse: it only talks to the workspace.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ragops.config import SettingInfo, Settings
from ragops.jobs.common import run_task
from ragops.workspace import DEFAULT_RETRY_TIMEOUT_S


def _param(name: str, type_: str, default: Any, help_: str) -> SettingInfo:
    return SettingInfo(name=name, path=name, type=type_, default=default, help=help_)


#: The deploy task's own parameters, parsed (and their errors named) like settings.
PARAMETERS = (
    _param("alias", "str", "champion", "alias or version number to serve"),
    _param("endpoint_name", "str", "ragops-rag-chain", "serving endpoint"),
    _param("model_name", "str", "", "registered model (default: the target's, <catalog>.<schema>.rag_chain)"),
    _param("workload_size", "str", "Small", "Small | Medium | Large"),
    _param("scale_to_zero", "bool", True, "let the endpoint scale to zero"),
    _param("timeout_s", "float", 1200.0, "how long to wait for the endpoint to be ready"),
    _param("poll_s", "float", 10.0, "seconds between state polls"),
    _param("profile", "str", "", "~/.databrickscfg profile (default: environment / DEFAULT profile / runtime auth)"),
    _param("retry_timeout_s", "int", DEFAULT_RETRY_TIMEOUT_S, "how long the SDK retries an unreachable workspace"),
    _param("gateway_config", "str", "", "gateway YAML (routes, keys, limits): the endpoint's traffic split and AI "
           "Gateway settings come from it; empty = serve the alias alone"),
    _param("gateway_route", "str", "", "route of gateway_config to deploy (default: its first)"),
)


def options(params: Mapping[str, str]) -> dict[str, Any]:
    """The task's parameters, typed; empty or absent → the declared default."""
    out = {}
    for p in PARAMETERS:
        value = params.get(p.name)
        out[p.name] = p.default if value is None or str(value).strip() == "" else p.parse(str(value).strip())
    return out


def deploy_stage(lh: None, settings: Settings, params: Mapping[str, str]):
    from ragops.models.registry import model_name
    from ragops.serving.deploy import LOCAL_HINT, deploy
    from ragops.workspace import workspace_client

    o = options(params)
    gateway = None
    if o["gateway_config"]:
        from ragops.serving.gateway.config import load_gateway_config

        gateway = load_gateway_config(o["gateway_config"], settings)  # a bad file fails before any API call
    client = workspace_client(profile=o["profile"] or None, retry_timeout_seconds=o["retry_timeout_s"],
                              purpose="the chain cannot be deployed to Model Serving", hint=LOCAL_HINT)
    return deploy(
        client,
        model_name=o["model_name"] or model_name(settings, unity_catalog=True),
        alias_or_version=o["alias"],
        endpoint_name=o["endpoint_name"],
        workload_size=o["workload_size"],
        scale_to_zero=o["scale_to_zero"],
        timeout_s=o["timeout_s"],
        poll_s=o["poll_s"],
        gateway_config=gateway,
        gateway_route=o["gateway_route"] or None,
    )


def main(argv: Sequence[str] | None = None) -> int:
    return run_task("deploy", deploy_stage, argv, needs_lakehouse=False, with_params=True)
