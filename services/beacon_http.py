"""``POST /beacon``: the widget's views and opens (services.beacons), counted per site,
flow version and day. Served by the gateway in the embedded mode and by the
projector (which owns the read models) in the distributed mode.

Checked like the WebSocket: the body's size and shape, the site, the page's
``Origin`` against the site's origins (exactly one Origin header; a beacon is a
POST, so browsers always send it), the flow against the site's flows and the
catalog; a token bucket per client address (services.beacons.BeaconLimiter). Nothing
of the request is kept but the counts: no cookie is read or set, no address or user
agent is stored or logged.

Answers: 204 counted; 400 a malformed beacon, an unknown site or flow; 403 a page
the site does not allow; 413 too large; 429 too many from this address. The widget
never reads them (``sendBeacon``); they are for operators and tests.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from aiohttp import web

from services.beacons import (
    MAX_BEACON_BYTES,
    BeaconCounts,
    BeaconError,
    BeaconLimiter,
    client_address,
    increments,
    parse_beacon,
)
from services.catalog import FlowCatalog
from services.sites import Site

BEACON_PATH = "/beacon"


@dataclass(frozen=True)
class BeaconEndpoint:
    counts: BeaconCounts
    sites: Mapping[str, Site]
    catalog: FlowCatalog
    limiter: BeaconLimiter = field(default_factory=BeaconLimiter)
    client_header: str | None = None  # LEADFLOW_BEACON_CLIENT_HEADER, behind a proxy
    clock: Callable[[], float] = time.time


BEACONS = web.AppKey("beacons", BeaconEndpoint)


def _refuse(status: int, code: str, message: str) -> web.Response:
    body = {"error": {"code": code, "message": message}}
    return web.json_response(body, status=status, headers={"Cache-Control": "no-store"})


async def beacon(request: web.Request) -> web.Response:
    endpoint = request.app[BEACONS]
    now = endpoint.clock()
    client = client_address(request.remote, request.headers, endpoint.client_header)
    if not endpoint.limiter.allow(client, now):
        return _refuse(429, "rate_limited", "too many beacons")
    body = await request.content.read(MAX_BEACON_BYTES + 1)
    try:
        parsed = parse_beacon(body)
    except BeaconError as exc:
        return _refuse(413 if exc.code == "too_large" else 400, exc.code, exc.message)
    site = endpoint.sites.get(parsed.site_id)
    if site is None:
        return _refuse(400, "unknown_site", "unknown site")
    origins = request.headers.getall("Origin", [])
    if len(origins) != 1 or not site.allows_origin(origins[0]):
        return _refuse(403, "origin_not_allowed", "this page may not embed the widget")
    allowed = site.allows_flow(parsed.flow_id)
    flow = endpoint.catalog.for_site(parsed.flow_id, site.id) if allowed else None
    if flow is None:
        return _refuse(400, "unknown_flow", "unknown flow")
    await endpoint.counts.add(increments(parsed, flow.version, now))
    return web.Response(status=204, headers={"Cache-Control": "no-store"})


def add_beacon_route(app: web.Application, endpoint: BeaconEndpoint) -> None:
    app[BEACONS] = endpoint
    app.router.add_post(BEACON_PATH, beacon)
