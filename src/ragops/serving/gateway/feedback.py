"""User feedback on served answers → the ``feedback`` Delta table (``POST /v1/feedback``).

One row per request and API key: ``feedback_id`` is a stable hash of the two, and every submit is
an upsert, so a user who changes their mind (or a client that retries) leaves one row, the latest.
Feedback is rare next to requests, so it is written synchronously: the caller learns whether it was
stored. Run :meth:`FeedbackStore.submit` off the event loop (a Delta commit takes tens of ms or more).
``ragops.evaluation.eval_sets.sources.from_feedback`` reads the table back into an eval set.
"""

from __future__ import annotations

import hashlib
from typing import Any

import pandas as pd

from ragops.config import Settings
from ragops.errors import RagopsError
from ragops.lakehouse.schemas import utcnow
from ragops.serving.gateway.journal import InferenceLog

TABLE = "feedback"
RATINGS = {"up": 1, "down": -1}
#: Longest comment or corrected answer accepted (the inference log's default field limit).
MAX_TEXT_CHARS = 32_000
MAX_REQUEST_ID_CHARS = 256


class FeedbackError(RagopsError, ValueError):
    """Feedback that cannot be stored as sent (→ 400); ``field`` names the offending field."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


class UnknownRequest(RagopsError, LookupError):
    """Feedback about a request id the inference log has never seen (→ 404)."""

    def __init__(self, request_id: str) -> None:
        super().__init__(f"no request with id {request_id!r} was served here; send the id of a chat completion "
                         "(its 'id' field)")
        self.request_id = request_id


def feedback_id(request_id: str, key_name: str) -> str:
    """Stable id of one caller's feedback on one request (the same in every process and run)."""
    return hashlib.sha256(f"{request_id}\x1f{key_name}".encode()).hexdigest()[:32]


def _optional_text(value: Any, name: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise FeedbackError(f"'{name}' must be a string or null, not {type(value).__name__}", name)
    if len(value) > MAX_TEXT_CHARS:
        raise FeedbackError(f"'{name}' is {len(value)} characters long; at most {MAX_TEXT_CHARS} are accepted",
                            name)
    return value if value.strip() else None


class FeedbackStore:
    """Validates feedback, checks the request was logged, and upserts it into ``feedback``."""

    def __init__(self, settings: Settings, log: InferenceLog) -> None:
        self.settings = settings
        self.log = log

    def submit(self, request_id: str, key_name: str, rating: str, comment: str | None = None,
               corrected_answer: str | None = None) -> str:
        """Store one caller's feedback on one request; its ``feedback_id``. A second submit by the
        same key on the same request replaces the first.

        Raises :class:`FeedbackError` naming the bad field, :class:`UnknownRequest` for an id the
        log has not seen, and :class:`~ragops.lakehouse.LakehouseError` when Delta cannot be written.
        """
        if not isinstance(request_id, str) or not request_id.strip():
            raise FeedbackError("'request_id' is required: the 'id' of the chat completion rated", "request_id")
        if len(request_id) > MAX_REQUEST_ID_CHARS:
            raise FeedbackError(f"'request_id' is longer than {MAX_REQUEST_ID_CHARS} characters", "request_id")
        if not isinstance(rating, str) or rating not in RATINGS:
            raise FeedbackError(f"'rating' must be one of {', '.join(repr(r) for r in RATINGS)}, not {rating!r:.40}",
                                "rating")
        comment = _optional_text(comment, "comment")
        corrected_answer = _optional_text(corrected_answer, "corrected_answer")
        if not self.log.seen(request_id):
            raise UnknownRequest(request_id)
        fid = feedback_id(request_id, key_name)
        row = {
            "feedback_id": fid,
            "request_id": request_id,
            "key_name": key_name,
            "rating": RATINGS[rating],
            "comment": comment,
            "corrected_answer": corrected_answer,
            "user_id": None,
            "created_at": utcnow(),
        }
        frame = pd.DataFrame([row]).astype({"rating": "int32"})
        self.log.lakehouse.upsert(TABLE, frame)
        return fid


__all__ = ["RATINGS", "FeedbackError", "FeedbackStore", "UnknownRequest", "feedback_id"]
