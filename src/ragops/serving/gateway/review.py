"""The review web app served by the gateway (issue 12): chat with a route, see the cited sources,
give feedback; a reviewer view of recent answers. Mounted on the gateway app by
:func:`add_review_routes` (called at the end of :func:`ragops.serving.gateway.app.create_app`)."""

from __future__ import annotations

from typing import Any


def add_review_routes(app: Any, gateway: Any) -> None:
    """Add the review app's routes to the gateway ``app`` (``gateway`` is its ``Gateway`` state)."""
    return None
