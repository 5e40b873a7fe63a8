"""The ``webhook`` sender: the payload's exact bytes, POSTed and signed.

Signed to the Standard Webhooks specification (:mod:`services.delivery.signing`):
``webhook-id`` is the lead's event id, the same on every retry and every
destination, so a receiver deduplicates by it; the body is the canonical bytes
the worker passes in, the same on every retry too. Only the signature's
timestamp changes between attempts (a receiver refuses one older than five
minutes).

Outcomes: a 2xx is ``delivered``; ``410 Gone`` is ``gone`` (the destination is
disabled); every other status is a ``retry``, 429 and 503 with their
``Retry-After`` (:func:`services.delivery.schedule.http_result`); no answer at
all (timeout, refused connection, TLS, DNS, the SSRF guard) is a ``retry`` with
a short detail (:mod:`services.delivery.guarded_http`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from services.delivery import signing
from services.delivery.config import Destination
from services.delivery.guarded_http import GuardedHttp, Unreachable
from services.delivery.model import Delivery, message_id
from services.delivery.schedule import Result, http_result

USER_AGENT = "Leadflow-Webhooks/1"


def webhook_headers(
    destination: Destination, delivery: Delivery, body: bytes, now: float
) -> dict[str, str]:
    """The request's headers: content type, user agent and the three signature headers."""
    return {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        **signing.headers(destination.secrets, message_id(delivery), int(now), body),
    }


class WebhookSender:
    """Implements :class:`services.delivery.senders.Sender` for ``webhook`` destinations."""

    def __init__(self, http: GuardedHttp) -> None:
        self.http = http

    async def send(
        self,
        destination: Destination,
        delivery: Delivery,
        payload: Mapping[str, Any],
        body: bytes,
        now: float,
    ) -> Result:
        try:
            headers = webhook_headers(destination, delivery, body, now)
        except signing.BadSecret as exc:  # config checks secrets; this is a last guard
            return Result("retry", None, f"signing: {exc}")
        try:
            reply = await self.http.post(destination.url, body, headers)
        except Unreachable as exc:
            return Result("retry", None, exc.detail)
        return http_result(reply.status, reply.retry_after, now)

    async def close(self) -> None:
        await self.http.close()
