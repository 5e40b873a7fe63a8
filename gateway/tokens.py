"""Resume tokens: HMAC-SHA256 signed (conversation id, site, issue time).

A token lets a visitor re-attach to their conversation from any gateway
instance; it proves nothing else and carries no personal data.

Rotation: tokens are signed with the current secret and accepted under it or
any ``previous`` one, so a new secret can be rolled out without turning away
the visitors holding tokens of the old one (docs/runbook.md).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import orjson


@dataclass(frozen=True, slots=True)
class TokenClaims:
    conversation_id: str
    site_id: str
    issued_at: float


class InvalidToken(ValueError):
    pass


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: bytes, payload: bytes) -> bytes:
    return hmac.new(secret, payload, hashlib.sha256).digest()


class ResumeTokens:
    def __init__(self, secret: bytes, ttl_seconds: float, previous: Sequence[bytes] = ()) -> None:
        if any(len(key) < 16 for key in (secret, *previous)):
            raise ValueError("a resume secret must be at least 16 bytes")
        self._secret = secret
        self._accepted = (secret, *previous)
        self._ttl = ttl_seconds

    def issue(self, conversation_id: str, site_id: str, now: float) -> str:
        payload = orjson.dumps({"c": conversation_id, "s": site_id, "iat": int(now)})
        return f"{_b64(payload)}.{_b64(_mac(self._secret, payload))}"

    def conversation_for_start(self, site_id: str, flow_id: str, start_id: str) -> str:
        """The conversation id a ``start`` with this ``start_id`` names: the same on
        every gateway (they share the secret) and for every retry, so a start that
        timed out and was applied later is found again instead of doubled.
        Keyed by the secret, so ids cannot be derived from a start id alone."""
        payload = orjson.dumps(["start", site_id, flow_id, start_id])
        return str(uuid.UUID(bytes=_mac(self._secret, payload)[:16], version=5))

    def verify(self, token: str, now: float) -> TokenClaims:
        try:
            body, _, mac = token.partition(".")
            payload = _unb64(body)
            signature = _unb64(mac)
        except (ValueError, TypeError) as exc:
            raise InvalidToken("malformed token") from exc
        if _b64(payload) != body or _b64(signature) != mac:
            raise InvalidToken("malformed token")  # one canonical spelling per token
        if not any(hmac.compare_digest(signature, _mac(key, payload)) for key in self._accepted):
            raise InvalidToken("bad signature")
        try:
            claims = orjson.loads(payload)
            result = TokenClaims(str(claims["c"]), str(claims["s"]), float(claims["iat"]))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise InvalidToken("malformed claims") from exc
        if now - result.issued_at > self._ttl:
            raise InvalidToken("token expired")
        return result
