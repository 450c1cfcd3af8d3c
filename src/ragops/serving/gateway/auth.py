"""API keys: ``Authorization: Bearer <key>`` → the :class:`KeyConfig` it belongs to.

Keys are stored hashed (``KeyConfig.sha256``, hex). A presented key is hashed once and compared
with **every** configured digest with :func:`hmac.compare_digest`, so neither the time taken nor
an early exit tells a caller how close a guess was or which key it matched. The key itself never
leaves this module: errors, logs and metrics name the key's ``name`` only.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from typing import TYPE_CHECKING

from ragops.errors import RagopsError

if TYPE_CHECKING:  # the config module belongs to the routing owner; only its KeyConfig is used here
    from ragops.serving.gateway.config import KeyConfig

BEARER = "bearer "


class AuthError(RagopsError, PermissionError):
    """A missing, malformed or unknown API key (HTTP 401). The message never contains the key."""

    def __init__(self, message: str, code: str = "invalid_api_key") -> None:
        super().__init__(message)
        self.code = code


def hash_key(key: str) -> str:
    """The hex SHA-256 of an API key: what ``KeyConfig.sha256`` holds."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


class KeyRing:
    """The configured keys, matched in constant time."""

    def __init__(self, keys: Iterable[KeyConfig]) -> None:
        self.keys = tuple(keys)
        self._digests = [(bytes.fromhex(k.sha256.strip().lower()), k) for k in self.keys]

    def __len__(self) -> int:
        return len(self.keys)

    def authenticate(self, authorization: str | None) -> KeyConfig:
        """The key of an ``Authorization`` header value; :class:`AuthError` when there is none or it is unknown."""
        if not self._digests:
            raise AuthError("this gateway has no API keys configured: add `keys:` to the gateway config "
                            "or set RAGOPS_API_KEYS=name:key", code="no_api_keys_configured")
        if not authorization:
            raise AuthError("missing API key: send 'Authorization: Bearer <key>'", code="missing_api_key")
        if authorization[:len(BEARER)].lower() != BEARER or not authorization[len(BEARER):].strip():
            raise AuthError("malformed Authorization header: expected 'Bearer <key>'")
        presented = hashlib.sha256(authorization[len(BEARER):].strip().encode("utf-8")).digest()
        found: KeyConfig | None = None
        for digest, key in self._digests:  # no early exit: every digest is compared
            if hmac.compare_digest(presented, digest) and found is None:
                found = key
        if found is None:
            raise AuthError("incorrect API key")
        return found


__all__ = ["AuthError", "KeyRing", "hash_key"]
