"""``POST /beacon`` on a gateway of the distributed mode: relayed to the projector.

The read models (and so the beacon counters) are the projector's, in Redis, and the
projector is not reachable from outside the cluster (only the gateways are), so a
gateway hands each beacon on: the body as it came (at most MAX_BEACON_BYTES), the
page's ``Origin``, and the visitor's address in ``X-Real-IP`` (the projector, with
``LEADFLOW_BEACON_CLIENT_HEADER=X-Real-IP``, limits each visitor by it). The
projector checks everything (services.beacon_http) and its status comes back. The
gateway limits each address first (the same bucket), so a flood stops here.
``LEADFLOW_BEACON_URL`` names the projector's endpoint (``http://projector:8090/beacon``);
unset, a distributed gateway serves no ``/beacon``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

from services.beacon_http import BEACON_PATH
from services.beacons import MAX_BEACON_BYTES, BeaconLimiter, client_address

log = logging.getLogger(__name__)
BEACON_URL_ENV = "LEADFLOW_BEACON_URL"
TIMEOUT_SECONDS = 2.0


@dataclass
class BeaconRelay:
    url: str
    limiter: BeaconLimiter = field(default_factory=BeaconLimiter)
    client_header: str | None = None
    session: aiohttp.ClientSession | None = None


RELAY = web.AppKey("beacon_relay", BeaconRelay)


async def relay(request: web.Request) -> web.Response:
    hop = request.app[RELAY]
    client = client_address(request.remote, request.headers, hop.client_header)
    if not hop.limiter.allow(client, time.monotonic()):
        return web.json_response({"error": {"code": "rate_limited"}}, status=429)
    body = await request.content.read(MAX_BEACON_BYTES + 1)
    headers = {"Content-Type": "text/plain", "X-Real-IP": client}
    origins = request.headers.getall("Origin", [])
    if len(origins) == 1:
        headers["Origin"] = origins[0]
    if hop.session is None:  # before start-up or after shutdown
        return web.json_response({"error": {"code": "unavailable"}}, status=503)
    try:
        async with hop.session.post(hop.url, data=body, headers=headers) as answer:
            payload = await answer.read()
            return web.Response(
                status=answer.status,
                body=payload or None,
                content_type="application/json" if payload else None,
                headers={"Cache-Control": "no-store"},
            )
    except (aiohttp.ClientError, TimeoutError) as exc:
        log.warning("beacon not relayed: %s", type(exc).__name__)
        return web.json_response({"error": {"code": "unavailable"}}, status=503)


def add_beacon_relay(app: web.Application, hop: BeaconRelay) -> None:
    """``POST /beacon`` relayed to ``hop.url``; the client session lives with the app."""
    app[RELAY] = hop

    async def session(app: web.Application) -> AsyncIterator[None]:
        timeout = aiohttp.ClientTimeout(total=TIMEOUT_SECONDS)
        hop.session = aiohttp.ClientSession(timeout=timeout)
        yield
        await hop.session.close()

    app.cleanup_ctx.append(session)
    app.router.add_post(BEACON_PATH, relay)
