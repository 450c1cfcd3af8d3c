"""Databricks App entry point: the ragops gateway, with its review web app at ``/``.

Databricks Apps runs ``python app.py`` (app.yaml) with ``DATABRICKS_APP_PORT`` to listen on,
``DATABRICKS_HOST`` and the app's service principal credentials. The gateway gets one route,
``rag_chain``, to the Model Serving endpoint ``RAGOPS_SERVING_ENDPOINT`` (kind ``databricks``),
called with a workspace token minted from the app's credentials (databricks-sdk). Keys come from
``RAGOPS_API_KEYS``; ``RAGOPS_VAR_<NAME>=value`` are setting overrides (``--var name=value``).
``RAGOPS_GATEWAY_CONFIG_FILE`` replaces the generated config with a gateway YAML of your own.
"""

from __future__ import annotations

import os
import sys
import tempfile


def gateway_yaml(host: str, endpoint: str) -> str:
    host = host if host.startswith(("http://", "https://")) else f"https://{host}"
    url = f"{host.rstrip('/')}/serving-endpoints/{endpoint}/invocations"
    return ("routes:\n"
            "  - name: rag_chain\n"
            "    timeout_s: 120\n"
            f"    targets: [{{name: {endpoint}, upstream: \"{url}\", kind: databricks}}]\n")


def workspace_token() -> str | None:
    """A bearer token for the workspace from the app's own credentials (OAuth M2M)."""
    if os.environ.get("DATABRICKS_TOKEN"):
        return os.environ["DATABRICKS_TOKEN"]
    try:
        from databricks.sdk.core import Config
    except ImportError:
        return None
    header = Config().authenticate().get("Authorization", "")
    return header.removeprefix("Bearer ") or None


def main() -> int:
    from ragops.bundle import settings_for
    from ragops.serving.gateway.app import serve_gateway

    variables = {k.removeprefix("RAGOPS_VAR_").lower(): v for k, v in os.environ.items()
                 if k.startswith("RAGOPS_VAR_") and v}
    config_path = os.environ.get("RAGOPS_GATEWAY_CONFIG_FILE")
    if not config_path:
        host, endpoint = os.environ.get("DATABRICKS_HOST"), os.environ.get("RAGOPS_SERVING_ENDPOINT")
        if not host or not endpoint:
            print("review app: set DATABRICKS_HOST and RAGOPS_SERVING_ENDPOINT (or RAGOPS_GATEWAY_CONFIG_FILE)",
                  file=sys.stderr)
            return 2
        token = workspace_token()
        if token:
            os.environ["DATABRICKS_TOKEN"] = token
        fd, config_path = tempfile.mkstemp(prefix="ragops-gateway-", suffix=".yml")
        with os.fdopen(fd, "w") as f:
            f.write(gateway_yaml(host, endpoint))
    settings = settings_for(None, variables)
    port = int(os.environ.get("DATABRICKS_APP_PORT") or 8000)
    # 0.0.0.0: the Databricks Apps proxy in front terminates TLS and authenticates the workspace user
    return serve_gateway(settings, config_path, variables=variables, host="0.0.0.0", port=port)


if __name__ == "__main__":
    sys.exit(main())
