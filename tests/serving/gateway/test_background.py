"""start_gateway: the notebook's way to run ``ragops gateway`` (a child process, waited for, stopped
with its log flushed), and a start that fails says why."""

from __future__ import annotations

import json
import urllib.request

import pytest

from ragops.config import Settings
from ragops.serving.gateway.background import GatewayStartError, start_gateway
from tests.serving.gateway.test_app import FakeUpstream
from tests.serving.gateway.test_limits import free_port, write_config


def test_start_answer_stop_and_the_log_is_flushed(tmp_path):
    from ragops.lakehouse import open_lakehouse

    settings = Settings.from_variables({"root": str(tmp_path / "state")})
    with FakeUpstream() as upstream:
        write_config(tmp_path / "gateway.yml", upstream.url)
        with start_gateway(settings, config_path=tmp_path / "gateway.yml", port=free_port(),
                           variables={"root": str(settings.root)}, env={"BOB_KEY": "sk-bob-background-1"}) as gw:
            request = urllib.request.Request(
                f"{gw.openai_base_url}/chat/completions", method="POST",
                data=json.dumps({"messages": [{"role": "user", "content": "hello?"}]}).encode(),
                headers={"Authorization": "Bearer sk-bob-background-1", "Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=10) as r:
                answer = json.loads(r.read())
        assert answer["choices"][0]["message"]["content"] == "upstream says: hello?"
        assert gw.exit_code in (0, -15)  # uvicorn may re-raise SIGTERM after a clean shutdown
    rows = open_lakehouse(settings).read("inference_log")
    assert rows["request_id"].tolist() == [answer["id"]]


def test_a_gateway_that_cannot_start_says_why(tmp_path):
    settings = Settings.from_variables({"root": str(tmp_path / "state")})
    (tmp_path / "gateway.yml").write_text("routes:\n  - name: r\n    targets: [{name: a, weight: 1}]\n")
    with pytest.raises(GatewayStartError, match=r"(?s)exited with code 2.*routes\[0\]\.targets\[0\]: needs exactly one of"):
        start_gateway(settings, config_path=tmp_path / "gateway.yml", port=free_port(),
                      variables={"root": str(settings.root)}, timeout_s=60)
