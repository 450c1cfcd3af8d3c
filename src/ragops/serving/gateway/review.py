"""The review web app served by the gateway (issue 12): chat with a route, see the cited sources,
give feedback; a reviewer view of recent answers. Mounted on the gateway app by
:func:`add_review_routes` (called at the end of :func:`ragops.serving.gateway.app.create_app`).

Routes::

    GET /                          the page (HTML shell: no data in it)
    GET /review/static/<asset>     its script and style sheet, from this package (no CDN)
    GET /v1/review/recent?limit=N  recent answers joined with their feedback (Bearer key, like /v1/*)

The page holds no data of its own: it asks for an API key once (kept in the tab's
``sessionStorage``) and calls the JSON API with ``Authorization: Bearer`` — ``/v1/models``,
``/v1/chat/completions`` (streamed), ``/v1/feedback`` and ``/v1/review/recent`` — so every answer,
row and rating is behind the same keys as the rest of the gateway.

``/v1/review/recent`` reads the ``inference_log`` and ``feedback`` Delta tables and, on top, the
rows still waiting in this machine's inference journals (the un-flushed tail the log has not yet
written to Delta: the same files :meth:`InferenceLog.seen` searches), so an answer given a second
ago is already listed. Shadow answers are left out (nobody saw them).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import Request
from fastapi.responses import Response

from ragops.serving.gateway.journal import newest_requests
from ragops.serving.gateway.pages import add_asset_route, asset, authenticate, gateway_lakehouse, page_headers

log = logging.getLogger("ragops.serving.gateway.review")

#: Most rows one ``/v1/review/recent`` call returns; the default when ``limit`` is absent.
MAX_LIMIT, DEFAULT_LIMIT = 500, 50
#: The static assets served (a fixed list: no path from the client ever reaches the filesystem).
ASSETS = {"app.js": "text/javascript; charset=utf-8", "app.css": "text/css; charset=utf-8"}
COLUMNS = ("request_id", "timestamp", "key_name", "route", "target", "question", "answer", "sources", "status",
           "http_status", "error", "latency_ms", "guardrails", "shadow", "model_version")
_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


def _json_list(value: Any) -> list[Any]:
    if isinstance(value, list):
        return value
    if isinstance(value, str) and value:
        try:
            parsed = json.loads(value)
        except ValueError:
            return []
        return parsed if isinstance(parsed, list) else []
    return []


def _iso(value: Any) -> str | None:
    if value is None:
        return None
    if hasattr(value, "isoformat"):
        try:
            return value.isoformat()
        except (ValueError, TypeError):  # NaT
            return None
    return str(value)


def _clean(value: Any) -> Any:
    """A pandas/numpy cell as plain JSON (NaN/NaT → None)."""
    if value is None:
        return None
    try:
        import pandas as pd

        if not isinstance(value, (list, dict, str)) and pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    if hasattr(value, "item"):
        return value.item()
    return value


def journal_rows(inference_log: Any) -> list[dict[str, Any]]:
    """Rows recorded on this machine that are not in Delta yet (the journals' lines past their
    checkpoints: :meth:`InferenceLog.pending_rows`). Empty when the log keeps no journal (a test fake)."""
    pending = getattr(inference_log, "pending_rows", None)
    return pending() if pending is not None else []


def recent(gateway: Any, limit: int = DEFAULT_LIMIT) -> dict[str, Any]:
    """The ``limit`` most recent non-shadow answers, newest first, each with its feedback."""
    lh = gateway_lakehouse(gateway)
    by_id: dict[str, dict[str, Any]] = {}
    for rec in newest_requests(lh, limit, list(COLUMNS)).to_dict("records"):
        by_id[rec["request_id"]] = {k: _clean(v) for k, v in rec.items()}
    pending = 0
    for row in journal_rows(gateway.log):  # newer than Delta: they win
        if row.get("shadow"):
            continue
        by_id[row["request_id"]] = {k: row.get(k) for k in COLUMNS}
        pending += 1
    rows = sorted(by_id.values(), key=lambda r: _iso(r.get("timestamp")) or "", reverse=True)[:limit]
    feedback: dict[str, list[dict[str, Any]]] = {}
    if rows and lh.exists("feedback"):
        fb = lh.read("feedback", where={"request_id": [r["request_id"] for r in rows]})
        for rec in fb.sort_values("created_at", ascending=False).to_dict("records"):
            rating = _clean(rec.get("rating"))
            feedback.setdefault(rec["request_id"], []).append({
                "key_name": _clean(rec.get("key_name")),
                "rating": "up" if rating == 1 else "down" if rating == -1 else rating,
                "comment": _clean(rec.get("comment")),
                "corrected_answer": _clean(rec.get("corrected_answer")),
                "created_at": _iso(_clean(rec.get("created_at"))),
            })
    data = []
    for r in rows:
        data.append({
            "request_id": r["request_id"], "timestamp": _iso(r.get("timestamp")), "key_name": r.get("key_name"),
            "route": r.get("route"), "target": r.get("target"), "question": r.get("question"),
            "answer": r.get("answer"), "sources": _json_list(r.get("sources")), "status": r.get("status"),
            "http_status": _clean(r.get("http_status")), "error": r.get("error"),
            "latency_ms": _clean(r.get("latency_ms")), "model_version": r.get("model_version"),
            "guardrails": _json_list(r.get("guardrails")), "feedback": feedback.get(r["request_id"], []),
        })
    return {"object": "list", "data": data, "pending_in_journal": pending}


def add_review_routes(app: Any, gateway: Any) -> None:
    """Add the review app's routes to the gateway ``app`` (``gateway`` is its ``Gateway`` state)."""
    from starlette.concurrency import run_in_threadpool

    from ragops.serving.gateway.app import GatewayError, InvalidBody, error_response

    index = asset("index.html")
    headers = page_headers(_CSP)

    @app.get("/")
    async def review_page() -> Response:
        return Response(index, media_type="text/html; charset=utf-8", headers=headers)

    add_asset_route(app, "/review/static", ASSETS)

    @app.get("/v1/review/recent")
    async def review_recent(request: Request) -> Response:
        try:
            authenticate(gateway, request)
            raw = request.query_params.get("limit", str(DEFAULT_LIMIT))
            try:
                limit = int(raw)
            except ValueError:
                raise InvalidBody(f"'limit' must be an integer between 1 and {MAX_LIMIT}", param="limit") from None
            if not 1 <= limit <= MAX_LIMIT:
                raise InvalidBody(f"'limit' must be between 1 and {MAX_LIMIT}; got {limit}", param="limit")
            body = await run_in_threadpool(recent, gateway, limit)
        except GatewayError as exc:
            return error_response(exc, "")
        return Response(json.dumps(body, ensure_ascii=False, default=str).encode("utf-8"),
                        media_type="application/json", headers={"Cache-Control": "no-store"})


__all__ = ["add_review_routes", "journal_rows", "recent"]
