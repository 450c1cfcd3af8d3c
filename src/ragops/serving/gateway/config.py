"""The gateway's configuration: routes (weighted targets, sticky, shadow, fallback), API keys and limits.

One YAML file, changed without code and reloaded on SIGHUP (:func:`ragops.serving.gateway.routing.
install_reload_on_sighup`). A full example::

    max_body_bytes: 1048576            # request bodies over this → 413 (default 1 MiB)
    keys:
      # The key itself: `key: env:VAR` reads it from the environment (recommended); a literal
      # `key: sk-...` works but is warned about (it would sit in the file in clear).
      - {name: alice, key: "env:ALICE_KEY", groups: [eng], requests_per_minute: 60, tokens_per_minute: 20000}
      # Or only its digest: `sha256: <64 hex digits>` (echo -n "$KEY" | sha256sum).
      - {name: bob, sha256: "<hex>", groups: []}
      # On Databricks the key's limits become AI Gateway rate limits for the principal it stands for
      # (databricks_principal_type: user | user_group | service_principal; default user).
      - {name: ci, key: "env:CI_KEY", requests_per_minute: 10,
         databricks_principal: "ci-bot@example.com", databricks_principal_type: user}
    routes:
      - name: rag_chain                # what clients send as "model"; the first route is the default
        timeout_s: 120                 # a model call past this → 504
        sticky: user                   # none | user | session (the same user/session keeps its target)
        targets:                       # weighted split; weights need not sum to 100
          - {name: champion, model: "models:/rag_chain@champion", weight: 90}
          - {name: challenger, model: "models:/rag_chain@challenger", weight: 10}
        shadow: {name: candidate, model: "models:/rag_chain/7"}   # answers too, never returned
        fallback: champion             # answers when the chosen target fails
        guardrails:                    # absent: the default policy (ragops.guardrails.policy)
          injection: {threshold: 0.5}  # block prompt injection / jailbreaks (false: off)
          pii: {redact_before_model: false, redact_answer: false}   # always redacted in the log
          topics: [bitcoin]            # block questions naming these words
          grounded: {min_score: 0.5}   # refuse answers the context does not support
      - name: remote
        targets: [{name: upstream, upstream: "http://127.0.0.1:5050/invocations", kind: mlflow}]

A target is either in-process (``model: models:/<name>@<alias>`` or ``models:/<name>/<version>``) or
an upstream server (``upstream: <http(s) URL>`` with ``kind: openai | mlflow | databricks``, default
openai); exactly one of the two. ``weight`` defaults to 100.

Without a file (``load_gateway_config(None, settings)``) the gateway has one route, ``rag_chain``, to
``models:/<settings.registered_model_name>@champion``; a file without ``routes:`` gets the same route
(a file that only declares keys). Keys also come from ``RAGOPS_API_KEYS="name1:key1,name2:key2"``
(no groups, no limits), merged with the file's. Keys are kept only as sha256 hex digests.

Validation is strict, because a typo in a routing file should fail the (re)load rather than route
traffic somewhere unexpected: unknown fields are errors too. Every problem is reported at once in a
:class:`GatewayConfigError` naming the file and the field path, e.g.
``gateway.yml: routes[0].targets[1].weight: must be > 0``.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragops.errors import RagopsError

if TYPE_CHECKING:
    from ragops.config import Settings

log = logging.getLogger("ragops.serving.gateway")

STICKY_MODES = ("none", "user", "session")
UPSTREAM_KINDS = ("openai", "mlflow", "databricks")
PRINCIPAL_TYPES = ("user", "user_group", "service_principal")
DEFAULT_ROUTE = "rag_chain"
DEFAULT_MAX_BODY_BYTES = 1 << 20
KEYS_ENV = "RAGOPS_API_KEYS"
#: What errors name as the source when there is no config file (only RAGOPS_API_KEYS can be wrong).
NO_FILE = "gateway config (no file)"
#: ``models:/name@alias`` or ``models:/name/3`` (name may be three-level: catalog.schema.model).
MODEL_URI = re.compile(r"models:/(?P<name>[A-Za-z0-9_.\-]+)(?:@(?P<alias>[A-Za-z_][\w-]*)|/(?P<version>\d+))")
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")

_TOP_FIELDS = {"max_body_bytes", "keys", "routes"}
_ROUTE_FIELDS = {"name", "targets", "sticky", "shadow", "fallback", "timeout_s", "guardrails"}
_TARGET_FIELDS = {"name", "model", "upstream", "kind", "weight"}
_KEY_FIELDS = {"name", "key", "sha256", "groups", "requests_per_minute", "tokens_per_minute",
               "databricks_principal", "databricks_principal_type"}


class GatewayConfigError(RagopsError, ValueError):
    """The gateway config has bad fields; the message names the file and each field path."""

    def __init__(self, source: str, problems: list[tuple[str, str]]) -> None:
        self.source, self.problems = source, list(problems)
        if len(problems) == 1:
            field_path, problem = problems[0]
            message = f"{source}: {field_path}: {problem}"
        else:
            message = f"{source}: {len(problems)} problems:\n" + "\n".join(
                f"  {field_path}: {problem}" for field_path, problem in problems)
        super().__init__(message)


@dataclass(frozen=True)
class Target:
    name: str                      # label shown in logs/metrics: "champion", "challenger", "remote"
    model: str | None = None       # "models:/rag_chain@champion", "models:/rag_chain/3" (in-process)
    upstream: str | None = None    # URL of an upstream server (exactly one of model / upstream)
    kind: str = "openai"           # upstream protocol: openai | mlflow | databricks
    weight: float = 100.0


@dataclass(frozen=True)
class RouteConfig:
    name: str                      # what clients send as "model"
    targets: tuple[Target, ...]    # weighted split (weights need not sum to 100)
    sticky: str = "none"           # none | user | session: the same user/session keeps its target
    shadow: Target | None = None   # answers too; logged with shadow=True; never returned
    fallback: str | None = None    # name of the target that answers when the chosen one fails
    timeout_s: float = 120.0       # a model call past this → 504
    # ragops.guardrails.policy.GuardrailPolicy from the route's `guardrails:` block; None: the default policy
    guardrails: Any = None

    def target(self, name: str) -> Target | None:
        """The target called ``name`` (the shadow included), or None."""
        for t in (*self.targets, *((self.shadow,) if self.shadow else ())):
            if t.name == name:
                return t
        return None


@dataclass(frozen=True)
class KeyConfig:
    name: str                      # logs and limits are per key name; the key itself is never logged
    sha256: str                    # hex digest of the key (keys are stored hashed)
    groups: tuple[str, ...] = ()   # document access control groups
    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None
    # On Databricks: the user / group / service principal this key stands for, so its limits can
    # become AI Gateway rate limits (ragops.serving.gateway.databricks). Unused by the local gateway.
    databricks_principal: str | None = None
    databricks_principal_type: str = "user"


@dataclass(frozen=True)
class GatewayConfig:
    routes: dict[str, RouteConfig]
    keys: tuple[KeyConfig, ...]
    default_route: str             # first route
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    source: str | None = None      # the YAML path, for /ready and logs


def key_digest(key: str) -> str:
    """The sha256 hex digest under which a key is stored and compared."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def default_route(settings: Settings) -> RouteConfig:
    """The route served without a config: ``rag_chain`` → the registered chain's ``@champion``."""
    return RouteConfig(name=DEFAULT_ROUTE,
                       targets=(Target(name="champion", model=f"models:/{settings.registered_model_name}@champion"),))


def load_gateway_config(path: str | Path | None, settings: Settings, *,
                        environ: Mapping[str, str] | None = None) -> GatewayConfig:
    """Read and validate the gateway config at ``path`` (None or "": the default route), plus the keys in
    ``RAGOPS_API_KEYS``. ``environ`` (default ``os.environ``) is where ``env:VAR`` keys and
    ``RAGOPS_API_KEYS`` are looked up. Raises :class:`GatewayConfigError` naming every bad field."""
    env = os.environ if environ is None else environ
    if path is not None and not str(path).strip():
        path = None  # an empty job parameter / --config "" means "no file", as for every setting
    source = str(path) if path is not None else NO_FILE
    raw: Any = {}
    if path is not None:
        raw = _read_yaml(Path(path))
    parser = _Parser(source, env)
    config = parser.config(raw, settings)
    if parser.problems:
        raise GatewayConfigError(source, parser.problems)
    return config


def _read_yaml(path: Path) -> Any:
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise GatewayConfigError(str(path), [("(file)", "does not exist")]) from None
    except OSError as exc:
        raise GatewayConfigError(str(path), [("(file)", f"cannot be read: {exc}")]) from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else "(file)"
        raise GatewayConfigError(str(path), [(where, f"not valid YAML: {getattr(exc, 'problem', exc)}")]) from exc
    return {} if data is None else data


class _Parser:
    """Turns the YAML mapping into the frozen config, collecting (field path, problem) pairs."""

    def __init__(self, source: str, environ: Mapping[str, str]) -> None:
        self.source, self.environ = source, environ
        self.problems: list[tuple[str, str]] = []

    def bad(self, field_path: str, problem: str) -> None:
        self.problems.append((field_path, problem))

    # --- generic fields ----------------------------------------------------------------------
    def mapping(self, value: Any, field_path: str, allowed: set[str]) -> dict | None:
        if not isinstance(value, dict):
            self.bad(field_path, f"must be a mapping, got {_kind(value)}")
            return None
        for unknown in sorted(set(map(str, value)) - allowed):
            self.bad(f"{field_path}.{unknown}" if field_path != "(top level)" else unknown,
                     f"unknown field (expected one of {', '.join(sorted(allowed))})")
        return value

    def name(self, value: Any, field_path: str) -> str | None:
        if not isinstance(value, str) or not value.strip():
            self.bad(field_path, "must be a non-empty string" if value is not None else "is required")
            return None
        if value != value.strip() or any(c.isspace() for c in value):
            self.bad(field_path, f"must not contain spaces, got {value!r}")
            return None
        return value

    def number(self, value: Any, field_path: str, *, integer: bool = False) -> float | int | None:
        """A number > 0 (bools are not numbers here: ``weight: yes`` is a mistake)."""
        ok = isinstance(value, int) if integer else isinstance(value, (int, float))
        if isinstance(value, bool) or not ok:
            self.bad(field_path, f"must be {'an integer' if integer else 'a number'}, got {value!r}")
            return None
        if not math.isfinite(value) or value <= 0:
            self.bad(field_path, "must be > 0")
            return None
        return value

    def optional_limit(self, value: Any, field_path: str) -> int | None:
        return None if value is None else self.number(value, field_path, integer=True)

    def choice(self, value: Any, field_path: str, options: tuple[str, ...]) -> str | None:
        if value not in options:
            self.bad(field_path, f"must be one of {' | '.join(options)}, got {value!r}")
            return None
        return value

    def unique(self, names: list[tuple[str | None, str]], what: str) -> None:
        seen: dict[str, str] = {}
        for name, field_path in names:
            if not isinstance(name, str):  # a missing or non-string name is reported on its own
                continue
            if name in seen:
                self.bad(field_path, f"duplicate {what} name {name!r} (also at {seen[name]})")
            else:
                seen[name] = field_path

    # --- the config ----------------------------------------------------------------------------
    def config(self, raw: Any, settings: Settings) -> GatewayConfig:
        top = self.mapping(raw, "(top level)", _TOP_FIELDS)
        if top is None:
            return GatewayConfig(routes={}, keys=(), default_route="")
        max_body = top.get("max_body_bytes", DEFAULT_MAX_BODY_BYTES)
        max_body = self.number(max_body, "max_body_bytes", integer=True) or DEFAULT_MAX_BODY_BYTES
        routes = self.routes(top["routes"], settings) if "routes" in top else [default_route(settings)]
        keys = self.keys(top.get("keys"))
        by_name = {r.name: r for r in routes}
        return GatewayConfig(routes=by_name, keys=tuple(keys), default_route=routes[0].name if routes else "",
                             max_body_bytes=int(max_body),
                             source=None if self.source == NO_FILE else self.source)

    def routes(self, raw: Any, settings: Settings) -> list[RouteConfig]:
        if not isinstance(raw, list) or not raw:
            self.bad("routes", "must be a non-empty list of routes (leave `routes:` out for the default "
                     f"route {DEFAULT_ROUTE!r})")
            return []
        routes = [r for i, item in enumerate(raw) if (r := self.route(item, f"routes[{i}]")) is not None]
        self.unique([(item.get("name") if isinstance(item, dict) else None, f"routes[{i}].name")
                     for i, item in enumerate(raw)], "route")
        return routes

    def route(self, raw: Any, at: str) -> RouteConfig | None:
        before = len(self.problems)
        item = self.mapping(raw, at, _ROUTE_FIELDS)
        if item is None:
            return None
        name = self.name(item.get("name"), f"{at}.name")
        targets: list[Target] = []
        raw_targets = item.get("targets")
        if not isinstance(raw_targets, list) or not raw_targets:
            self.bad(f"{at}.targets", "must be a non-empty list of targets" if raw_targets is not None
                     else "is required (a non-empty list of targets)")
        else:
            targets = [t for j, x in enumerate(raw_targets) if (t := self.target(x, f"{at}.targets[{j}]"))]
        shadow = None
        if item.get("shadow") is not None:
            shadow = self.target(item["shadow"], f"{at}.shadow", shadow=True)
        names = [(x.get("name") if isinstance(x, dict) else None, f"{at}.targets[{j}].name")
                 for j, x in enumerate(raw_targets if isinstance(raw_targets, list) else [])]
        if shadow is not None:
            names.append((shadow.name, f"{at}.shadow.name"))
        self.unique(names, "target")
        sticky = self.choice(item.get("sticky", "none"), f"{at}.sticky", STICKY_MODES)
        fallback = item.get("fallback")
        if fallback is not None:
            target_names = [t.name for t in targets]
            if not isinstance(fallback, str) or fallback not in target_names:
                self.bad(f"{at}.fallback", f"must name one of the route's targets ({', '.join(target_names)}), "
                         f"got {fallback!r}")
        timeout = self.number(item.get("timeout_s", 120.0), f"{at}.timeout_s")
        guardrails = None
        if "guardrails" in item:  # imported only then: a config without guardrails needs none of it
            from ragops.guardrails.policy import parse_policy

            guardrails, problems = parse_policy(item["guardrails"], f"{at}.guardrails")
            self.problems.extend(problems)
        if len(self.problems) > before or name is None:
            return None
        return RouteConfig(name=name, targets=tuple(targets), sticky=sticky or "none", shadow=shadow,
                           fallback=fallback, timeout_s=float(timeout or 120.0), guardrails=guardrails)

    def target(self, raw: Any, at: str, *, shadow: bool = False) -> Target | None:
        before = len(self.problems)
        item = self.mapping(raw, at, _TARGET_FIELDS - {"weight"} if shadow else _TARGET_FIELDS)
        if item is None:
            return None
        name = self.name(item.get("name"), f"{at}.name")
        model, upstream = item.get("model"), item.get("upstream")
        if (model is None) == (upstream is None):
            self.bad(at, "needs exactly one of `model` (models:/name@alias or models:/name/version) or "
                     "`upstream` (a URL)" + (", not both" if model is not None else ""))
        if model is not None and (not isinstance(model, str) or not MODEL_URI.fullmatch(model)):
            self.bad(f"{at}.model", f"must be models:/<name>@<alias> or models:/<name>/<version>, got {model!r}")
        if upstream is not None and (not isinstance(upstream, str)
                                     or not re.fullmatch(r"https?://[^\s/]+(/\S*)?", upstream)):
            self.bad(f"{at}.upstream", f"must be an http:// or https:// URL, got {upstream!r}")
        kind = "openai"
        if "kind" in item:
            if model is not None:
                self.bad(f"{at}.kind", "applies to upstream targets only (a model target runs in-process)")
            else:
                kind = self.choice(item["kind"], f"{at}.kind", UPSTREAM_KINDS) or "openai"
        weight = 100.0 if shadow else self.number(item.get("weight", 100.0), f"{at}.weight")
        if len(self.problems) > before or name is None:
            return None
        return Target(name=name, model=model, upstream=upstream, kind=kind, weight=float(weight or 100.0))

    # --- keys ----------------------------------------------------------------------------------
    def keys(self, raw: Any) -> list[KeyConfig]:
        keys: list[tuple[KeyConfig, str]] = []
        if raw is not None:
            if not isinstance(raw, list):
                self.bad("keys", f"must be a list of keys, got {_kind(raw)}")
            else:
                keys += [(k, f"keys[{i}]") for i, x in enumerate(raw) if (k := self.key(x, f"keys[{i}]"))]
        keys += self.env_keys()
        self.unique([(k.name, f"{at}.name") for k, at in keys], "key")
        # Two names for one secret would make "which key is this request" ambiguous.
        self.unique([(k.sha256, f"{at} ({k.name})") for k, at in keys], "key digest")
        return [k for k, _ in keys]

    def key(self, raw: Any, at: str) -> KeyConfig | None:
        before = len(self.problems)
        item = self.mapping(raw, at, _KEY_FIELDS)
        if item is None:
            return None
        name = self.name(item.get("name"), f"{at}.name")
        secret, digest = item.get("key"), item.get("sha256")
        if (secret is None) == (digest is None):
            self.bad(at, "needs exactly one of `key` (env:VAR, or the key itself) or `sha256` (its hex digest)")
        if secret is not None:
            digest = self.secret_digest(secret, f"{at}.key", name)
        elif digest is not None:
            if not isinstance(digest, str) or not _HEX64.fullmatch(digest):
                self.bad(f"{at}.sha256", "must be the key's sha256 as 64 hex digits")
                digest = None
            else:
                digest = digest.lower()
        groups = item.get("groups") or []
        if not isinstance(groups, list) or not all(isinstance(g, str) and g.strip() for g in groups):
            self.bad(f"{at}.groups", f"must be a list of group names, got {groups!r}")
            groups = []
        rpm = self.optional_limit(item.get("requests_per_minute"), f"{at}.requests_per_minute")
        tpm = self.optional_limit(item.get("tokens_per_minute"), f"{at}.tokens_per_minute")
        principal = item.get("databricks_principal")
        if principal is not None and (not isinstance(principal, str) or not principal.strip()):
            self.bad(f"{at}.databricks_principal", "must be a user email, group name or service principal id")
        principal_type = self.choice(item.get("databricks_principal_type", "user"),
                                     f"{at}.databricks_principal_type", PRINCIPAL_TYPES)
        if len(self.problems) > before or name is None or digest is None:
            return None
        return KeyConfig(name=name, sha256=digest, groups=tuple(dict.fromkeys(groups)), requests_per_minute=rpm,
                         tokens_per_minute=tpm, databricks_principal=principal,
                         databricks_principal_type=principal_type or "user")

    def secret_digest(self, secret: Any, at: str, name: str | None) -> str | None:
        if not isinstance(secret, str) or not secret:
            self.bad(at, "must be a non-empty string (env:VAR or the key)")
            return None
        if secret.startswith("env:"):
            var = secret[4:]
            value = self.environ.get(var) if var else None
            if not value:
                self.bad(at, f"environment variable {var or '(empty name)'} is not set")
                return None
            return key_digest(value)
        # Never echo the key: only say where it is.
        log.warning("%s: %s (%s) holds a key in clear; prefer `key: env:VAR` or `sha256: <hex>`",
                    self.source, at, name or "?")
        return key_digest(secret)

    def env_keys(self) -> list[tuple[KeyConfig, str]]:
        raw = self.environ.get(KEYS_ENV, "")
        out = []
        for i, entry in enumerate(e.strip() for e in raw.split(",")):
            if not entry:
                continue
            at = f"{KEYS_ENV}[{i}]"
            name, sep, secret = entry.partition(":")
            name, secret = name.strip(), secret.strip()
            if not sep or not name or not secret or any(c.isspace() for c in name):
                # The entry holds a key: name only its position.
                self.bad(at, "must be name:key (entries separated by commas)")
                continue
            out.append((KeyConfig(name=name, sha256=key_digest(secret)), at))
        return out


def _kind(value: Any) -> str:
    return "nothing" if value is None else type(value).__name__


__all__ = [
    "DEFAULT_ROUTE",
    "KEYS_ENV",
    "GatewayConfig",
    "GatewayConfigError",
    "KeyConfig",
    "RouteConfig",
    "Target",
    "default_route",
    "key_digest",
    "load_gateway_config",
]
