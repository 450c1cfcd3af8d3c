"""Model Serving deployment against a local fake of the Databricks REST API.

No Databricks workspace is reachable here, so :class:`FakeWorkspace` is a real HTTP server on
127.0.0.1 that implements just what ``databricks-sdk`` calls: the host-metadata probe, the serving
endpoints API (list / create / get / update config) and the Unity Catalog model-version-by-alias
lookup. Endpoints go through a small state machine: after a create or a config update they are
``IN_PROGRESS`` for ``polls`` GETs, then ``READY`` / ``NOT_UPDATING`` (or ``UPDATE_FAILED`` when
``fail_next_update`` is set, or forever ``IN_PROGRESS`` when ``stuck`` is set). Everything else —
the SDK client, its auth, serialisation, error mapping — is the real thing.
"""

from __future__ import annotations

import json
import os
import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
import yaml

from ragops.jobs import deploy as deploy_job
from ragops.serving.deploy import (
    LOCAL_HINT,
    DeployError,
    DeployTimeout,
    deploy_endpoint,
    resolve_model_version,
    served_entity_name,
)
from ragops.workspace import WorkspaceError, workspace_client
from tests.conftest import REPO

MODEL = "main.ragops.rag_chain"
ENDPOINT = "ragops-rag-chain"
TOKEN = "x"
FAST = {"poll_s": 0.01, "timeout_s": 15}


# --- the fake workspace ------------------------------------------------------------------------


class FakeWorkspace:
    def __init__(self, polls: int = 3) -> None:
        self.polls = polls
        self.endpoints: dict[str, dict] = {}
        self.aliases: dict[tuple[str, str], int] = {(MODEL, "champion"): 3, (MODEL, "challenger"): 4}
        self.requests: list[tuple[str, str, dict | None]] = []
        self.unknown: list[str] = []
        self.fail_next_update = False
        self.stuck = False
        self.conflict_on_write = False
        self.lock = threading.Lock()
        self.server: ThreadingHTTPServer | None = None

    # state machine -----------------------------------------------------------------------------
    def seed(self, name: str, version: str, *, model: str = MODEL, workload_size: str = "Small",
             scale_to_zero: bool = True) -> None:
        """An existing, ready endpoint serving ``model`` ``version``."""
        entity = {"name": served_entity_name(model, version), "entity_name": model, "entity_version": version,
                  "workload_size": workload_size, "scale_to_zero_enabled": scale_to_zero}
        self.endpoints[name] = {
            "name": name, "id": f"ep-{len(self.endpoints)}", "ready": "READY", "update": "NOT_UPDATING",
            "config": self._config(entity_list=[entity], routes=[entity["name"]], version=1,
                                   deployment="DEPLOYMENT_READY"),
            "pending": None, "countdown": 0, "fail": False,
        }

    @staticmethod
    def _config(entity_list, routes, version, deployment, message=""):
        entities = []
        for e in entity_list:
            e = dict(e)
            e["state"] = {"deployment": deployment, "deployment_state_message": message or deployment.lower()}
            entities.append(e)
        return {"served_entities": entities, "config_version": version,
                "traffic_config": {"routes": [{"served_model_name": r, "traffic_percentage": 100 // len(routes)}
                                              for r in routes]}}

    def _start_update(self, ep: dict, cfg: dict) -> None:
        routes = [r.get("served_model_name") or r.get("served_entity_name")
                  for r in (cfg.get("traffic_config") or {}).get("routes", [])]
        version = (ep["config"] or {}).get("config_version", 0) + 1
        ep["pending"] = self._config(cfg.get("served_entities", []), routes or ["?"], version, "DEPLOYMENT_CREATING")
        ep["pending"]["traffic_config"] = cfg.get("traffic_config") or ep["pending"]["traffic_config"]
        ep["update"] = "IN_PROGRESS"
        ep["countdown"] = self.polls
        ep["fail"], self.fail_next_update = self.fail_next_update, False

    def _advance(self, ep: dict) -> None:
        if ep["update"] != "IN_PROGRESS" or self.stuck:
            return
        ep["countdown"] -= 1
        if ep["countdown"] > 0:
            return
        if ep["fail"]:
            ep["update"] = "UPDATE_FAILED"
            for e in ep["pending"]["served_entities"]:
                e["state"] = {"deployment": "DEPLOYMENT_FAILED",
                              "deployment_state_message": "Container image build failed: pip install exited with 1"}
        else:
            ep["config"], ep["pending"] = ep["pending"], None
            for e in ep["config"]["served_entities"]:
                e["state"] = {"deployment": "DEPLOYMENT_READY", "deployment_state_message": ""}
            ep["ready"], ep["update"] = "READY", "NOT_UPDATING"

    def view(self, ep: dict) -> dict:
        out = {"name": ep["name"], "id": ep["id"], "creator": "someone@example.com", "task": "llm/v1/chat",
               "state": {"ready": ep["ready"], "config_update": ep["update"]}}
        if ep["config"] is not None:
            out["config"] = ep["config"]
        if ep["pending"] is not None:
            out["pending_config"] = {**ep["pending"], "start_time": 1700000000000}
        return out

    # HTTP ------------------------------------------------------------------------------------
    def handle(self, method: str, path: str, headers, body: dict | None) -> tuple[int, dict]:
        self.requests.append((method, path, body))
        if path == "/.well-known/databricks-config":
            return 200, {"workspace_id": "4242", "oidc_endpoint": f"{self.url}/oidc"}
        if not path.startswith("/api/"):
            self.unknown.append(f"{method} {path}")
            return 404, {"error_code": "ENDPOINT_NOT_FOUND", "message": f"No API found for {method} {path}"}
        if headers.get("Authorization") != f"Bearer {TOKEN}":
            return 401, {"error_code": "UNAUTHENTICATED", "message": "Invalid access token."}
        if self.conflict_on_write and method in ("POST", "PUT"):
            return 409, {"error_code": "RESOURCE_CONFLICT", "message": "Another config update is in flight."}
        m = re.fullmatch(r"/api/2\.1/unity-catalog/models/([^/]+)/aliases/([^/]+)", path)
        if m and method == "GET":
            full, alias = unquote(m.group(1)), unquote(m.group(2))
            version = self.aliases.get((full, alias))
            if version is None:
                return 404, {"error_code": "RESOURCE_DOES_NOT_EXIST",
                             "message": f"Alias {alias} does not exist for model {full}."}
            catalog, schema, name = full.split(".")
            return 200, {"catalog_name": catalog, "schema_name": schema, "model_name": name, "version": version,
                         "status": "READY", "aliases": [{"alias_name": alias, "version_num": version}]}
        if path == "/api/2.0/serving-endpoints" and method == "GET":
            return 200, {"endpoints": [self.view(ep) for ep in self.endpoints.values()]}
        if path == "/api/2.0/serving-endpoints" and method == "POST":
            name = (body or {}).get("name")
            if not name or "config" not in body:
                return 400, {"error_code": "INVALID_PARAMETER_VALUE", "message": "name and config are required"}
            if name in self.endpoints:
                return 409, {"error_code": "RESOURCE_ALREADY_EXISTS", "message": f"Endpoint {name} already exists"}
            ep = {"name": name, "id": f"ep-{len(self.endpoints)}", "ready": "NOT_READY", "update": "NOT_UPDATING",
                  "config": None, "pending": None, "countdown": 0, "fail": False}
            self._start_update(ep, body["config"])
            self.endpoints[name] = ep
            return 200, self.view(ep)
        m = re.fullmatch(r"/api/2\.0/serving-endpoints/([^/]+)(/config)?", path)
        if m:
            name = unquote(m.group(1))
            ep = self.endpoints.get(name)
            if ep is None:
                return 404, {"error_code": "RESOURCE_DOES_NOT_EXIST",
                             "message": f"Endpoint with name '{name}' does not exist."}
            if method == "GET" and not m.group(2):
                self._advance(ep)
                return 200, self.view(ep)
            if method == "PUT" and m.group(2):
                if ep["update"] == "IN_PROGRESS":
                    return 409, {"error_code": "RESOURCE_CONFLICT",
                                 "message": f"Endpoint {name} is currently being updated."}
                self._start_update(ep, body or {})
                return 200, self.view(ep)
        self.unknown.append(f"{method} {path}")
        return 404, {"error_code": "ENDPOINT_NOT_FOUND", "message": f"No API found for {method} {path}"}

    def start(self) -> FakeWorkspace:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else None
                with fake.lock:
                    status, payload = fake.handle(self.command, urlparse(self.path).path, self.headers, body)
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def calls(self, method: str, prefix: str = "/api/2.0/serving-endpoints") -> list[tuple[str, dict | None]]:
        return [(p, b) for m, p, b in self.requests if m == method and p.startswith(prefix)]


@pytest.fixture(autouse=True)
def no_databricks_env(monkeypatch, tmp_path):
    """No ambient Databricks config: no DATABRICKS_* variables, an empty HOME."""
    for key in list(os.environ):
        if key.startswith(("DATABRICKS_", "ARM_", "AZURE_", "GOOGLE_")):
            monkeypatch.delenv(key)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))


@pytest.fixture
def fake():
    ws = FakeWorkspace().start()
    yield ws
    ws.server.shutdown()
    ws.server.server_close()
    assert ws.unknown == [], f"the SDK called APIs the fake does not implement: {ws.unknown}"


@pytest.fixture
def client(fake):
    return workspace_client(host=fake.url, token=TOKEN, retry_timeout_seconds=5)


# --- deploy_endpoint -----------------------------------------------------------------------------


def test_creates_the_endpoint_when_missing(fake, client):
    result = deploy_endpoint(client, ENDPOINT, MODEL, "3", workload_size="Small", scale_to_zero=True, **FAST)

    [(_, body)] = fake.calls("POST")
    assert body["name"] == ENDPOINT
    [entity] = body["config"]["served_entities"]
    assert entity == {"name": "rag_chain-3", "entity_name": MODEL, "entity_version": "3",
                      "workload_size": "Small", "scale_to_zero_enabled": True}
    assert body["config"]["traffic_config"] == {"routes": [{"served_model_name": "rag_chain-3",
                                                            "traffic_percentage": 100}]}
    assert fake.calls("PUT") == []
    assert result.action == "created"
    assert (result.ready, result.config_update) == ("READY", "NOT_UPDATING")
    assert result.version == "3" and result.served_entity_name == "rag_chain-3"
    assert result.endpoint_url == f"{fake.url}/serving-endpoints/{ENDPOINT}/invocations"
    assert json.loads(json.dumps(result.to_dict()))["action"] == "created"


def test_same_version_is_a_no_op(fake, client):
    fake.seed(ENDPOINT, "3")
    result = deploy_endpoint(client, ENDPOINT, MODEL, "3", **FAST)
    assert result.action == "unchanged"
    assert result.previous_versions == ["3"]
    assert fake.calls("POST") == [] and fake.calls("PUT") == []


def test_other_version_updates_the_config(fake, client):
    fake.seed(ENDPOINT, "2")
    result = deploy_endpoint(client, ENDPOINT, MODEL, 3, **FAST)

    assert fake.calls("POST") == []
    [(path, body)] = fake.calls("PUT")
    assert path == f"/api/2.0/serving-endpoints/{ENDPOINT}/config"
    assert [(e["entity_name"], e["entity_version"]) for e in body["served_entities"]] == [(MODEL, "3")]
    assert body["traffic_config"]["routes"] == [{"served_model_name": "rag_chain-3", "traffic_percentage": 100}]
    assert result.action == "updated" and result.previous_versions == ["2"]
    assert result.config_version == 2
    served = fake.endpoints[ENDPOINT]["config"]["served_entities"]
    assert [e["entity_version"] for e in served] == ["3"]


def test_changed_compute_settings_update_the_same_version(fake, client):
    fake.seed(ENDPOINT, "3", workload_size="Small")
    result = deploy_endpoint(client, ENDPOINT, MODEL, "3", workload_size="Medium", **FAST)
    assert result.action == "updated"
    [(_, body)] = fake.calls("PUT")
    assert body["served_entities"][0]["workload_size"] == "Medium"


def test_waits_until_ready(fake, client):
    fake.polls = 5
    fake.seed(ENDPOINT, "2")
    result = deploy_endpoint(client, ENDPOINT, MODEL, "3", **FAST)
    gets = [p for p, _ in fake.calls("GET", f"/api/2.0/serving-endpoints/{ENDPOINT}")]
    # one GET to find the endpoint, then polls until the 5th GET after the update reports READY
    assert len(gets) == 1 + 5
    assert result.ready == "READY" and fake.endpoints[ENDPOINT]["update"] == "NOT_UPDATING"


def test_update_in_progress_to_same_version_is_awaited_not_repeated(fake, client):
    fake.seed(ENDPOINT, "2")
    deploy_endpoint(client, ENDPOINT, MODEL, "3", poll_s=0.01, timeout_s=15)  # finishes the update
    fake.seed(ENDPOINT, "2")
    fake._start_update(fake.endpoints[ENDPOINT], {
        "served_entities": [{"name": "rag_chain-3", "entity_name": MODEL, "entity_version": "3",
                             "workload_size": "Small", "scale_to_zero_enabled": True}],
        "traffic_config": {"routes": [{"served_model_name": "rag_chain-3", "traffic_percentage": 100}]}})
    puts = len(fake.calls("PUT"))
    result = deploy_endpoint(client, ENDPOINT, MODEL, "3", **FAST)
    assert result.action == "unchanged" and len(fake.calls("PUT")) == puts
    assert fake.endpoints[ENDPOINT]["config"]["served_entities"][0]["entity_version"] == "3"


def test_other_update_in_progress_finishes_before_ours(fake, client):
    fake.seed(ENDPOINT, "1")
    fake._start_update(fake.endpoints[ENDPOINT], {
        "served_entities": [{"name": "rag_chain-2", "entity_name": MODEL, "entity_version": "2"}],
        "traffic_config": {"routes": [{"served_model_name": "rag_chain-2", "traffic_percentage": 100}]}})
    result = deploy_endpoint(client, ENDPOINT, MODEL, "3", **FAST)  # a PUT now would get 409
    assert result.action == "updated" and result.previous_versions == ["2"]
    assert fake.endpoints[ENDPOINT]["config"]["served_entities"][0]["entity_version"] == "3"


def test_update_failed_raises_naming_the_endpoint(fake, client):
    fake.seed(ENDPOINT, "2")
    fake.fail_next_update = True
    with pytest.raises(DeployError) as err:
        deploy_endpoint(client, ENDPOINT, MODEL, "3", **FAST)
    message = str(err.value)
    assert f"'{ENDPOINT}'" in message and "UPDATE_FAILED" in message
    assert "Container image build failed" in message


def test_failed_creation_raises(fake, client):
    fake.fail_next_update = True
    with pytest.raises(DeployError, match=f"{ENDPOINT}.*UPDATE_FAILED"):
        deploy_endpoint(client, ENDPOINT, MODEL, "3", **FAST)


def test_api_error_names_the_operation(fake, client):
    fake.seed(ENDPOINT, "2")
    fake.conflict_on_write = True
    with pytest.raises(DeployError) as err:
        deploy_endpoint(client, ENDPOINT, MODEL, "3", **FAST)
    assert f"updating serving endpoint '{ENDPOINT}' failed" in str(err.value)
    assert "RESOURCE_CONFLICT" in str(err.value)


def test_timeout_is_a_clear_error(fake, client):
    fake.stuck = True
    started = time.monotonic()
    with pytest.raises(DeployTimeout) as err:
        deploy_endpoint(client, ENDPOINT, MODEL, "3", poll_s=0.05, timeout_s=0.5)
    assert time.monotonic() - started < 5
    message = str(err.value)
    assert f"'{ENDPOINT}' is not ready after 0.5s" in message
    assert "config_update=IN_PROGRESS" in message and "--timeout_s" in message


def test_bad_arguments_are_rejected_before_any_call(fake, client):
    with pytest.raises(DeployError, match="workload_size"):
        deploy_endpoint(client, ENDPOINT, MODEL, "3", workload_size="Huge", **FAST)
    with pytest.raises(DeployError, match="version must be a number"):
        deploy_endpoint(client, ENDPOINT, MODEL, "champion", **FAST)
    with pytest.raises(DeployError, match="endpoint name"):
        deploy_endpoint(client, "bad name!", MODEL, "3", **FAST)
    assert fake.calls("GET") == []


# --- alias resolution ----------------------------------------------------------------------------


def test_alias_resolution(fake, client):
    assert resolve_model_version(client, MODEL, "champion") == "3"
    assert resolve_model_version(client, MODEL, "challenger") == "4"
    assert resolve_model_version(client, MODEL, "@champion") == "3"
    paths = [p for _, p, _ in fake.requests if "unity-catalog" in p]
    assert paths == [f"/api/2.1/unity-catalog/models/{MODEL}/aliases/champion",
                     f"/api/2.1/unity-catalog/models/{MODEL}/aliases/challenger",
                     f"/api/2.1/unity-catalog/models/{MODEL}/aliases/champion"]


def test_version_numbers_need_no_lookup(fake, client):
    assert resolve_model_version(client, MODEL, "7") == "7"
    assert resolve_model_version(client, MODEL, 12) == "12"
    assert not [p for _, p, _ in fake.requests if "unity-catalog" in p]


def test_unknown_alias_is_a_deploy_error(fake, client):
    with pytest.raises(DeployError, match="has no alias 'staging'"):
        resolve_model_version(client, MODEL, "staging")
    with pytest.raises(DeployError, match="Unity Catalog model"):
        resolve_model_version(client, "rag_chain", "champion")


# --- workspace configuration ---------------------------------------------------------------------


def test_wrong_token_is_a_deploy_error(fake):
    bad = workspace_client(host=fake.url, token="wrong", retry_timeout_seconds=5)
    with pytest.raises(DeployError, match="rejected the credentials"):
        resolve_model_version(bad, MODEL, "champion")


def test_unreachable_workspace_is_a_deploy_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    started = time.monotonic()
    client = workspace_client(host=f"http://127.0.0.1:{port}", token=TOKEN, retry_timeout_seconds=1)
    with pytest.raises(DeployError, match=f"127.0.0.1:{port} is not reachable"):
        deploy_endpoint(client, ENDPOINT, MODEL, "3", **FAST)
    assert time.monotonic() - started < 20


def test_no_workspace_configured(capsys):
    with pytest.raises(WorkspaceError) as err:
        workspace_client(retry_timeout_seconds=2, hint=LOCAL_HINT)
    message = str(err.value)
    assert "DATABRICKS_HOST is not set" in message and "DATABRICKS_TOKEN" in message
    assert ".databrickscfg does not exist" in message and "ragops serve" in message


# --- job entry point -----------------------------------------------------------------------------


def test_job_without_workspace_exits_non_zero_without_a_traceback():
    assert not (Path.home() / ".databrickscfg").exists()
    with pytest.raises(SystemExit) as exit_:
        deploy_job.main(["--alias=champion", "--catalog=main", "--schema=ragops", "--endpoint_name=",
                         "--retry_timeout_s=2"])
    err = exit_.value.code  # a string: Python prints it on stderr and exits 1
    assert isinstance(err, str) and err.startswith("deploy: No Databricks workspace is configured")
    assert "DATABRICKS_HOST" in err and "ragops serve" in err


def test_job_bad_parameter_names_it():
    with pytest.raises(SystemExit) as exit_:
        deploy_job.main(["--scale_to_zero=maybe", "--retry_timeout_s=2"])
    assert "scale_to_zero" in str(exit_.value.code) and "true or false" in str(exit_.value.code)


def test_job_deploys_the_champion(fake, monkeypatch, capsys):
    monkeypatch.setenv("DATABRICKS_HOST", fake.url)
    monkeypatch.setenv("DATABRICKS_TOKEN", TOKEN)
    rc = deploy_job.main(["--alias=champion", "--catalog=main", "--schema=ragops", "--model_name=",
                          "--workload_size=Small", "--scale_to_zero=false", "--timeout_s=15", "--poll_s=0.01",
                          "--retry_timeout_s=5", "--git_commit=abc"])
    assert rc == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    payload = json.loads(line)
    assert payload["task"] == "deploy"
    summary = payload["summary"]
    assert (summary["action"], summary["version"], summary["alias"]) == ("created", "3", "champion")
    assert summary["model_name"] == MODEL and summary["endpoint_name"] == ENDPOINT
    [(_, body)] = fake.calls("POST")
    assert body["config"]["served_entities"][0]["scale_to_zero_enabled"] is False

    # a second run finds the champion already served
    assert deploy_job.main(["--alias=champion", "--scale_to_zero=false", "--poll_s=0.01", "--retry_timeout_s=5"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["summary"]["action"] == "unchanged"
    assert len(fake.calls("POST")) == 1 and fake.calls("PUT") == []


# --- bundle ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("target", ["local", "dev", "prod"])
def test_bundle_with_deploy_job_validates(target):
    from ragops.bundle import validate
    from ragops.bundle.validate import console_scripts

    declared = (yaml.safe_load((REPO / "databricks.yml").read_text()) or {}).get("variables") or {}
    if "serving_endpoint" not in declared:
        pytest.skip("databricks.yml does not declare the serving_* variables yet (see resources/deploy_job.yml)")
    if "ragops-deploy" not in console_scripts("ragops"):
        pytest.skip("installed ragops metadata predates the ragops-deploy entry point; "
                    "run `pip install -e .` to refresh it")
    bundle, issues = validate(REPO, target)
    assert [str(i) for i in issues] == []
    assert [t["task_key"] for t in bundle.jobs["deploy_job"]["tasks"]] == ["deploy"]
    endpoint = bundle.resources["model_serving_endpoints"]["rag_chain_endpoint"]
    entity = endpoint["config"]["served_entities"][0]
    assert entity["entity_name"] == f"{bundle.variables['catalog']}.{bundle.variables['schema']}.rag_chain"
    assert endpoint["config"]["traffic_config"]["routes"][0]["served_model_name"] == entity["name"]


# --- gateway config → traffic split + AI Gateway -----------------------------------------------------
# The same fake workspace, plus PUT /serving-endpoints/{name}/ai-gateway (the endpoint then reports
# the settings in its `ai_gateway` field, as the real API does). No workspace runs here.


class GatewayFakeWorkspace(FakeWorkspace):
    def handle(self, method, path, headers, body):
        m = re.fullmatch(r"/api/2\.0/serving-endpoints/([^/]+)/ai-gateway", path)
        if not m or headers.get("Authorization") != f"Bearer {TOKEN}":
            return super().handle(method, path, headers, body)
        self.requests.append((method, path, body))
        ep = self.endpoints.get(unquote(m.group(1)))
        if ep is None:
            return 404, {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "no such endpoint"}
        if method != "PUT":
            self.unknown.append(f"{method} {path}")
            return 404, {"error_code": "ENDPOINT_NOT_FOUND", "message": f"No API found for {method} {path}"}
        ep["ai_gateway"] = body
        return 200, body

    def view(self, ep):
        out = super().view(ep)
        if ep.get("ai_gateway") is not None:
            out["ai_gateway"] = ep["ai_gateway"]
        return out

    def gateway_puts(self) -> list[dict]:
        return [b for m, p, b in self.requests if m == "PUT" and p.endswith("/ai-gateway")]


@pytest.fixture
def gw_fake():
    ws = GatewayFakeWorkspace().start()
    yield ws
    ws.server.shutdown()
    ws.server.server_close()
    assert ws.unknown == [], f"the SDK called APIs the fake does not implement: {ws.unknown}"


@pytest.fixture
def gw_client(gw_fake):
    return workspace_client(host=gw_fake.url, token=TOKEN, retry_timeout_seconds=5)


def gateway_yaml(tmp_path, text: str, environ=None):
    from ragops.config import Settings
    from ragops.serving.gateway.config import load_gateway_config

    path = tmp_path / "gateway.yml"
    path.write_text(text)
    return load_gateway_config(path, Settings(root=tmp_path / "state"), environ=environ or {})


SPLIT = """\
keys:
  - {name: alice, sha256: "%s", requests_per_minute: 60, tokens_per_minute: 20000,
     databricks_principal: alice@example.com}
  - {name: etl, sha256: "%s", requests_per_minute: 5, databricks_principal: data-eng,
     databricks_principal_type: user_group}
  - {name: local-only, sha256: "%s", requests_per_minute: 1, groups: [eng]}
routes:
  - name: rag_chain
    sticky: user
    targets:
      - {name: champion, model: "models:/rag_chain@champion", weight: %s}
      - {name: challenger, model: "models:/rag_chain@challenger", weight: %s}
    shadow: {name: candidate, model: "models:/rag_chain/7"}
    fallback: champion
"""


def split_config(tmp_path, champion: int = 90, challenger: int = 10):
    return gateway_yaml(tmp_path, SPLIT % ("a" * 64, "b" * 64, "c" * 64, champion, challenger))


def test_gateway_config_splits_traffic_and_applies_the_ai_gateway(gw_fake, gw_client, tmp_path):
    from ragops.serving.deploy import deploy

    result = deploy(gw_client, model_name=MODEL, endpoint_name=ENDPOINT, gateway_config=split_config(tmp_path),
                    **FAST)

    [(_, body)] = gw_fake.calls("POST")
    assert [(e["name"], e["entity_name"], e["entity_version"]) for e in body["config"]["served_entities"]] == [
        ("rag_chain-3", MODEL, "3"), ("rag_chain-4", MODEL, "4")]  # champion → v3, challenger → v4
    assert body["config"]["traffic_config"]["routes"] == [
        {"served_model_name": "rag_chain-3", "traffic_percentage": 90},
        {"served_model_name": "rag_chain-4", "traffic_percentage": 10}]
    [gateway] = gw_fake.gateway_puts()
    assert gateway["inference_table_config"] == {"enabled": True, "catalog_name": "main", "schema_name": "ragops",
                                                 "table_name_prefix": "rag_chain_endpoint"}
    assert gateway["usage_tracking_config"] == {"enabled": True}
    assert gateway["rate_limits"] == [
        {"calls": 60, "key": "user", "principal": "alice@example.com", "renewal_period": "minute"},
        {"tokens": 20000, "key": "user", "principal": "alice@example.com", "renewal_period": "minute"},
        {"calls": 5, "key": "user_group", "principal": "data-eng", "renewal_period": "minute"}]
    assert "guardrails" not in gateway and "fallback_config" not in gateway
    assert fake_endpoint_gateway(gw_fake) == gateway

    assert result.action == "created" and result.ai_gateway == "updated"
    assert (result.version, result.served_entity_name, result.alias) == ("3", "rag_chain-3", "champion,challenger")
    assert [(t["entity_version"], t["traffic_percentage"], t["targets"]) for t in result.traffic] == [
        ("3", 90, ["champion"]), ("4", 10, ["challenger"])]
    notes = " | ".join(result.gateway_notes)
    assert "shadow target 'candidate'" in notes and "sticky: user" in notes and "fallback 'champion'" in notes
    assert "key local-only: its limits have no Databricks principal" in notes
    assert json.loads(json.dumps(result.to_dict()))["gateway_route"] == "rag_chain"


def fake_endpoint_gateway(ws) -> dict:
    return ws.endpoints[ENDPOINT]["ai_gateway"]


def test_redeploying_the_same_gateway_config_changes_nothing(gw_fake, gw_client, tmp_path):
    from ragops.serving.deploy import deploy

    deploy(gw_client, model_name=MODEL, endpoint_name=ENDPOINT, gateway_config=split_config(tmp_path), **FAST)
    again = deploy(gw_client, model_name=MODEL, endpoint_name=ENDPOINT, gateway_config=split_config(tmp_path),
                   **FAST)
    assert (again.action, again.ai_gateway) == ("unchanged", "unchanged")
    assert len(gw_fake.calls("POST")) == 1 and gw_fake.calls("PUT", f"/api/2.0/serving-endpoints/{ENDPOINT}/config") == []
    assert len(gw_fake.gateway_puts()) == 1


def test_new_weights_update_the_split_and_leave_the_ai_gateway_alone(gw_fake, gw_client, tmp_path):
    from ragops.serving.deploy import deploy

    deploy(gw_client, model_name=MODEL, endpoint_name=ENDPOINT, gateway_config=split_config(tmp_path), **FAST)
    result = deploy(gw_client, model_name=MODEL, endpoint_name=ENDPOINT,
                    gateway_config=split_config(tmp_path, champion=2, challenger=1), **FAST)
    [(_, body)] = gw_fake.calls("PUT", f"/api/2.0/serving-endpoints/{ENDPOINT}/config")
    assert body["traffic_config"]["routes"] == [{"served_model_name": "rag_chain-3", "traffic_percentage": 67},
                                                {"served_model_name": "rag_chain-4", "traffic_percentage": 33}]
    assert (result.action, result.ai_gateway) == ("updated", "unchanged") and len(gw_fake.gateway_puts()) == 1


def test_rate_limits_set_outside_the_config_are_cleared(gw_fake, gw_client, tmp_path):
    from ragops.serving.deploy import deploy

    gw_fake.seed(ENDPOINT, "3")
    gw_fake.endpoints[ENDPOINT]["ai_gateway"] = {
        "usage_tracking_config": {"enabled": True},
        "rate_limits": [{"calls": 1, "key": "endpoint", "renewal_period": "minute"}]}
    config = gateway_yaml(tmp_path, 'routes: [{name: rag_chain, targets: [{name: champion, '
                                    'model: "models:/rag_chain@champion"}]}]\n')
    result = deploy(gw_client, model_name=MODEL, endpoint_name=ENDPOINT, gateway_config=config, **FAST)
    assert result.action == "unchanged" and result.ai_gateway == "updated"
    [gateway] = gw_fake.gateway_puts()
    assert gateway["rate_limits"] == []  # sent empty, so the endpoint's old limit goes
    assert gateway["inference_table_config"]["enabled"] is True


def test_two_aliases_on_one_version_serve_one_entity(gw_fake, gw_client, tmp_path):
    from ragops.serving.deploy import deploy

    gw_fake.aliases[(MODEL, "challenger")] = 3  # just promoted: champion and challenger are the same version
    result = deploy(gw_client, model_name=MODEL, endpoint_name=ENDPOINT, gateway_config=split_config(tmp_path),
                    **FAST)
    [(_, body)] = gw_fake.calls("POST")
    assert [e["entity_version"] for e in body["config"]["served_entities"]] == ["3"]
    assert body["config"]["traffic_config"]["routes"] == [{"served_model_name": "rag_chain-3",
                                                           "traffic_percentage": 100}]
    assert [t["targets"] for t in result.traffic] == [["champion", "challenger"]]


def test_the_default_gateway_config_serves_the_champion_alone(gw_fake, gw_client, tmp_path):
    from ragops.config import Settings
    from ragops.serving.deploy import deploy
    from ragops.serving.gateway.config import load_gateway_config

    uc = Settings(root=tmp_path, mlflow_tracking_uri="databricks")  # models:/main.ragops.rag_chain@champion
    result = deploy(gw_client, model_name=MODEL, endpoint_name=ENDPOINT,
                    gateway_config=load_gateway_config(None, uc, environ={}), **FAST)
    [(_, body)] = gw_fake.calls("POST")
    assert body["config"]["traffic_config"]["routes"] == [{"served_model_name": "rag_chain-3",
                                                           "traffic_percentage": 100}]
    assert result.gateway_notes == [] and result.ai_gateway == "updated"
    assert gw_fake.gateway_puts()[0]["rate_limits"] == []


def test_an_upstream_target_cannot_be_deployed(gw_fake, gw_client, tmp_path):
    from ragops.serving.deploy import deploy

    config = gateway_yaml(tmp_path, "routes: [{name: remote, targets: [{name: up, upstream: 'http://h:1/x'}]}]\n")
    with pytest.raises(DeployError, match=r"targets\[0\]\.upstream: target 'up' forwards to http://h:1/x"):
        deploy(gw_client, model_name=MODEL, endpoint_name=ENDPOINT, gateway_config=config, **FAST)
    assert gw_fake.calls("POST") == [] and gw_fake.gateway_puts() == []


def test_unknown_gateway_route_is_named(gw_fake, gw_client, tmp_path):
    from ragops.serving.deploy import deploy

    with pytest.raises(DeployError, match="no route 'other' to deploy"):
        deploy(gw_client, model_name=MODEL, endpoint_name=ENDPOINT, gateway_config=split_config(tmp_path),
               gateway_route="other", **FAST)


def test_percentages_sum_to_one_hundred():
    import random

    from ragops.serving.gateway.databricks import percentages

    assert percentages([90, 10]) == [90, 10]
    assert percentages([1, 1, 1]) == [34, 33, 33]
    assert percentages([2, 1]) == [67, 33]
    assert percentages([5]) == [100]
    rng = random.Random(0)
    for _ in range(500):
        weights = [rng.uniform(0.1, 50) for _ in range(rng.randint(1, 6))]
        shares = percentages(weights)
        assert sum(shares) == 100
        assert all(abs(s - 100 * w / sum(weights)) < 1 for s, w in zip(shares, weights, strict=True))


def test_too_many_rate_limits_for_an_endpoint(tmp_path):
    from ragops.serving.gateway.config import GatewayConfigError
    from ragops.serving.gateway.databricks import ai_gateway_settings

    keys = "".join(f'  - {{name: k{i}, sha256: "{i:064x}", requests_per_minute: 1, tokens_per_minute: 1, '
                   f'databricks_principal: "u{i}@example.com"}}\n' for i in range(11))
    config = gateway_yaml(tmp_path, "keys:\n" + keys)
    with pytest.raises(GatewayConfigError, match="22 Databricks rate limits; an endpoint takes at most 20"):
        ai_gateway_settings(config, catalog="main", schema="ragops")
    assert len(ai_gateway_settings(config, catalog="main", schema="ragops", token_limits=False).rate_limits) == 11


def test_bundle_endpoint_declares_what_the_default_gateway_config_generates(tmp_path):
    from ragops.config import Settings
    from ragops.serving.gateway.config import load_gateway_config
    from ragops.serving.gateway.databricks import ai_gateway_settings

    resource = yaml.safe_load((REPO / "resources" / "rag_chain_serving.yml").read_text())
    endpoint = resource["resources"]["model_serving_endpoints"]["rag_chain_endpoint"]
    default = load_gateway_config(None, Settings(root=tmp_path), environ={})
    generated = ai_gateway_settings(default, catalog="${var.catalog}", schema="${var.schema}")
    assert endpoint["ai_gateway"] == generated.as_dict()
    assert [r["traffic_percentage"] for r in endpoint["config"]["traffic_config"]["routes"]] == [100]


def test_moving_the_inference_table_disables_it_first(gw_fake, gw_client, tmp_path):
    from ragops.serving.deploy import deploy

    gw_fake.seed(ENDPOINT, "3")
    gw_fake.endpoints[ENDPOINT]["ai_gateway"] = {
        "inference_table_config": {"enabled": True, "catalog_name": "main", "schema_name": "old_schema",
                                   "table_name_prefix": "rag_chain_endpoint"},
        "usage_tracking_config": {"enabled": True}}
    config = gateway_yaml(tmp_path, 'routes: [{name: rag_chain, targets: [{name: champion, '
                                    'model: "models:/rag_chain@champion"}]}]\n')
    deploy(gw_client, model_name=MODEL, endpoint_name=ENDPOINT, gateway_config=config, **FAST)
    first, second = gw_fake.gateway_puts()
    assert first["inference_table_config"] == {"enabled": False}  # Databricks refuses a move while enabled
    assert second["inference_table_config"]["schema_name"] == "ragops"
    assert gw_fake.endpoints[ENDPOINT]["ai_gateway"]["inference_table_config"]["enabled"] is True


def test_deploy_job_takes_the_gateway_config_file(gw_fake, tmp_path, monkeypatch, capsys):
    """`databricks bundle run deploy_job --params gateway_config=...`: the job splits traffic and sets
    the AI Gateway from the YAML; a broken file fails before any workspace call, naming the field."""
    monkeypatch.setenv("DATABRICKS_HOST", gw_fake.url)
    monkeypatch.setenv("DATABRICKS_TOKEN", TOKEN)
    split_config(tmp_path)  # writes tmp_path / "gateway.yml"
    rc = deploy_job.main(["--catalog=main", "--schema=ragops", "--model_name=", f"--gateway_config={tmp_path / 'gateway.yml'}",
                          "--timeout_s=15", "--poll_s=0.01", "--retry_timeout_s=5"])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["summary"]
    assert summary["gateway_route"] == "rag_chain" and summary["ai_gateway"] == "updated"
    assert [t["traffic_percentage"] for t in summary["traffic"]] == [90, 10]

    broken = tmp_path / "broken.yml"
    broken.write_text("routes:\n  - name: rag_chain\n    targets: [{name: a, model: 'models:/m@a', weight: 0}]\n")
    before = len(gw_fake.requests)
    with pytest.raises(SystemExit, match=r"weight: must be > 0"):
        deploy_job.main([f"--gateway_config={broken}", "--retry_timeout_s=5"])
    assert len(gw_fake.requests) == before
