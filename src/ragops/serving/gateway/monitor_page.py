"""The monitoring dashboard served by the gateway (issue 14), behind the gateway's API keys.
Mounted on the gateway app by :func:`add_monitor_routes` (next to the review app's routes).

Routes::

    GET /monitor                    the page (an HTML shell: no data in it)
    GET /monitor/static/<asset>     its script and style sheet, from this package (no CDN)
    GET /v1/monitor/report          the dashboard HTML (Bearer key, like /v1/*); ?projection=false
                                    skips embedding recent queries for the 2-D map

Like the review app, the page holds no data: it asks for an API key once (the review app's
``sessionStorage`` entry, so one sign-in covers both on the same origin), fetches
``/v1/monitor/report`` with ``Authorization: Bearer`` and shows the HTML in an ``<iframe sandbox>``
via ``srcdoc``. The frame may run no script (``sandbox`` without ``allow-scripts``; ``allow-same-origin``
only so the page can size the frame to the report's height).

Content-Security-Policy. A ``srcdoc`` document inherits its parent's policy, so the shell's policy is
the report's too: ``script-src 'self'`` (the shell's own script; the report has none), ``style-src
'self'`` plus the hash of the report's one ``<style>`` block (:data:`ragops.monitoring.report.
REPORT_STYLE_HASH`) — no ``'unsafe-inline'`` for scripts or styles; the report's SVGs use presentation
attributes, which CSP does not govern.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import Request
from fastapi.responses import Response

from ragops.serving.gateway.pages import add_asset_route, authenticate, gateway_lakehouse, page_headers

log = logging.getLogger("ragops.serving.gateway.monitor")

#: The static assets served (a fixed list: no path from the client ever reaches the filesystem).
ASSETS = {"monitor.js": "text/javascript; charset=utf-8", "monitor.css": "text/css; charset=utf-8"}

PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>ragops monitoring</title>
  <link rel="icon" href="data:,">
  <link rel="stylesheet" href="/review/static/app.css">
  <link rel="stylesheet" href="/monitor/static/monitor.css">
  <script src="/monitor/static/monitor.js" defer></script>
</head>
<body>
  <header class="bar">
    <h1>ragops gateway · monitor</h1>
    <nav aria-label="Monitoring" id="nav" hidden>
      <span id="status" class="status" role="status" aria-live="polite"></span>
      <button type="button" id="refresh" class="tab">Refresh</button>
      <a href="/" class="link">Review app</a>
      <button type="button" id="forget-key" class="link">Change key</button>
    </nav>
  </header>
  <main id="shell">
    <p id="report-error" class="error" role="alert" hidden></p>
    <section id="key-view" aria-labelledby="key-title">
      <h2 id="key-title">Sign in</h2>
      <form id="key-form" class="card">
        <label for="api-key">Gateway API key</label>
        <input id="api-key" name="api-key" type="password" autocomplete="off" required placeholder="sk-…">
        <p class="hint">Kept in this tab only (sessionStorage, shared with the review app) and sent as
          <code>Authorization: Bearer</code>.</p>
        <button type="submit" id="key-submit">Show the dashboard</button>
        <p id="key-error" class="error" role="alert" hidden></p>
      </form>
    </section>
    <p id="loading" class="loading" hidden>Building the report from the monitoring tables…</p>
  </main>
  <iframe id="report" title="Monitoring report" sandbox="allow-same-origin" hidden></iframe>
</body>
</html>
"""


def _csp() -> str:
    from ragops.monitoring.report import REPORT_STYLE_HASH

    return (f"default-src 'none'; script-src 'self'; style-src 'self' {REPORT_STYLE_HASH}; connect-src 'self'; "
            "img-src 'self' data:; frame-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


def report_html(gateway: Any, *, project_queries: bool = True) -> str:
    """The dashboard over the gateway's lakehouse (the one its inference log writes to)."""
    from ragops.monitoring.report import build_report, render_html

    lh = gateway_lakehouse(gateway)
    return render_html(build_report(lh, gateway.settings, project_queries=project_queries))


def add_monitor_routes(app: Any, gateway: Any) -> None:
    """Add ``/monitor``, its assets and ``/v1/monitor/report`` to the gateway ``app``."""
    from starlette.concurrency import run_in_threadpool

    from ragops.monitoring.report import REPORT_STYLE_HASH
    from ragops.serving.gateway.app import GatewayError, InvalidBody, error_response

    page = PAGE.encode("utf-8")
    headers = page_headers(_csp())
    # opened on its own (not in the frame) the report still runs nothing and fetches nothing
    report_headers = {"Content-Security-Policy": f"default-src 'none'; style-src {REPORT_STYLE_HASH}; "
                                                 "frame-ancestors 'self'; sandbox allow-same-origin",
                      "X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"}

    @app.get("/monitor")
    async def monitor_page() -> Response:
        return Response(page, media_type="text/html; charset=utf-8", headers=headers)

    add_asset_route(app, "/monitor/static", ASSETS)

    @app.get("/v1/monitor/report")
    async def monitor_report(request: Request) -> Response:
        try:
            authenticate(gateway, request)
            raw = request.query_params.get("projection", "true").lower()
            if raw not in ("true", "false", "1", "0"):
                raise InvalidBody("'projection' must be true or false", param="projection")
            html = await run_in_threadpool(report_html, gateway, project_queries=raw in ("true", "1"))
        except GatewayError as exc:
            return error_response(exc, "")
        return Response(html.encode("utf-8"), media_type="text/html; charset=utf-8", headers=report_headers)


__all__ = ["add_monitor_routes", "report_html"]
