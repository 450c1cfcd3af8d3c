"""What the gateway's web pages share — the review app (:mod:`.review`) and the monitoring dashboard
(:mod:`.monitor_page`): their static assets from this package (a fixed list, so no path from a client
ever reaches the filesystem; no CDN), the security headers of an HTML shell, the Bearer-key check of
their JSON APIs, and the lakehouse they read (the one the gateway's inference log writes to)."""

from __future__ import annotations

from collections.abc import Mapping
from importlib import resources
from typing import Any

from fastapi import Request
from fastapi.responses import Response

_ASSET_HEADERS = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"}


def asset(name: str) -> bytes:
    return resources.files("ragops.serving.gateway").joinpath("review_static", name).read_bytes()


def page_headers(csp: str) -> dict[str, str]:
    """Headers of an HTML shell page under its own Content-Security-Policy."""
    return {"Content-Security-Policy": csp, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
            "Cache-Control": "no-cache"}


def add_asset_route(app: Any, prefix: str, media_types: Mapping[str, str]) -> None:
    """``GET <prefix>/<name>`` for each asset in ``media_types`` (name → media type); 404 otherwise."""
    from ragops.serving.gateway.app import GatewayError, error_response

    assets = {name: asset(name) for name in media_types}

    async def serve_asset(name: str) -> Response:
        if name not in assets:
            error = GatewayError(f"no asset {name!r}", code="not_found")
            error.status, error.type = 404, "invalid_request_error"
            return error_response(error, "")
        return Response(assets[name], media_type=media_types[name], headers=_ASSET_HEADERS)

    app.add_api_route(f"{prefix}/{{name}}", serve_asset, methods=["GET"])


def authenticate(gateway: Any, request: Request) -> Any:
    """The caller's key, as ``/v1/*`` checks it; raises the gateway's 401 error otherwise."""
    from ragops.serving.gateway.app import Unauthorized
    from ragops.serving.gateway.auth import AuthError

    try:
        return gateway.keyring.authenticate(request.headers.get("authorization"))
    except AuthError as exc:
        raise Unauthorized(str(exc), code=exc.code) from None


def gateway_lakehouse(gateway: Any) -> Any:
    """The lakehouse the gateway's inference log writes to (a test's fake log has none: open one)."""
    lh = getattr(gateway.log, "lakehouse", None)
    if lh is None or not hasattr(lh, "read"):
        from ragops.lakehouse import open_lakehouse

        lh = open_lakehouse(gateway.settings)
    return lh
