"""The review web app end to end: a real gateway on 127.0.0.1 (fake targets answering at once with
sources, the real InferenceLog and FeedbackStore on a tmp root) driven by a real headless Chromium
(Debian's ``chromium`` + ``chromium-driver``, installed by ``.ci/setup``) through Selenium: enter
the key, chat, see the sources, thumbs up with a comment (the row lands in ``feedback``), then the
reviewer view lists the answer with its feedback and guardrail outcomes. Screenshots of each view
go under ``tmp_path`` and to ``/tmp/review-*.png``.

The JSON API behind the reviewer view (``/v1/review/recent``) is also tested without a browser:
auth, ``limit`` validation, rows from the journal before the flush and from Delta after it.
"""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

import httpx
import pytest

from ragops.config import Settings
from ragops.serving.gateway.app import create_app
from ragops.serving.gateway.config import GatewayConfig, RouteConfig
from tests.serving.gateway.test_app import (
    KEYS,
    SOURCES,
    FakeBackend,
    Served,
    fake_factory,
    fake_target,
    key_config,
)


class BlockingChecks:
    """A route whose input guardrail blocks every question."""

    def before(self, request) -> None:
        from ragops.serving.gateway.app import CheckRefused

        request.guardrails.append({"check": "topics", "stage": "input", "action": "blocked", "matched": ["ports"]})
        exc = CheckRefused("the request was blocked: this route does not answer questions about ports")
        exc.type, exc.code = "guardrail", "topics"
        raise exc

    def after(self, request, answer):
        return answer


class LoggedChecks:
    """Route checks that pass and record their outcomes (what the guardrails put in the log)."""

    def before(self, request) -> None:
        request.guardrails.append({"check": "injection", "stage": "input", "action": "pass", "score": 0.01})
        request.guardrails.append({"check": "pii", "stage": "input", "action": "redacted",
                                   "entities": ["EMAIL_ADDRESS"], "before_model": False})

    def after(self, request, answer):
        request.guardrails.append({"check": "grounded", "stage": "output", "action": "pass", "score": 0.93})
        return answer


def make_gateway(root: Path, fakes: dict[str, FakeBackend] | None = None):
    settings = Settings.from_variables({"root": str(root / "state")})
    config = GatewayConfig(routes={"rag_chain": RouteConfig("rag_chain", (fake_target("champion"),)),
                                   "slow_loader": RouteConfig("slow_loader", (fake_target("loader"),)),
                                   "guarded": RouteConfig("guarded", (fake_target("champion"),))},
                           keys=(key_config("alice"), key_config("bob")), default_route="rag_chain")
    fakes = {} if fakes is None else fakes
    app = create_app(config, settings, backend_factory=fake_factory(fakes), checks={"rag_chain": LoggedChecks(), "guarded": BlockingChecks()})
    return app, settings


AUTH = {"Authorization": f"Bearer {KEYS['alice']}"}


# --- the JSON API -----------------------------------------------------------------------------------

def test_recent_needs_a_key_and_a_sane_limit(tmp_path):
    app, _ = make_gateway(tmp_path)
    with Served(app) as served, httpx.Client(base_url=served.url, timeout=10) as client:
        assert client.get("/v1/review/recent").status_code == 401
        assert client.get("/v1/review/recent", headers={"Authorization": "Bearer sk-wrong-000000"}).status_code == 401
        for bad in ("0", "100000", "ten"):
            r = client.get("/v1/review/recent", params={"limit": bad}, headers=AUTH)
            assert r.status_code == 400 and r.json()["error"]["param"] == "limit", r.text
        r = client.get("/v1/review/recent", headers=AUTH)
        assert r.status_code == 200 and r.json()["data"] == []


def test_the_page_and_its_assets_are_served_by_the_gateway_without_a_cdn(tmp_path):
    app, _ = make_gateway(tmp_path)
    with Served(app) as served, httpx.Client(base_url=served.url, timeout=10) as client:
        page = client.get("/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "script-src 'self'" in page.headers["content-security-policy"]
        assert "http://" not in page.text and "https://" not in page.text
        for asset, kind in (("app.js", "javascript"), ("app.css", "css")):
            r = client.get(f"/review/static/{asset}")
            assert r.status_code == 200 and kind in r.headers["content-type"] and r.content
            assert "https://" not in r.text
        assert client.get("/review/static/../review.py").status_code == 404
        assert client.get("/review/static/nope.js").status_code == 404


def test_recent_lists_journal_rows_at_once_and_delta_rows_after_the_flush_with_feedback(tmp_path):
    app, settings = make_gateway(tmp_path)
    with Served(app) as served, httpx.Client(base_url=served.url, timeout=10) as client:
        ids = []
        for q in ("first question", "second question"):
            r = client.post("/v1/chat/completions", headers=AUTH,
                            json={"model": "rag_chain", "messages": [{"role": "user", "content": q}]})
            assert r.status_code == 200, r.text
            ids.append(r.json()["id"])
        fb = client.post("/v1/feedback", headers=AUTH,  # needs no flush: the log has seen the id
                         json={"request_id": ids[0], "rating": "down", "comment": "too vague",
                               "corrected_answer": "Port 4317 (gRPC)."})
        assert fb.status_code == 200, fb.text
        body = client.get("/v1/review/recent", headers=AUTH).json()
        assert [r["request_id"] for r in body["data"]] == ids[::-1]  # newest first
        assert body["pending_in_journal"] >= 2
    # after shutdown the log is flushed: the same rows now come from Delta
    app2, _ = make_gateway(tmp_path)
    with Served(app2) as served, httpx.Client(base_url=served.url, timeout=10) as client:
        body = client.get("/v1/review/recent", params={"limit": 1}, headers=AUTH).json()
        assert body["pending_in_journal"] == 0
        assert [r["request_id"] for r in body["data"]] == [ids[1]]
        rows = {r["request_id"]: r for r in client.get("/v1/review/recent", headers=AUTH).json()["data"]}
    first = rows[ids[0]]
    assert first["question"] == "first question" and first["key_name"] == "alice" and first["route"] == "rag_chain"
    assert first["status"] == "ok" and first["answer"] == "The collector listens on port 4317."
    assert [s["doc_id"] for s in first["sources"]] == [SOURCES[0]["doc_id"]]
    assert {g["check"] for g in first["guardrails"]} == {"injection", "pii", "grounded"}
    assert first["feedback"] == [{"key_name": "alice", "rating": "down", "comment": "too vague",
                                  "corrected_answer": "Port 4317 (gRPC).", "created_at": first["feedback"][0]["created_at"]}]
    assert rows[ids[1]]["feedback"] == []


# --- the browser ------------------------------------------------------------------------------------

def _browser():
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if not chromium or not driver_path:
        pytest.skip("the browser test needs Debian's chromium and chromium-driver (installed by .ci/setup)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e '.[dev]')")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,1000", "--no-first-run", "--disable-extensions"):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(driver_path), options=options)


def _shot(driver, tmp_path: Path, name: str) -> None:
    """A full-page screenshot (the viewport stretched to the page's height, scrolled to the top)."""
    driver.execute_script("window.scrollTo(0, 0)")
    height = int(driver.execute_script("return document.documentElement.scrollHeight"))
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": 1280, "height": max(700, min(height, 4000)), "deviceScaleFactor": 1,
                            "mobile": False})
    try:
        png = driver.get_screenshot_as_png()
    finally:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    (tmp_path / f"review-{name}.png").write_bytes(png)
    with contextlib.suppress(OSError):
        Path(f"/tmp/review-{name}.png").write_bytes(png)


@pytest.mark.timeout(180)
def test_chat_sources_feedback_and_reviewer_in_a_real_browser(tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import Select, WebDriverWait

    from ragops.lakehouse import open_lakehouse

    driver = _browser()
    fakes: dict[str, FakeBackend] = {}
    loader = FakeBackend(fake_target("loader"))
    loader.loaded.clear()  # one target never finishes loading: the page says the model is not ready
    fakes["loader"] = loader
    app, settings = make_gateway(tmp_path, fakes)
    try:
        with Served(app) as served:
            wait = WebDriverWait(driver, 20)
            visible = lambda id_: wait.until(ec.visibility_of_element_located((By.ID, id_)))  # noqa: E731
            driver.get(served.url + "/")

            # a wrong key is refused with a message; the right one opens the chat
            visible("api-key").send_keys("sk-not-a-key-000")
            driver.find_element(By.ID, "key-submit").click()
            assert "not accepted" in visible("key-error").text
            _shot(driver, tmp_path, "key")
            driver.find_element(By.ID, "api-key").send_keys(KEYS["alice"])
            driver.find_element(By.ID, "key-submit").click()
            visible("chat-view")
            assert driver.execute_script("return sessionStorage.getItem('ragops-api-key')") == KEYS["alice"]
            assert "not ready" in visible("banner").text  # the loader target is still loading
            # the reviewer view before any answer: its empty state
            driver.find_element(By.ID, "tab-review").click()
            assert "No answers yet" in visible("review-empty").text
            _shot(driver, tmp_path, "reviewer-empty")
            driver.find_element(By.ID, "tab-chat").click()
            route = Select(driver.find_element(By.ID, "route"))
            assert [o.text for o in route.options] == ["rag_chain", "slow_loader", "guarded"]
            route.select_by_visible_text("rag_chain")

            # chat (streamed): the answer and its sources
            driver.find_element(By.ID, "question").send_keys("Which port does the collector listen on?")
            driver.find_element(By.ID, "ask").click()
            wait.until(lambda d: d.find_element(By.ID, "answer").text == "The collector listens on port 4317.")
            rows = visible("sources").find_elements(By.CSS_SELECTOR, "tbody tr")
            assert [[c.text for c in r.find_elements(By.TAG_NAME, "td")] for r in rows] == [
                ["1", "d1", "guides/retention.md", "0.900"]]

            # thumbs up with a comment → the feedback table
            driver.find_element(By.ID, "thumb-up").click()
            driver.find_element(By.ID, "comment").send_keys("Right port, cites the guide.")
            driver.find_element(By.ID, "send-feedback").click()
            wait.until(lambda d: "saved" in d.find_element(By.ID, "feedback-status").text)
            _shot(driver, tmp_path, "chat")
            fb = open_lakehouse(settings).read("feedback")
            assert len(fb) == 1
            row = fb.iloc[0]
            assert row["rating"] == 1 and row["comment"] == "Right port, cites the guide." and row["key_name"] == "alice"
            request_id = row["request_id"]

            # the reviewer view: the answer, its sources, guardrail outcomes and feedback
            driver.find_element(By.ID, "tab-review").click()
            table = visible("recent")
            wait.until(lambda d: request_id in table.text)
            text = table.text
            assert "Which port does the collector listen on?" in text and "The collector listens on port 4317." in text
            assert "guides/retention.md" in text and "injection · input · pass" in text
            assert "pii · input · redacted: EMAIL_ADDRESS" in text and "grounded · output · pass" in text
            assert "Right port, cites the guide." in text and "alice" in text
            _shot(driver, tmp_path, "reviewer")

            # a route whose model is not ready: a clear error in the chat view
            driver.find_element(By.ID, "tab-chat").click()
            Select(driver.find_element(By.ID, "route")).select_by_visible_text("slow_loader")
            driver.find_element(By.ID, "stream").click()  # non-streamed this time
            loader.fail = True
            driver.find_element(By.ID, "ask").click()
            assert visible("chat-error").text == "The model (loader) failed to answer: loader is down"
            _shot(driver, tmp_path, "error")
            loader.loaded.set()

            # a question a guardrail blocks: the refusal, named
            Select(driver.find_element(By.ID, "route")).select_by_visible_text("guarded")
            driver.find_element(By.ID, "ask").click()
            wait.until(lambda d: "guardrail" in d.find_element(By.ID, "chat-error").text)
            assert driver.find_element(By.ID, "chat-error").text == (
                "Refused by a guardrail (topics): the request was blocked: this route does not answer questions "
                "about ports")
    finally:
        driver.quit()
    for name in ("key", "reviewer-empty", "chat", "reviewer", "error"):
        assert (tmp_path / f"review-{name}.png").stat().st_size > 10_000


# --- Databricks ---------------------------------------------------------------------------------------

REPO = Path(__file__).resolve().parents[3]


def test_the_databricks_app_resource_is_a_valid_bundle_app():
    from databricks.bundles.apps import App

    from ragops.bundle import load_bundle

    bundle = load_bundle(REPO, "dev", {})
    spec = bundle.resources["apps"]["review_app"]
    app = App.from_dict(spec)  # databricks-bundles' own model: unknown fields, types, enums
    assert app.source_code_path == "../bundles/review_app"
    source = REPO / "resources" / app.source_code_path
    assert (source / "app.yaml").is_file() and (source / "app.py").is_file()
    import yaml

    manifest = yaml.safe_load((source / "app.yaml").read_text())
    declared = {r.name for r in app.resources}
    assert {e["valueFrom"] for e in manifest["env"] if "valueFrom" in e} <= declared


def test_the_app_entry_point_writes_a_gateway_config_the_gateway_accepts(tmp_path):
    import importlib.util

    from ragops.serving.gateway.config import load_gateway_config

    spec = importlib.util.spec_from_file_location("review_app_main", REPO / "bundles" / "review_app" / "app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    path = tmp_path / "gateway.yml"
    path.write_text(module.gateway_yaml("adb-123.azuredatabricks.net", "ragops-rag-chain"))
    config = load_gateway_config(str(path), Settings.from_variables({"root": str(tmp_path / "state")}))
    (target,) = config.routes["rag_chain"].targets
    assert target.kind == "databricks"
    assert target.upstream == "https://adb-123.azuredatabricks.net/serving-endpoints/ragops-rag-chain/invocations"
