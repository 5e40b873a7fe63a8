"""Resume tokens: HMAC-SHA256 signed (conversation id, site, issue time).

A token lets a visitor re-attach to their conversation from any gateway
instance; it proves nothing else and carries no personal data.

Claims are checked exactly: ``c`` and ``s`` are non-empty strings and ``iat``
an integer (not a float, a string or a boolean), issued at most
:data:`MAX_CLOCK_SKEW_SECONDS` in the future (a token from the future would
never expire) and at most the TTL in the past. The gateway also checks the
token's site against the page's origin, and the conversation service checks
it against the conversation's own site (gateway.connection).

Rotation: tokens are signed with the current secret and accepted under it or
any ``previous`` one, so a new secret can be rolled out without turning away
the visitors holding tokens of the old one (docs/runbook.md).
"""

from __future__ import annotations

import base64
import hmac
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import orjson

MAX_CLOCK_SKEW_SECONDS = 60
"""How far in the future a token's ``iat`` may be (clocks of gateways differ a little)."""
MAX_CLAIM_CHARS = 128


@dataclass(frozen=True, slots=True)
class TokenClaims:
    conversation_id: str
    site_id: str
    issued_at: int


class InvalidToken(ValueError):
    pass


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: bytes, payload: bytes) -> bytes:
    return hmac.digest(secret, payload, "sha256")  # OpenSSL's one-shot: no HMAC object


class ResumeTokens:
    def __init__(
        self,
        secret: bytes,
        ttl_seconds: float,
        previous: Sequence[bytes] = (),
        *,
        max_skew_seconds: float = MAX_CLOCK_SKEW_SECONDS,
    ) -> None:
        if any(len(key) < 16 for key in (secret, *previous)):
            raise ValueError("a resume secret must be at least 16 bytes")
        self._secret = secret
        self._accepted = (secret, *previous)
        self._ttl = ttl_seconds
        self._skew = max_skew_seconds

    @property
    def secrets(self) -> tuple[bytes, ...]:
        """The secret tokens are signed with, then the previous ones still accepted
        (preview tokens derive their keys from them: services/preview_tokens.py)."""
        return self._accepted

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
        result = _claims(payload)
        if result.issued_at > now + self._skew:
            raise InvalidToken("token issued in the future")
        if now - result.issued_at > self._ttl:
            raise InvalidToken("token expired")
        return result


def _claims(payload: bytes) -> TokenClaims:
    """The claims of a genuinely signed payload, of exactly the types issue() writes."""
    try:
        claims = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise InvalidToken("malformed claims") from exc
    if not isinstance(claims, dict):
        raise InvalidToken("malformed claims")
    cid, site, iat = claims.get("c"), claims.get("s"), claims.get("iat")
    if not (type(cid) is str and type(site) is str and type(iat) is int):
        raise InvalidToken("malformed claims")  # type(): a bool is an int, a str subclass...
    if not (0 < len(cid) <= MAX_CLAIM_CHARS and 0 < len(site) <= MAX_CLAIM_CHARS):
        raise InvalidToken("malformed claims")
    return TokenClaims(cid, site, iat)
