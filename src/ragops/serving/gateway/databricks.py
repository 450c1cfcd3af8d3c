"""The gateway's route config → a Databricks Model Serving endpoint's AI Gateway and traffic split.

On Databricks the serving endpoint is the gateway: the same YAML that configures ``ragops
gateway`` (:mod:`ragops.serving.gateway.config`) generates what the endpoint can express, and
:func:`ragops.serving.deploy.deploy` applies it with databricks-sdk:

* **traffic split** (:func:`traffic_routes`): the route's targets become served entities (one per
  distinct model version; aliases resolved to versions, two aliases on one version merge) with
  integer traffic percentages that sum to 100 (largest remainder of the weights);
* **rate limits** (:func:`ai_gateway_settings`): each key's ``requests_per_minute`` /
  ``tokens_per_minute`` become per-minute limits for the Databricks principal the key stands for
  (``databricks_principal`` + ``databricks_principal_type`` in the key's config);
* **usage tracking** (system tables) and the **inference table** (the endpoint's payload log in
  ``<catalog>.<schema>.<prefix>_payload``, the Databricks counterpart of the gateway's
  ``inference_log``);
* **guardrails**: none yet (the guardrails issue fills them in).

What the endpoint cannot express is listed by :func:`not_expressible` (and logged at deploy): a
shadow target, sticky users/sessions, a fallback (AI Gateway fallbacks are not offered for custom
model endpoints; ``traffic_fallback=True`` asks for it anyway), limits of a key that names no
principal, document access groups, the body-size limit. Upstream targets cannot be served entities
and are an error.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ragops.serving.gateway.config import MODEL_URI, GatewayConfig, GatewayConfigError, RouteConfig, Target

log = logging.getLogger("ragops.serving.gateway")

#: Databricks' caps on one endpoint's AI Gateway rate limits.
MAX_RATE_LIMITS = 20
MAX_GROUP_RATE_LIMITS = 5
DEFAULT_TABLE_PREFIX = "rag_chain_endpoint"


@dataclass(frozen=True)
class TrafficShare:
    """One served entity of the endpoint and its share of the traffic."""

    served_entity_name: str        # rag_chain-3
    entity_name: str               # main.ragops.rag_chain
    entity_version: str            # "3"
    traffic_percentage: int        # 0..100; the shares of an endpoint sum to 100
    targets: tuple[str, ...]       # the gateway targets it serves (two aliases on one version: both)

    def to_dict(self) -> dict[str, Any]:
        return {"served_entity_name": self.served_entity_name, "entity_name": self.entity_name,
                "entity_version": self.entity_version, "traffic_percentage": self.traffic_percentage,
                "targets": list(self.targets)}


def route_for(config: GatewayConfig, route: str | None = None) -> RouteConfig:
    """The route one endpoint serves: ``route``, or the config's default route."""
    name = route or config.default_route
    if name not in config.routes:
        raise GatewayConfigError(config.source or "gateway config",
                                 [("routes", f"no route {name!r} to deploy (routes: {', '.join(config.routes)})")])
    return config.routes[name]


def unity_catalog_name(name: str, model_name: str) -> str:
    """A target's model name in Unity Catalog: three-level names as they are; a bare name
    (``rag_chain``, the local registry's) in the catalog and schema of ``model_name``."""
    if name.count(".") == 2:
        return name
    catalog_schema = model_name.rsplit(".", 1)[0] if model_name.count(".") == 2 else ""
    if not catalog_schema:
        raise GatewayConfigError("gateway config", [(
            "model_name", f"{model_name!r} is not a Unity Catalog name (catalog.schema.model); cannot place "
                          f"target model {name!r}")])
    return f"{catalog_schema}.{name}"


def percentages(weights: list[float]) -> list[int]:
    """Integer percentages proportional to ``weights`` that sum to exactly 100 (largest remainder;
    ties go to the earlier target, so the result is stable)."""
    total = sum(weights)
    exact = [100.0 * w / total for w in weights]
    shares = [math.floor(x) for x in exact]
    by_remainder = sorted(range(len(weights)), key=lambda i: (-(exact[i] - shares[i]), i))
    for i in by_remainder[: 100 - sum(shares)]:
        shares[i] += 1
    return shares


def traffic_routes(route: RouteConfig, resolve_version: Callable[[str, str], str], *,
                   model_name: str) -> list[TrafficShare]:
    """The endpoint's served entities and traffic percentages for ``route``.

    ``resolve_version(uc_model_name, alias_or_version)`` turns ``champion`` into ``"3"`` (deploy
    passes :func:`ragops.serving.deploy.resolve_model_version`); ``model_name`` is the chain's Unity
    Catalog name, whose catalog and schema bare model names in the route go to.
    """
    from ragops.serving.deploy import served_entity_name

    merged: dict[tuple[str, str], tuple[float, list[str]]] = {}
    for index, target in enumerate(route.targets):
        entity, ref = _model_ref(route, index, target, model_name)
        version = str(resolve_version(entity, ref))
        weight, names = merged.get((entity, version), (0.0, []))
        merged[(entity, version)] = (weight + target.weight, [*names, target.name])
    shares = percentages([weight for weight, _ in merged.values()])
    out = [TrafficShare(served_entity_name=served_entity_name(entity, version), entity_name=entity,
                        entity_version=version, traffic_percentage=pct, targets=tuple(names))
           for ((entity, version), (_, names)), pct in zip(merged.items(), shares, strict=True)]
    for share in out:
        if share.traffic_percentage == 0:
            log.warning("route %s: target %s gets 0 %% of the endpoint's traffic (its weight rounds to 0 %%)",
                        route.name, "/".join(share.targets))
    return out


def _model_ref(route: RouteConfig, index: int, target: Target, model_name: str) -> tuple[str, str]:
    at = f"routes[{route.name}].targets[{index}]"
    if target.model is None:
        raise GatewayConfigError("gateway config", [(
            f"{at}.upstream", f"target {target.name!r} forwards to {target.upstream}; a Databricks serving "
                              "endpoint can only serve registered models (use models:/name@alias)")])
    match = MODEL_URI.fullmatch(target.model)
    if match is None:
        raise GatewayConfigError("gateway config", [(f"{at}.model", f"not a models:/ URI: {target.model!r}")])
    return unity_catalog_name(match["name"], model_name), match["alias"] or match["version"]


def ai_gateway_settings(config: GatewayConfig, *, catalog: str, schema: str,
                        table_name_prefix: str = DEFAULT_TABLE_PREFIX, inference_table: bool = True,
                        usage_tracking: bool = True, route: str | None = None,
                        traffic_fallback: bool = False, token_limits: bool = True):
    """The endpoint's :class:`~databricks.sdk.service.serving.AiGatewayConfig` from the gateway config.

    ``catalog`` / ``schema`` / ``table_name_prefix`` place the inference table; ``route`` is the
    route the endpoint serves (default: the first). ``traffic_fallback`` turns on AI Gateway's
    fallback when the route has a fallback (only where the workspace offers it for the endpoint);
    ``token_limits=False`` leaves tokens-per-minute limits out, for endpoints that only take
    request limits. Raises :class:`GatewayConfigError` past Databricks' rate-limit caps.
    """
    from databricks.sdk.service.serving import (
        AiGatewayConfig,
        AiGatewayInferenceTableConfig,
        AiGatewayRateLimit,
        AiGatewayRateLimitKey,
        AiGatewayRateLimitRenewalPeriod,
        AiGatewayUsageTrackingConfig,
        FallbackConfig,
    )

    served = route_for(config, route)
    limits: list[AiGatewayRateLimit] = []
    group_limited = 0
    for key in config.keys:
        if not key.databricks_principal:
            continue
        kind = AiGatewayRateLimitKey(key.databricks_principal_type)
        per_minute = [("calls", key.requests_per_minute)]
        if token_limits:
            per_minute.append(("tokens", key.tokens_per_minute))
        # One limit per quantity: Databricks applies whichever of the two is stricter.
        for field_name, value in per_minute:
            if value is None:
                continue
            limits.append(AiGatewayRateLimit(renewal_period=AiGatewayRateLimitRenewalPeriod.MINUTE, key=kind,
                                             principal=key.databricks_principal, **{field_name: int(value)}))
            group_limited += kind is AiGatewayRateLimitKey.USER_GROUP
    problems = []
    if len(limits) > MAX_RATE_LIMITS:
        problems.append(("keys", f"{len(limits)} Databricks rate limits; an endpoint takes at most {MAX_RATE_LIMITS}"))
    if group_limited > MAX_GROUP_RATE_LIMITS:
        problems.append(("keys", f"{group_limited} user_group rate limits; an endpoint takes at most "
                                 f"{MAX_GROUP_RATE_LIMITS}"))
    if problems:
        raise GatewayConfigError(config.source or "gateway config", problems)
    return AiGatewayConfig(
        inference_table_config=AiGatewayInferenceTableConfig(
            enabled=True, catalog_name=catalog, schema_name=schema, table_name_prefix=table_name_prefix)
        if inference_table else None,
        usage_tracking_config=AiGatewayUsageTrackingConfig(enabled=True) if usage_tracking else None,
        rate_limits=limits,
        fallback_config=FallbackConfig(enabled=True) if traffic_fallback and served.fallback else None,
        guardrails=None,  # the guardrails issue fills this in
    )


def not_expressible(config: GatewayConfig, route: str | None = None, *, traffic_fallback: bool = False) -> list[str]:
    """What of the gateway config a Databricks endpoint does not enforce (one sentence each)."""
    served = route_for(config, route)
    notes = []
    if served.shadow is not None:
        notes.append(f"route {served.name}: shadow target {served.shadow.name!r} is not deployed "
                     "(serving endpoints have no shadow traffic)")
    if served.sticky != "none":
        notes.append(f"route {served.name}: sticky: {served.sticky} is not expressible; the endpoint splits "
                     "traffic per request")
    if served.fallback and not traffic_fallback:
        notes.append(f"route {served.name}: fallback {served.fallback!r} is not applied (AI Gateway fallbacks "
                     "are not offered for custom model endpoints)")
    for name in config.routes:
        if name != served.name:
            notes.append(f"route {name}: not deployed (one endpoint serves one route)")
    for key in config.keys:
        limited = key.requests_per_minute is not None or key.tokens_per_minute is not None
        if limited and not key.databricks_principal:
            notes.append(f"key {key.name}: its limits have no Databricks principal (set databricks_principal)")
        if key.groups:
            notes.append(f"key {key.name}: document access groups are not passed by the endpoint")
    return notes


__all__ = ["TrafficShare", "ai_gateway_settings", "not_expressible", "percentages", "route_for",
           "traffic_routes", "unity_catalog_name"]
