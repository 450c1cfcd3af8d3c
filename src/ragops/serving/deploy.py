"""Deploy a registered RAG chain version to a Databricks Model Serving endpoint.

The chain is registered in Unity Catalog as ``<catalog>.<schema>.rag_chain``
(:func:`ragops.models.registry.model_name`); the evaluation gate
moves the ``champion`` alias, new versions get ``challenger``. :func:`resolve_model_version` turns an
alias (or a plain version number) into a version, :func:`deploy_endpoint` makes one endpoint serve
exactly that version with 100 % of the traffic:

* the endpoint does not exist → ``serving_endpoints.create``;
* it already serves that version with the same compute settings → nothing is sent ("unchanged");
* otherwise → ``serving_endpoints.update_config``;

and then polls until the endpoint is ``READY`` and no config update is in progress. A failed update
(``UPDATE_FAILED``) or a timeout raises :class:`DeployError`, naming the endpoint.

With a gateway config (``deploy(..., gateway_config=...)``, the YAML of ``ragops gateway``), the
route's targets are served instead, split by weight (:func:`deploy_traffic`: e.g. champion 90 % /
challenger 10 % as two served entities), and the endpoint's AI Gateway (rate limits, usage
tracking, inference table; :mod:`ragops.serving.gateway.databricks`) is applied with
``serving_endpoints.put_ai_gateway`` once the endpoint is ready, only when it differs.

Everything goes through ``databricks-sdk``; :func:`ragops.workspace.workspace_client` builds the
client with a short retry budget, because without a reachable workspace the SDK otherwise retries
for minutes. There is no Databricks workspace off Databricks: serve locally with ``ragops serve``.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from ragops.workspace import WorkspaceError, call

if TYPE_CHECKING:
    from ragops.serving.gateway.config import GatewayConfig
    from ragops.serving.gateway.databricks import TrafficShare

log = logging.getLogger("ragops.serving")

#: Default Model Serving endpoint name (the bundle variable ``serving_endpoint``).
DEFAULT_ENDPOINT = "ragops-rag-chain"
WORKLOAD_SIZES = ("Small", "Medium", "Large")
LOCAL_HINT = "To serve the chain locally instead, use `ragops serve`."


class DeployError(WorkspaceError):
    """Deployment failed or could not start; the message says what to do about it."""


class DeployTimeout(DeployError):
    """The endpoint did not become ready in time (the update goes on in the workspace)."""


@dataclass
class DeployResult:
    endpoint_name: str
    model_name: str
    version: str
    action: str  # created | updated | unchanged
    served_entity_name: str
    ready: str = ""
    config_update: str = ""
    config_version: int | None = None
    previous_versions: list[str] = field(default_factory=list)
    endpoint_url: str = ""
    waited_s: float = 0.0
    alias: str = ""
    # With a gateway config: every served entity's share, and what became of the AI Gateway
    # ("updated" | "unchanged"; "" when deploy did not manage it).
    traffic: list[dict[str, Any]] = field(default_factory=list)
    ai_gateway: str = ""
    gateway_route: str = ""
    gateway_notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --- client ----------------------------------------------------------------------------------


def _call(client, what: str, fn, *args, **kwargs):
    """One SDK call, its failures a :class:`DeployError` naming ``what`` (``NotFound`` passes through)."""
    return call(client, what, fn, *args, hint=LOCAL_HINT, error=DeployError, **kwargs)


# --- model version -----------------------------------------------------------------------------


def resolve_model_version(client, model_name: str, alias_or_version: str | int) -> str:
    """``"3"`` → ``"3"``; ``"champion"`` / ``"challenger"`` (any alias) → the version it points at.

    Aliases are looked up in the Unity Catalog registry (``model_versions.get_by_alias``), so
    ``model_name`` must be three-level (``catalog.schema.model``).
    """
    from databricks.sdk.errors import NotFound

    ref = str(alias_or_version).strip().removeprefix("@")
    if not ref:
        raise DeployError(f"no model version or alias given for {model_name}")
    if ref.isdigit():
        if int(ref) < 1:
            raise DeployError(f"model version must be >= 1, got {ref!r}")
        return str(int(ref))
    if not re.fullmatch(r"[A-Za-z_][\w-]*", ref):
        raise DeployError(f"{ref!r} is neither a model version number nor an alias name")
    if model_name.count(".") != 2:
        raise DeployError(
            f"alias {ref!r} can only be resolved for a Unity Catalog model (catalog.schema.model); "
            f"got {model_name!r}"
        )
    try:
        info = _call(client, f"resolving alias {ref!r} of {model_name}",
                     client.model_versions.get_by_alias, model_name, ref)
    except NotFound as exc:
        raise DeployError(
            f"model {model_name} has no alias {ref!r} (or the model does not exist): {exc}. "
            "Register the chain and run the evaluation gate first, or pass a version number."
        ) from exc
    if info.version is None:
        raise DeployError(f"alias {ref!r} of {model_name} did not return a version")
    status = getattr(info.status, "value", info.status)
    if status in ("FAILED_REGISTRATION", "PENDING_REGISTRATION"):
        raise DeployError(f"{model_name} version {info.version} (alias {ref!r}) is {status}; cannot serve it")
    log.info("%s@%s → version %s", model_name, ref, info.version)
    return str(info.version)


# --- endpoint ----------------------------------------------------------------------------------


def served_entity_name(model_name: str, version: str) -> str:
    """``main.ragops.rag_chain`` v3 → ``rag_chain-3`` (letters, digits, ``-``, ``_``; at most 63)."""
    base = re.sub(r"[^A-Za-z0-9_-]", "_", model_name.split(".")[-1]) or "model"
    suffix = f"-{version}"
    return base[: 63 - len(suffix)] + suffix


def _value(enum_or_str) -> str:
    return "" if enum_or_str is None else str(getattr(enum_or_str, "value", enum_or_str))


def _entities(config) -> list:
    return list(getattr(config, "served_entities", None) or []) if config is not None else []


def _versions(config, model_name: str) -> list[str]:
    return [str(e.entity_version) for e in _entities(config) if e.entity_name == model_name]


def _serves(config, wanted: Sequence[tuple[str, str, int]], workload_size: str, scale_to_zero: bool,
            environment_vars: Mapping[str, str] | None) -> bool:
    """True when ``config`` serves exactly the ``wanted`` (model name, version, traffic percentage)
    entities with these compute settings."""
    entities = _entities(config)
    if len(entities) != len(wanted):
        return False
    routes = getattr(getattr(config, "traffic_config", None), "routes", None) or []
    if not routes and len(wanted) > 1:
        return False  # without routes only a single entity gets (all) the traffic
    remaining = list(wanted)
    for e in entities:
        match = [w for w in remaining if (e.entity_name, str(e.entity_version)) == (w[0], str(w[1]))]
        if not match:
            return False
        remaining.remove(match[0])
        if e.workload_size and e.workload_size != workload_size:
            return False
        if e.scale_to_zero_enabled is not None and bool(e.scale_to_zero_enabled) != bool(scale_to_zero):
            return False
        if environment_vars is not None and dict(e.environment_vars or {}) != dict(environment_vars):
            return False
        if routes:
            target = [r for r in routes if (r.served_model_name or r.served_entity_name) == e.name]
            if not target or target[0].traffic_percentage != match[0][2]:
                return False
    return True


def _failure_detail(endpoint) -> str:
    msgs = []
    for cfg in (getattr(endpoint, "pending_config", None), getattr(endpoint, "config", None)):
        for e in _entities(cfg):
            st = getattr(e, "state", None)
            if st is not None and (st.deployment_state_message or st.deployment):
                msgs.append(f"{e.name}: {_value(st.deployment)} {st.deployment_state_message or ''}".strip())
    return "; ".join(dict.fromkeys(msgs))


def _state(endpoint) -> tuple[str, str]:
    state = getattr(endpoint, "state", None)
    return _value(getattr(state, "ready", None)), _value(getattr(state, "config_update", None))


def _get_endpoint(client, name: str):
    from databricks.sdk.errors import NotFound

    try:
        return _call(client, f"reading serving endpoint {name!r}", client.serving_endpoints.get, name)
    except NotFound:
        return None


def wait_until_ready(client, endpoint_name: str, *, deadline: float, poll_s: float,
                     fail_on_update_failure: bool = True, require_ready: bool = True, first=None,
                     timeout_s: float | None = None):
    """Poll until ``READY`` and no config update in progress. Raises on ``UPDATE_FAILED`` / timeout.

    ``require_ready=False`` only waits for a running config update to end (whatever its outcome);
    ``fail_on_update_failure=False`` accepts a ``READY`` endpoint whose last update failed (it still
    serves its previous config).
    """
    endpoint = first
    while True:
        if endpoint is None:
            endpoint = _get_endpoint(client, endpoint_name)
            if endpoint is None:
                raise DeployError(f"serving endpoint {endpoint_name!r} disappeared while waiting for it")
        ready, update = _state(endpoint)
        if update in ("UPDATE_FAILED", "UPDATE_CANCELED") and fail_on_update_failure:
            detail = _failure_detail(endpoint)
            raise DeployError(
                f"serving endpoint {endpoint_name!r}: config update {update}"
                + (f" — {detail}" if detail else "")
                + ". See the endpoint's Events and build logs in the Serving UI "
                  f"(`databricks serving-endpoints build-logs {endpoint_name} <served-entity>`)."
            )
        if update != "IN_PROGRESS" and (ready == "READY" or not require_ready):
            return endpoint
        if not fail_on_update_failure and update in ("UPDATE_FAILED", "UPDATE_CANCELED") and ready != "READY":
            raise DeployError(f"serving endpoint {endpoint_name!r} is {ready or 'not ready'} after a {update}")
        if time.monotonic() >= deadline:
            waited = f" after {timeout_s:g}s" if timeout_s is not None else ""
            raise DeployTimeout(
                f"serving endpoint {endpoint_name!r} is not ready{waited} (ready={ready or '?'}, "
                f"config_update={update or '?'}). The update goes on in the workspace; check the endpoint "
                "in the Serving UI, or re-run the deploy with a larger --timeout_s."
            )
        log.info("endpoint %s: ready=%s config_update=%s; waiting", endpoint_name, ready, update)
        time.sleep(max(0.0, min(poll_s, deadline - time.monotonic())))
        endpoint = None


def deploy_endpoint(
    client,
    endpoint_name: str,
    model_name: str,
    version: str | int,
    *,
    workload_size: str = "Small",
    scale_to_zero: bool = True,
    environment_vars: Mapping[str, str] | None = None,
    timeout_s: float = 1200,
    poll_s: float = 10.0,
    ai_gateway=None,
) -> DeployResult:
    """Make ``endpoint_name`` serve ``model_name`` version ``version`` (100 % traffic); wait until ready."""
    from ragops.serving.gateway.databricks import TrafficShare

    version = str(version)
    if not version.isdigit():
        raise DeployError(f"model version must be a number, got {version!r} (resolve aliases first)")
    share = TrafficShare(served_entity_name=served_entity_name(model_name, version), entity_name=model_name,
                         entity_version=version, traffic_percentage=100, targets=())
    return deploy_traffic(client, endpoint_name, [share], workload_size=workload_size, scale_to_zero=scale_to_zero,
                          environment_vars=environment_vars, timeout_s=timeout_s, poll_s=poll_s,
                          ai_gateway=ai_gateway)


def deploy_traffic(
    client,
    endpoint_name: str,
    shares: Sequence[TrafficShare],
    *,
    workload_size: str = "Small",
    scale_to_zero: bool = True,
    environment_vars: Mapping[str, str] | None = None,
    timeout_s: float = 1200,
    poll_s: float = 10.0,
    ai_gateway=None,
) -> DeployResult:
    """Make ``endpoint_name`` serve exactly ``shares`` (served entities and their traffic
    percentages, :func:`ragops.serving.gateway.databricks.traffic_routes`); wait until ready; then,
    when ``ai_gateway`` (an ``AiGatewayConfig``) is given and differs from the endpoint's, apply it
    with ``serving_endpoints.put_ai_gateway``. The result describes the largest share (its model
    and version) and lists every share in ``traffic``."""
    from databricks.sdk.service.serving import (
        EndpointCoreConfigInput,
        Route,
        ServedEntityInput,
        TrafficConfig,
    )

    if not re.fullmatch(r"[A-Za-z0-9_-]{1,63}", endpoint_name or ""):
        raise DeployError(f"invalid serving endpoint name {endpoint_name!r}: use letters, digits, '-' and '_'")
    if not shares:
        raise DeployError(f"nothing to serve on endpoint {endpoint_name!r}: no served entities")
    for share in shares:
        if not share.entity_version.isdigit():
            raise DeployError(f"model version must be a number, got {share.entity_version!r} (resolve aliases first)")
    if sum(s.traffic_percentage for s in shares) != 100:
        raise DeployError(f"traffic percentages of endpoint {endpoint_name!r} must sum to 100, got "
                          + " + ".join(str(s.traffic_percentage) for s in shares))
    if workload_size not in WORKLOAD_SIZES:
        raise DeployError(f"workload_size={workload_size!r} is not one of {', '.join(WORKLOAD_SIZES)}")
    started = time.monotonic()
    deadline = started + float(timeout_s)
    main = max(shares, key=lambda s: s.traffic_percentage)  # max() keeps the first of equal shares
    model_name, version = main.entity_name, main.entity_version
    entities = [ServedEntityInput(
        name=share.served_entity_name,
        entity_name=share.entity_name,
        entity_version=share.entity_version,
        workload_size=workload_size,
        scale_to_zero_enabled=bool(scale_to_zero),
        environment_vars=dict(environment_vars) if environment_vars is not None else None,
    ) for share in shares]
    traffic = TrafficConfig(routes=[Route(served_model_name=share.served_entity_name,
                                          traffic_percentage=share.traffic_percentage) for share in shares])
    wanted = ([(s.entity_name, s.entity_version, s.traffic_percentage) for s in shares], workload_size,
              bool(scale_to_zero), environment_vars)
    served_models = sorted({s.entity_name for s in shares})

    def versions(config) -> list[str]:
        return [v for name in served_models for v in _versions(config, name)]

    def wait(first=None, fail=True, require_ready=True):
        return wait_until_ready(client, endpoint_name, deadline=deadline, poll_s=poll_s,
                                fail_on_update_failure=fail, require_ready=require_ready, first=first,
                                timeout_s=timeout_s)

    what = ", ".join(f"{s.entity_name} v{s.entity_version} {s.traffic_percentage}%" for s in shares)
    endpoint = _get_endpoint(client, endpoint_name)
    previous: list[str] = []
    if endpoint is None:
        log.info("creating serving endpoint %s → %s", endpoint_name, what)
        op = _call(client, f"creating serving endpoint {endpoint_name!r}", client.serving_endpoints.create,
                   endpoint_name,
                   config=EndpointCoreConfigInput(name=endpoint_name, served_entities=entities,
                                                  traffic_config=traffic))
        action, final = "created", wait(op.response)
    else:
        previous = versions(endpoint.config)
        ready, update = _state(endpoint)
        if update == "IN_PROGRESS" and _serves(endpoint.pending_config, *wanted):
            log.info("endpoint %s is already updating to %s; waiting", endpoint_name, what)
            action, final = "unchanged", wait(endpoint)
        else:
            if update == "IN_PROGRESS":  # another update is running; it must finish before ours
                log.info("endpoint %s has another config update in progress; waiting for it", endpoint_name)
                endpoint = wait(endpoint, fail=False, require_ready=False)
                previous = versions(endpoint.config)
            if _serves(endpoint.config, *wanted):
                log.info("endpoint %s already serves %s", endpoint_name, what)
                action, final = "unchanged", wait(endpoint, fail=False)
            else:
                log.info("updating serving endpoint %s: %s v%s → %s", endpoint_name, model_name,
                         ",".join(previous) or "-", what)
                op = _call(client, f"updating serving endpoint {endpoint_name!r}",
                           client.serving_endpoints.update_config, endpoint_name,
                           served_entities=entities, traffic_config=traffic)
                action, final = "updated", wait(op.response)
    if not _serves(final.config, *wanted):
        raise DeployError(
            f"serving endpoint {endpoint_name!r} finished updating but serves "
            f"{', '.join(versions(final.config)) or 'no version'} of {', '.join(served_models)}, not {what} "
            "(was it updated concurrently?)"
        )
    gateway_action = "" if ai_gateway is None else _apply_ai_gateway(client, endpoint_name, final, ai_gateway)
    ready, update = _state(final)
    host = (getattr(getattr(client, "config", None), "host", "") or "").rstrip("/")
    return DeployResult(
        endpoint_name=endpoint_name,
        model_name=model_name,
        version=version,
        action=action,
        served_entity_name=main.served_entity_name,
        ready=ready,
        config_update=update,
        config_version=getattr(final.config, "config_version", None),
        previous_versions=previous,
        endpoint_url=f"{host}/serving-endpoints/{endpoint_name}/invocations" if host else "",
        waited_s=round(time.monotonic() - started, 3),
        traffic=[s.to_dict() for s in shares] if len(shares) > 1 or shares[0].targets else [],
        ai_gateway=gateway_action,
    )


#: The AI Gateway parts deploy manages (guardrails come with the guardrails issue).
_MANAGED_GATEWAY_FIELDS = ("inference_table_config", "usage_tracking_config", "rate_limits", "fallback_config")


def _gateway_view(gateway) -> dict[str, Any]:
    """The managed part of an AiGatewayConfig, comparable across what we send and what GET returns."""
    body = gateway.as_dict() if gateway is not None else {}
    view = {k: body.get(k) for k in _MANAGED_GATEWAY_FIELDS}
    view["rate_limits"] = sorted(view["rate_limits"] or [], key=lambda r: json.dumps(r, sort_keys=True))
    if not (view["fallback_config"] or {}).get("enabled"):
        view["fallback_config"] = None
    return view


def _apply_ai_gateway(client, endpoint_name: str, endpoint, wanted) -> str:
    """``put_ai_gateway`` when the endpoint's AI Gateway differs from ``wanted``: "updated" / "unchanged"."""
    if _gateway_view(getattr(endpoint, "ai_gateway", None)) == _gateway_view(wanted):
        log.info("endpoint %s: AI Gateway settings unchanged", endpoint_name)
        return "unchanged"
    what = f"updating the AI Gateway of serving endpoint {endpoint_name!r}"
    current_table = getattr(getattr(endpoint, "ai_gateway", None), "inference_table_config", None)
    wanted_table = wanted.inference_table_config
    if _moves_inference_table(current_table, wanted_table):
        # Databricks only lets an inference table change catalog, schema or prefix while it is
        # disabled: turn it off first (the old table stays; the new one starts empty).
        from databricks.sdk.service.serving import AiGatewayInferenceTableConfig

        log.info("endpoint %s: moving the inference table %s.%s.%s* → %s.%s.%s*", endpoint_name,
                 current_table.catalog_name, current_table.schema_name, current_table.table_name_prefix,
                 wanted_table.catalog_name, wanted_table.schema_name, wanted_table.table_name_prefix)
        _call(client, what, client.serving_endpoints.put_ai_gateway, endpoint_name,
              inference_table_config=AiGatewayInferenceTableConfig(enabled=False),
              usage_tracking_config=wanted.usage_tracking_config,
              rate_limits=list(wanted.rate_limits or []),
              fallback_config=wanted.fallback_config,
              guardrails=wanted.guardrails)
    log.info("endpoint %s: applying AI Gateway settings (%d rate limits)", endpoint_name,
             len(wanted.rate_limits or []))
    _call(client, what, client.serving_endpoints.put_ai_gateway, endpoint_name,
          inference_table_config=wanted_table,
          usage_tracking_config=wanted.usage_tracking_config,
          rate_limits=list(wanted.rate_limits or []),  # [] clears limits set before: the config owns them
          fallback_config=wanted.fallback_config,
          guardrails=wanted.guardrails)
    return "updated"


def _moves_inference_table(current, wanted) -> bool:
    """True when an enabled inference table would change place (catalog, schema or prefix)."""
    if current is None or wanted is None or not current.enabled or not wanted.enabled:
        return False
    def place(table):
        return table.catalog_name, table.schema_name, table.table_name_prefix
    return place(current) != place(wanted)


def deploy(
    client,
    *,
    model_name: str,
    alias_or_version: str = "champion",
    endpoint_name: str = DEFAULT_ENDPOINT,
    gateway_config: GatewayConfig | None = None,
    gateway_route: str | None = None,
    inference_table_prefix: str = "rag_chain_endpoint",
    **kwargs: Any,
) -> DeployResult:
    """Resolve ``alias_or_version`` and deploy it (what the ``ragops-deploy`` job task does).

    With ``gateway_config`` (:func:`ragops.serving.gateway.config.load_gateway_config`) the route
    ``gateway_route`` (default: the config's first) decides what is served instead of
    ``alias_or_version``: its targets' aliases are resolved and split by weight across served
    entities, and the endpoint's AI Gateway (rate limits, usage tracking, the inference table in the
    catalog and schema of ``model_name``) is generated from the same config and applied. What the
    endpoint cannot express (shadow, sticky, ...) is logged and returned in ``gateway_notes``.
    """
    if gateway_config is None:
        version = resolve_model_version(client, model_name, alias_or_version)
        result = deploy_endpoint(client, endpoint_name, model_name, version, **kwargs)
        result.alias = "" if str(alias_or_version).isdigit() else str(alias_or_version)
        return result

    from ragops.serving.gateway.config import GatewayConfigError
    from ragops.serving.gateway.databricks import (
        ai_gateway_settings,
        not_expressible,
        route_for,
        traffic_routes,
    )

    if model_name.count(".") != 2:
        raise DeployError(f"model_name must be a Unity Catalog name (catalog.schema.model), got {model_name!r}")
    catalog, schema, _ = model_name.split(".")
    try:
        route = route_for(gateway_config, gateway_route)
        shares = traffic_routes(route, lambda name, ref: resolve_model_version(client, name, ref),
                                model_name=model_name)
        gateway = ai_gateway_settings(gateway_config, catalog=catalog, schema=schema,
                                      table_name_prefix=inference_table_prefix, route=route.name)
    except GatewayConfigError as exc:
        raise DeployError(f"cannot deploy the gateway config to {endpoint_name!r}: {exc}") from exc
    notes = not_expressible(gateway_config, route.name)
    for note in notes:
        log.warning("endpoint %s: %s", endpoint_name, note)
    result = deploy_traffic(client, endpoint_name, shares, ai_gateway=gateway, **kwargs)
    result.alias = ",".join(_alias(t.model) for t in route.targets if _alias(t.model))
    result.gateway_route = route.name
    result.gateway_notes = notes
    return result


def _alias(model_uri: str | None) -> str:
    """``models:/rag_chain@champion`` → ``champion`` (a version URI has none)."""
    return model_uri.rpartition("@")[2] if model_uri and "@" in model_uri else ""
