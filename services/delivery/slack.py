"""The ``slack`` sender: the lead as a Block Kit message to an incoming webhook.

The URL is the secret (whoever knows it may post to the channel), so it
appears in no detail, log or metric. Slack answers ``200 ok``; a failure comes
with a status and one word in the body (``invalid_payload``, ``no_service``,
``channel_is_archived``, ...), which is added to the detail. Statuses map as
for webhooks (:func:`services.delivery.schedule.http_result`): ``410`` (the
channel was archived or the app removed) disables the destination; 429 waits
for its ``Retry-After``; every other failure, and no answer at all, is a
``retry``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import orjson

from services.delivery.config import Destination
from services.delivery.guarded_http import GuardedHttp, Unreachable
from services.delivery.model import Delivery
from services.delivery.render import slack
from services.delivery.schedule import Result, http_result

USER_AGENT = "Leadflow-Webhooks/1"
_WORD = re.compile(rb"[a-z_]{1,40}")


class SlackSender:
    """Implements :class:`services.delivery.senders.Sender` for ``slack`` destinations."""

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
        message = orjson.dumps(slack(payload))
        headers = {"content-type": "application/json", "user-agent": USER_AGENT}
        try:
            reply = await self.http.post(destination.url, message, headers)
        except Unreachable as exc:
            return Result("retry", None, exc.detail)
        result = http_result(reply.status, reply.retry_after, now)
        word = _WORD.fullmatch(reply.head.strip())
        if result.outcome != "delivered" and word is not None:
            result = replace(result, detail=f"{result.detail} ({word.group().decode()})")
        return result

    async def close(self) -> None:
        await self.http.close()
