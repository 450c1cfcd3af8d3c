"""The gateway config: what a YAML file (and RAGOPS_API_KEYS) turns into, and how bad fields are named."""

from __future__ import annotations

import hashlib
import logging
import textwrap
from pathlib import Path

import pytest

from ragops.config import Settings
from ragops.errors import RagopsError
from ragops.serving.gateway.config import (
    GatewayConfig,
    GatewayConfigError,
    KeyConfig,
    RouteConfig,
    Target,
    load_gateway_config,
)

FULL = """\
max_body_bytes: 2048
keys:
  - {name: alice, key: "env:ALICE_KEY", groups: [eng], requests_per_minute: 60, tokens_per_minute: 20000}
  - {name: bob, sha256: "%s", groups: []}
routes:
  - name: rag_chain
    timeout_s: 30
    sticky: user
    targets:
      - {name: champion, model: "models:/rag_chain@champion", weight: 90}
      - {name: challenger, model: "models:/rag_chain@challenger", weight: 10}
    shadow: {name: candidate, model: "models:/rag_chain/7"}
    fallback: champion
  - name: remote
    targets: [{name: upstream, upstream: "http://127.0.0.1:5050/invocations", kind: mlflow}]
"""
BOB_DIGEST = hashlib.sha256(b"bob-secret").hexdigest()


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(root=tmp_path / "state")


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gateway.yml"
    path.write_text(textwrap.dedent(text))
    return path


def load_error(tmp_path: Path, settings: Settings, text: str, environ=None) -> GatewayConfigError:
    path = write(tmp_path, text)
    with pytest.raises(GatewayConfigError) as err:
        load_gateway_config(path, settings, environ=environ or {})
    assert str(path) in str(err.value)  # every error names the file
    return err.value


# --- what a good file gives -------------------------------------------------------------------------


def test_full_example_loads(tmp_path, settings):
    path = write(tmp_path, FULL % BOB_DIGEST.upper())
    config = load_gateway_config(path, settings, environ={"ALICE_KEY": "alice-secret"})

    assert isinstance(config, GatewayConfig)
    assert config.source == str(path) and config.default_route == "rag_chain" and config.max_body_bytes == 2048
    assert list(config.routes) == ["rag_chain", "remote"]
    route = config.routes["rag_chain"]
    assert route == RouteConfig(
        name="rag_chain",
        targets=(Target(name="champion", model="models:/rag_chain@champion", weight=90.0),
                 Target(name="challenger", model="models:/rag_chain@challenger", weight=10.0)),
        sticky="user", shadow=Target(name="candidate", model="models:/rag_chain/7"), fallback="champion",
        timeout_s=30.0)
    assert config.routes["remote"].targets == (
        Target(name="upstream", upstream="http://127.0.0.1:5050/invocations", kind="mlflow", weight=100.0),)
    assert config.routes["remote"].sticky == "none" and config.routes["remote"].timeout_s == 120.0
    alice, bob = config.keys
    assert alice == KeyConfig(name="alice", sha256=sha("alice-secret"), groups=("eng",), requests_per_minute=60,
                              tokens_per_minute=20000)
    assert bob == KeyConfig(name="bob", sha256=BOB_DIGEST, groups=())  # digests are compared lower-case


def test_keys_are_stored_only_as_digests(tmp_path, settings):
    path = write(tmp_path, FULL % BOB_DIGEST)
    config = load_gateway_config(path, settings, environ={"ALICE_KEY": "alice-secret",
                                                          "RAGOPS_API_KEYS": "carol:carol-secret"})
    assert "alice-secret" not in repr(config) and "carol-secret" not in repr(config)
    assert {k.name: k.sha256 for k in config.keys}["carol"] == sha("carol-secret")


def test_no_file_serves_the_champion_of_the_registered_model(settings):
    config = load_gateway_config(None, settings, environ={})
    assert config.default_route == "rag_chain" and list(config.routes) == ["rag_chain"]
    [target] = config.routes["rag_chain"].targets
    assert target.model == "models:/rag_chain@champion" and target.weight == 100.0
    assert config.routes["rag_chain"].fallback is None and config.routes["rag_chain"].shadow is None
    assert config.keys == () and config.source is None and config.max_body_bytes == 1 << 20
    assert load_gateway_config("", settings, environ={}) == config  # an empty job parameter: no file


def test_default_route_follows_the_model_name_setting(tmp_path):
    uc = Settings(root=tmp_path, mlflow_tracking_uri="databricks", catalog="prod", schema="rag")
    [target] = load_gateway_config(None, uc, environ={}).routes["rag_chain"].targets
    assert target.model == "models:/prod.rag.rag_chain@champion"
    [target] = load_gateway_config(None, Settings(root=tmp_path, model_name="qa_chain"),
                                   environ={}).routes["rag_chain"].targets
    assert target.model == "models:/qa_chain@champion"


def test_a_file_with_only_keys_keeps_the_default_route(tmp_path, settings):
    path = write(tmp_path, "keys: [{name: ops, sha256: '%s'}]\n" % ("a" * 64))
    config = load_gateway_config(path, settings, environ={})
    assert list(config.routes) == ["rag_chain"] and [k.name for k in config.keys] == ["ops"]


def test_env_keys_merge_with_the_file(tmp_path, settings):
    path = write(tmp_path, "keys: [{name: ops, sha256: '%s', groups: [eng]}]\n" % ("a" * 64))
    config = load_gateway_config(path, settings, environ={"RAGOPS_API_KEYS": " ci:k1 , dev:k2:with:colons,"})
    assert [(k.name, k.groups) for k in config.keys] == [("ops", ("eng",)), ("ci", ()), ("dev", ())]
    assert config.keys[2].sha256 == sha("k2:with:colons")  # only the first colon separates the name
    assert config.keys[1].requests_per_minute is None  # env keys carry no limits


def test_env_keys_without_a_file(settings):
    config = load_gateway_config(None, settings, environ={"RAGOPS_API_KEYS": "a:1,b:2"})
    assert [(k.name, k.sha256) for k in config.keys] == [("a", sha("1")), ("b", sha("2"))]


def test_literal_key_is_accepted_with_a_warning_that_does_not_leak_it(tmp_path, settings, caplog):
    path = write(tmp_path, "keys: [{name: ops, key: sk-literal-123}]\n")
    with caplog.at_level(logging.WARNING, logger="ragops.serving.gateway"):
        config = load_gateway_config(path, settings, environ={})
    assert config.keys[0].sha256 == sha("sk-literal-123")
    assert "keys[0].key" in caplog.text and "in clear" in caplog.text
    assert "sk-literal-123" not in caplog.text


def test_databricks_principal_fields(tmp_path, settings):
    path = write(tmp_path, """\
        keys:
          - {name: ci, sha256: "%s", requests_per_minute: 5, databricks_principal: data-eng,
             databricks_principal_type: user_group}
        """ % ("b" * 64))
    [key] = load_gateway_config(path, settings, environ={}).keys
    assert (key.databricks_principal, key.databricks_principal_type) == ("data-eng", "user_group")


# --- every bad field is named ----------------------------------------------------------------------


def assert_problem(err: GatewayConfigError, field: str, problem: str) -> None:
    """The message names ``field`` and says ``problem`` about that field."""
    assert f"{field}: " in str(err)
    assert any(at == field and problem in said for at, said in err.problems), err.problems

TWO_TARGETS = """\
routes:
  - name: r
    targets:
      - {name: a, model: "models:/m@champion"}
      - %s
"""


@pytest.mark.parametrize(("second_target", "field", "problem"), [
    ('{name: b, model: "models:/m@challenger", weight: 0}', "routes[0].targets[1].weight", "must be > 0"),
    ('{name: b, model: "models:/m@challenger", weight: -5}', "routes[0].targets[1].weight", "must be > 0"),
    ('{name: b, model: "models:/m@challenger", weight: ten}', "routes[0].targets[1].weight", "must be a number"),
    ('{name: b, model: "models:/m@challenger", weight: true}', "routes[0].targets[1].weight", "must be a number"),
    ('{name: b, model: "models:/m@c", upstream: "http://x/y"}', "routes[0].targets[1]", "needs exactly one of"),
    ("{name: b}", "routes[0].targets[1]", "needs exactly one of"),
    ('{name: a, model: "models:/m/2"}', "routes[0].targets[1].name", "duplicate target name 'a'"),
    ('{model: "models:/m/2"}', "routes[0].targets[1].name", "is required"),
    ('{name: b, model: "runs:/abc/model"}', "routes[0].targets[1].model", "models:/<name>@<alias>"),
    ('{name: b, upstream: "ftp://host/x"}', "routes[0].targets[1].upstream", "http:// or https://"),
    ('{name: b, upstream: "http://h/x", kind: grpc}', "routes[0].targets[1].kind", "openai | mlflow | databricks"),
    ('{name: b, model: "models:/m/2", kind: mlflow}', "routes[0].targets[1].kind", "upstream targets only"),
    ('{name: b, model: "models:/m/2", wieght: 3}', "routes[0].targets[1].wieght", "unknown field"),
    ("just-a-string", "routes[0].targets[1]", "must be a mapping"),
])
def test_bad_target_fields_are_named(tmp_path, settings, second_target, field, problem):
    err = load_error(tmp_path, settings, TWO_TARGETS % second_target)
    assert_problem(err, field, problem)
    assert [p for p, _ in err.problems] == [field]


@pytest.mark.parametrize(("route_extra", "field", "problem"), [
    ("sticky: always", "routes[0].sticky", "none | user | session"),
    ("fallback: c", "routes[0].fallback", "must name one of the route's targets (a, b)"),
    ("fallback: s", "routes[0].fallback", "must name one of the route's targets"),  # the shadow is not one
    ("timeout_s: 0", "routes[0].timeout_s", "must be > 0"),
    ('shadow: {name: a, model: "models:/m/9"}', "routes[0].shadow.name", "duplicate target name 'a'"),
    ('shadow: {name: s, model: "models:/m/9", weight: 5}', "routes[0].shadow.weight", "unknown field"),
    ("shadow: {name: s}", "routes[0].shadow", "needs exactly one of"),
])
def test_bad_route_fields_are_named(tmp_path, settings, route_extra, field, problem):
    text = TWO_TARGETS % '{name: b, model: "models:/m@challenger"}' + f"    {route_extra}\n"
    if route_extra.startswith("fallback: s"):
        text += '    shadow: {name: s, model: "models:/m/9"}\n'
    err = load_error(tmp_path, settings, text)
    assert_problem(err, field, problem)


@pytest.mark.parametrize(("text", "field", "problem"), [
    ("routes: []\n", "routes", "must be a non-empty list"),
    ("routes: [{name: r}]\n", "routes[0].targets", "is required"),
    ("routes: [{name: r, targets: []}]\n", "routes[0].targets", "must be a non-empty list"),
    ('routes: [{targets: [{name: a, model: "models:/m/1"}]}]\n', "routes[0].name", "is required"),
    ('routes: [{name: "my route", targets: [{name: a, model: "models:/m/1"}]}]\n', "routes[0].name",
     "must not contain spaces"),
    ('routes:\n  - {name: r, targets: [{name: a, model: "models:/m/1"}]}\n'
     '  - {name: r, targets: [{name: b, model: "models:/m/2"}]}\n', "routes[1].name",
     "duplicate route name 'r' (also at routes[0].name)"),
    ("max_body_bytes: 0\n", "max_body_bytes", "must be > 0"),
    ("max_body_bytes: 1.5\n", "max_body_bytes", "must be an integer"),
    ("rutes: []\n", "rutes", "unknown field"),
    ("- a\n- b\n", "(top level)", "must be a mapping"),
    ("keys: {name: a}\n", "keys", "must be a list"),
    ("keys: [{name: a}]\n", "keys[0]", "needs exactly one of `key`"),
    ("keys: [{name: a, key: x, sha256: '%s'}]\n" % ("a" * 64), "keys[0]", "needs exactly one of `key`"),
    ("keys: [{name: a, sha256: nothex}]\n", "keys[0].sha256", "64 hex digits"),
    ("keys: [{name: a, key: 'env:MISSING_VAR'}]\n", "keys[0].key", "environment variable MISSING_VAR is not set"),
    ("keys: [{name: a, key: 'env:'}]\n", "keys[0].key", "is not set"),
    ("keys: [{sha256: '%s'}]\n" % ("a" * 64), "keys[0].name", "is required"),
    ("keys: [{name: a, sha256: '%s', groups: eng}]\n" % ("a" * 64), "keys[0].groups", "list of group names"),
    ("keys: [{name: a, sha256: '%s', requests_per_minute: 0}]\n" % ("a" * 64), "keys[0].requests_per_minute",
     "must be > 0"),
    ("keys: [{name: a, sha256: '%s', tokens_per_minute: 1.5}]\n" % ("a" * 64), "keys[0].tokens_per_minute",
     "must be an integer"),
    ("keys: [{name: a, sha256: '%s', databricks_principal_type: robot}]\n" % ("a" * 64),
     "keys[0].databricks_principal_type", "user | user_group | service_principal"),
    ("keys: [{name: a, sha256: '" + "a" * 64 + "'}, {name: a, sha256: '" + "b" * 64 + "'}]\n", "keys[1].name",
     "duplicate key name 'a'"),
    ("keys: [{name: a, sha256: '" + "a" * 64 + "'}, {name: b, sha256: '" + "a" * 64 + "'}]\n", "keys[1] (b)",
     "duplicate key digest"),
])
def test_bad_fields_are_named(tmp_path, settings, text, field, problem):
    err = load_error(tmp_path, settings, text)
    assert_problem(err, field, problem)


def test_env_keys_that_clash_or_are_malformed_are_named(tmp_path, settings):
    err = load_error(tmp_path, settings, "keys: [{name: ops, key: 'env:OPS'}]\n",
                     environ={"OPS": "s1", "RAGOPS_API_KEYS": "ops:other,broken,:nokey"})
    message = str(err)
    assert "RAGOPS_API_KEYS[0].name: duplicate key name 'ops' (also at keys[0].name)" in message
    assert "RAGOPS_API_KEYS[1]: must be name:key" in message and "RAGOPS_API_KEYS[2]: must be name:key" in message
    assert "other" not in message  # a key is never echoed


def test_env_key_errors_without_a_file_say_so(settings):
    with pytest.raises(GatewayConfigError, match=r"gateway config \(no file\): RAGOPS_API_KEYS\[0\]: must be"):
        load_gateway_config(None, settings, environ={"RAGOPS_API_KEYS": "no-colon-here"})


def test_all_problems_are_reported_at_once(tmp_path, settings):
    err = load_error(tmp_path, settings, """\
        max_body_bytes: -1
        routes:
          - name: r
            sticky: maybe
            targets: [{name: a, model: "models:/m/1", weight: 0}]
        """)
    assert str(err).splitlines()[0].endswith("3 problems:")
    assert [p for p, _ in err.problems] == ["max_body_bytes", "routes[0].targets[0].weight", "routes[0].sticky"]


def test_file_level_errors(tmp_path, settings):
    with pytest.raises(GatewayConfigError, match=r"nope\.yml: \(file\): does not exist"):
        load_gateway_config(tmp_path / "nope.yml", settings)
    err = load_error(tmp_path, settings, "routes: [unclosed\n")
    assert "line 2" in str(err) and "not valid YAML" in str(err)


def test_error_is_a_ragops_error_and_a_value_error(tmp_path, settings):
    err = load_error(tmp_path, settings, "routes: []\n")
    assert isinstance(err, RagopsError) and isinstance(err, ValueError)
    assert err.source.endswith("gateway.yml") and err.problems[0][0] == "routes"
