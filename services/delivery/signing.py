"""Standard Webhooks signatures (https://www.standardwebhooks.com), pure.

The signed content is ``{webhook-id}.{webhook-timestamp}.{body}``; each secret
is ``whsec_`` followed by the base64 of its key; the ``webhook-signature``
header lists ``v1,<base64 HMAC-SHA256>`` for every secret, separated by
spaces, so a receiver that knows any one of them verifies (rotation: list the
new secret first and keep the old one until every receiver has moved).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Sequence

PREFIX = "whsec_"
TOLERANCE_SECONDS = 300


class BadSecret(ValueError):
    pass


class BadSignature(ValueError):
    pass


def secret_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_`` secret."""
    if not secret.startswith(PREFIX):
        raise BadSecret("a webhook secret starts with 'whsec_'")
    try:
        key = base64.b64decode(secret[len(PREFIX) :], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadSecret("a webhook secret is 'whsec_' and base64") from exc
    if len(key) < 24:
        raise BadSecret("a webhook secret's key is at least 24 bytes")
    return key


def _signature(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    content = f"{msg_id}.{timestamp}.".encode() + body
    return base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode()


def sign(secrets: Sequence[str], msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header value."""
    if not secrets:
        raise BadSecret("at least one secret signs")
    return " ".join(f"v1,{_signature(secret_key(s), msg_id, timestamp, body)}" for s in secrets)


def headers(secrets: Sequence[str], msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secrets, msg_id, timestamp, body),
    }


def verify(
    secret: str, msg_id: str, timestamp: str, signature: str, body: bytes, now: float
) -> None:
    """Raise :class:`BadSignature` unless one ``v1`` signature matches ``secret`` and
    the timestamp is within five minutes of ``now`` (what a receiver does)."""
    try:
        sent = int(timestamp)
    except ValueError as exc:
        raise BadSignature("webhook-timestamp is not an integer") from exc
    if abs(now - sent) > TOLERANCE_SECONDS:
        raise BadSignature("webhook-timestamp is too far from now")
    expected = _signature(secret_key(secret), msg_id, sent, body)
    for part in signature.split():
        version, _, value = part.partition(",")
        if version == "v1" and hmac.compare_digest(value, expected):
            return
    raise BadSignature("no signature matches")
