"""Preview tokens: HMAC-SHA256 signed (flow, draft number, site, expiry). Pure.

A preview token lets the widget play a flow draft (``data-preview`` on the
embed, the ``preview`` field of a ``start`` frame: docs/protocol.md) before it is
published. The admin API issues it (``POST /api/v1/flows/preview``) and the
gateway checks it: signed with a key of this purpose, not expired, for the page's
site (``*``: any site, in a token the admin key asked for) and for the flow the
start names. It carries no personal data and lets its holder do one thing only:
start preview conversations of that draft until it expires.

Keys: derived from the resume secret (``LEADFLOW_RESUME_SECRET``, or the embedded
mode's generated one) as ``HMAC(secret, PURPOSE)``, so no new secret has to be
configured or shared, and a resume token is never a valid preview token (nor the
other way round). Tokens are signed under the current secret and accepted under
it or any previous one, as resume tokens are (docs/runbook.md, rotation).
"""

from __future__ import annotations

import base64
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import orjson

PURPOSE = b"leadflow preview token v1"
ANY_SITE = "*"
DEFAULT_TTL_SECONDS = 3600.0
MAX_CLAIM_CHARS = 128


class InvalidPreview(ValueError):
    """A token that is malformed, forged, expired or for another site or flow."""


@dataclass(frozen=True, slots=True)
class PreviewClaims:
    flow_id: str
    version: int  # the draft's reserved (negative) number
    site_id: str  # ANY_SITE: any site
    expires_at: int  # Unix seconds

    def allows_site(self, site_id: str) -> bool:
        return self.site_id in (ANY_SITE, site_id)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(key: bytes, payload: bytes) -> bytes:
    return hmac.digest(key, payload, "sha256")


class PreviewTokens:
    def __init__(self, secrets: Sequence[bytes], ttl_seconds: float = DEFAULT_TTL_SECONDS) -> None:
        """``secrets``: the current resume secret first, then the previous ones
        still accepted."""
        if not secrets or any(len(s) < 16 for s in secrets):
            raise ValueError("preview tokens need a secret of at least 16 bytes")
        self._keys = tuple(_mac(s, PURPOSE) for s in secrets)
        self.ttl_seconds = ttl_seconds

    def issue(self, flow_id: str, version: int, site_id: str, now: float) -> tuple[str, int]:
        """A token for the draft ``version`` of ``flow_id`` on ``site_id`` (or
        :data:`ANY_SITE`), and when it expires (Unix seconds)."""
        if version >= 0:
            raise ValueError("a preview plays a draft (a negative number)")
        expires_at = int(now + self.ttl_seconds)
        payload = orjson.dumps({"f": flow_id, "v": version, "s": site_id, "exp": expires_at})
        return f"{_b64(payload)}.{_b64(_mac(self._keys[0], payload))}", expires_at

    def verify(self, token: str, now: float) -> PreviewClaims:
        """The claims of a genuine, unexpired token; :class:`InvalidPreview` otherwise."""
        try:
            body, dot, mac = token.partition(".")
            payload, signature = _unb64(body), _unb64(mac)
        except (ValueError, TypeError) as exc:
            raise InvalidPreview("malformed preview token") from exc
        if not dot or _b64(payload) != body or _b64(signature) != mac:
            raise InvalidPreview("malformed preview token")
        if not any(hmac.compare_digest(signature, _mac(key, payload)) for key in self._keys):
            raise InvalidPreview("bad signature")
        claims = _claims(payload)
        if now >= claims.expires_at:
            raise InvalidPreview("preview token expired")
        return claims


def _claims(payload: bytes) -> PreviewClaims:
    """The claims of a genuinely signed payload, of exactly the types issue() writes."""
    try:
        raw = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise InvalidPreview("malformed claims") from exc
    if not isinstance(raw, dict):
        raise InvalidPreview("malformed claims")
    flow, version, site, exp = raw.get("f"), raw.get("v"), raw.get("s"), raw.get("exp")
    if not (type(flow) is str and type(version) is int and type(site) is str and type(exp) is int):
        raise InvalidPreview("malformed claims")
    if not (0 < len(flow) <= MAX_CLAIM_CHARS and 0 < len(site) <= MAX_CLAIM_CHARS) or version >= 0:
        raise InvalidPreview("malformed claims")
    return PreviewClaims(flow, version, site, exp)


def preview_tokens_from_env(env: Mapping[str, str]) -> PreviewTokens | None:
    """The signer of a service that is not a gateway (the distributed projector's
    admin API): the gateways' ``LEADFLOW_RESUME_SECRET`` (and
    ``LEADFLOW_RESUME_SECRET_PREVIOUS``, commas between several), so a token it
    issues plays on every gateway; None when the secret is not set (previews answer
    503 there) or is shorter than 16 characters."""
    current = env.get("LEADFLOW_RESUME_SECRET", "")
    previous = [s for s in env.get("LEADFLOW_RESUME_SECRET_PREVIOUS", "").split(",") if s]
    if len(current) < 16:
        return None
    return PreviewTokens([current.encode(), *(s.encode() for s in previous if len(s) >= 16)])
