"""``POST /beacon``: the widget's views and opens (services.beacons), counted per site,
flow version and day.

Checked like the WebSocket: the body's size and shape, the site, the page's
``Origin`` against the site's origins (exactly one Origin header; a beacon is a
POST, so browsers always send it), the flow against the site's flows and the
catalog; a token bucket per client address (the WebSocket's rate and burst,
gateway.beacon_limit). Nothing of the request is kept but the counts:
no cookie is read or set, no address or user agent is stored or logged.

Answers: 204 counted; 400 a malformed beacon, an unknown site or flow; 403 a page
the site does not allow; 413 too large; 429 too many from this address. The widget
never reads them (``sendBeacon``); they are for operators and tests.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from gateway.beacon_limit import BeaconLimiter
from gateway.keys import CONTEXT
from services.beacons import MAX_BEACON_BYTES, BeaconCounts, BeaconError, increments, parse_beacon

BEACON_PATH = "/beacon"


@dataclass(frozen=True)
class BeaconEndpoint:
    counts: BeaconCounts
    limiter: BeaconLimiter


BEACONS = web.AppKey("beacons", BeaconEndpoint)


def _refuse(status: int, code: str, message: str) -> web.Response:
    body = {"error": {"code": code, "message": message}}
    return web.json_response(body, status=status, headers={"Cache-Control": "no-store"})


async def beacon(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    endpoint = request.app[BEACONS]
    now = ctx.clock()
    if not endpoint.limiter.allow(request.remote or "", now):
        return _refuse(429, "rate_limited", "too many beacons")
    body = await request.content.read(MAX_BEACON_BYTES + 1)
    try:
        parsed = parse_beacon(body)
    except BeaconError as exc:
        return _refuse(413 if exc.code == "too_large" else 400, exc.code, exc.message)
    site = ctx.sites.get(parsed.site_id)
    if site is None:
        return _refuse(400, "unknown_site", "unknown site")
    origins = request.headers.getall("Origin", [])
    if len(origins) != 1 or not site.allows_origin(origins[0]):
        return _refuse(403, "origin_not_allowed", "this page may not embed the widget")
    flow = (
        ctx.catalog.for_site(parsed.flow_id, site.id) if site.allows_flow(parsed.flow_id) else None
    )
    if flow is None:
        return _refuse(400, "unknown_flow", "unknown flow")
    await endpoint.counts.add(increments(parsed, flow.version, now))
    return web.Response(status=204, headers={"Cache-Control": "no-store"})


def add_beacon_route(app: web.Application, counts: BeaconCounts) -> None:
    """``POST /beacon``, counting into ``counts``; the rate is the WebSocket's."""
    settings = app[CONTEXT].settings
    limiter = BeaconLimiter(settings.rate_per_second, settings.rate_burst)
    app[BEACONS] = BeaconEndpoint(counts, limiter)
    app.router.add_post(BEACON_PATH, beacon)
