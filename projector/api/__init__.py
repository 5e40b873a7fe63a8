"""The read API: conversations, leads, funnels and daily rollups over HTTP.

``create_read_api`` builds an aiohttp sub-application; a composition root
mounts it (``app.add_subapp("/api/v1", create_read_api(...))``). It only reads
the read-model store (and the key store, to open leads); docs/read-api.md is
its reference.

Status codes, in the order they are decided:

- 401 ``unauthorized``: no key, or a key that is not a site's or the admin's;
- 403 ``forbidden``: a valid key asking for another site's leads or rollups,
  or for a flow its site does not run (site and flow ids are not secret: they
  are in every embedding page);

A flow's funnel and daily rollup are per site for a site's key: only its own
conversations count, never another site's on the same flow id. The admin key
reads all sites together, or one site with ``?site=``.
- 400: a malformed parameter (checked only once the key may ask);
- 404 ``not_found``: nothing there. A conversation of another site is also
  404, never 403: conversation ids are unguessable capabilities, and a 403
  would confirm to another site that the id exists.

Error bodies carry a code and a fixed message, never data. Nothing here logs a
request or response body; the only log line is an unexpected exception's.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web

from projector.api.access import (
    READ_API,
    ReadApiContext,
    _authenticated,
    _require_flow,
    _require_site,
    presented_key,
)
from projector.api.conversations import get_conversation
from projector.api.errors import ApiError, _error, _json, _not_found
from projector.api.leads import get_leads
from projector.api.params import _day_range, _int_param
from projector.plan import daily_flow_key, daily_site_key, funnel_key
from projector.store import ReadModelStore
from schemas.flow import Flow, NodeKind
from services.beacons import FIELDS as BEACON_FIELDS
from services.beacons import BeaconCounts, beacon_key, daily_beacon_key
from services.catalog import FlowCatalog
from services.http_auth import Principal, authenticate, check_admin_sha256
from services.ports import KeyStore
from services.sites import Site

log = logging.getLogger("leadflow.read_api")

DAILY_FIELDS = ("started", "completed", "leads")
TOTAL_FIELDS = ("started", "completed", "leads", "rejected", "abandoned")


@web.middleware
async def _errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return _error(exc.status, exc.code, exc.message)
    except web.HTTPException as exc:  # the router's 404 and 405
        ctx = request.app.get(READ_API)
        if ctx is not None and not authenticate(
            presented_key(request), ctx.sites, ctx.admin_key_sha256
        ):
            return _error(401, "unauthorized", "a valid API key is required")  # 401 comes first
        if exc.status == 404:
            return _error(404, "not_found", "no such endpoint")
        if exc.status == 405:
            allowed = exc.headers.get("Allow", "GET")
            response = _error(405, "method_not_allowed", f"this endpoint supports {allowed}")
            response.headers["Allow"] = allowed
            return response
        return _error(exc.status, "http_error", exc.reason)
    except Exception:
        # The request path names ids only; no body, parameter value or lead is logged.
        log.exception("read api: unexpected error on %s %s", request.method, request.path)
        return _error(500, "internal", "internal error")


# -- funnels ------------------------------------------------------------------


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _prefixed(counters: Mapping[str, int], prefix: str) -> dict[str, int]:
    return {k[len(prefix) :]: v for k, v in counters.items() if k.startswith(prefix)}


def funnel_json(
    flow_id: str,
    version: int,
    flow: Flow | None,
    counters: Mapping[str, int],
    site_id: str | None = None,
) -> dict[str, Any]:
    """The funnel of one flow version (of one site, or of all: ``site_id`` None):
    nodes in the flow's order (then any the flow does not have, busiest first),
    edges likewise, and the totals."""
    entered, left = _prefixed(counters, "entered:"), _prefixed(counters, "left:")
    converted = _prefixed(counters, "converted:")
    went_back = _prefixed(counters, "went_back:")
    nudged, abandoned = _prefixed(counters, "nudged:"), _prefixed(counters, "abandoned:")
    edges, edges_converted = _prefixed(counters, "edge:"), _prefixed(counters, "edge_converted:")

    node_ids = list(flow.nodes) if flow is not None else []
    extra = {*entered, *left, *converted} - set(node_ids)
    node_ids += sorted(extra, key=lambda n: (-entered.get(n, 0), n))
    nodes = []
    for node_id in node_ids:
        node = flow.nodes.get(node_id) if flow is not None else None
        n_in, n_left, n_conv = (
            entered.get(node_id, 0),
            left.get(node_id, 0),
            converted.get(node_id, 0),
        )
        nodes.append(
            {
                "node_id": node_id,
                "kind": None if node is None else node.kind.value,
                "text": None if node is None else node.text,
                "entered": n_in,
                "left": n_left,
                "converted": n_conv,
                "drop_off": None
                if node is not None and node.kind is NodeKind.END
                else n_in - n_left,
                "conversion_rate": _rate(n_conv, n_in),
                "went_back": went_back.get(node_id, 0),
                "nudged": nudged.get(node_id, 0),
                "abandoned": abandoned.get(node_id, 0),
            }
        )

    edge_keys: list[str] = []
    if flow is not None:
        for node in flow.nodes.values():
            for target in node.successors():
                key = f"{node.id}>{target}"
                if key not in edge_keys:
                    edge_keys.append(key)
    extra_edges = {*edges, *edges_converted} - set(edge_keys)
    edge_keys += sorted(extra_edges, key=lambda e: (-edges.get(e, 0), e))
    edge_rows = []
    for key in edge_keys:
        source, _, target = key.partition(">")
        count, conv = edges.get(key, 0), edges_converted.get(key, 0)
        edge_rows.append(
            {
                "from": source,
                "to": target,
                "count": count,
                "converted": conv,
                "conversion_rate": _rate(conv, count),
            }
        )

    seen = {name: counters.get(name, 0) for name in BEACON_FIELDS.values()}
    totals: dict[str, Any] = seen | {name: counters.get(name, 0) for name in TOTAL_FIELDS}
    totals["conversion_rate"] = _rate(totals["leads"], totals["started"])
    return {
        "flow_id": flow_id,
        "flow_version": version,
        "site_id": site_id,
        "title": None if flow is None else flow.title,
        "totals": totals,
        "nodes": nodes,
        "edges": edge_rows,
    }


@_authenticated
async def get_funnel(
    request: web.Request, ctx: ReadApiContext, principal: Principal
) -> web.Response:
    flow_id = request.match_info["flow_id"]
    site_id = _require_flow(request, ctx, principal, flow_id)
    version = _int_param(request, "version", 0, 1, 2**31 - 1, "bad_version")
    if "version" not in request.query:
        latest = ctx.catalog.latest(flow_id) if ctx.catalog is not None else None
        if latest is None:
            raise ApiError(400, "version_required", "version is required here")
        version = latest.version
    flow = ctx.catalog.get(flow_id, version) if ctx.catalog is not None else None
    # a site's own counters decide the 404 too: another site's traffic on an
    # old version must not show through
    counters = await ctx.store.counters(funnel_key(flow_id, version, site_id))
    if ctx.catalog is not None and flow is None and not counters:
        raise _not_found("flow version")
    if ctx.beacons is not None:  # viewed and opened, before started
        counters = counters | await ctx.beacons.counters(beacon_key(flow_id, version, site_id))
    funnel = funnel_json(flow_id, version, flow, counters, site_id)
    if ctx.beacons is None:
        funnel["totals"].update(dict.fromkeys(BEACON_FIELDS.values()))  # not counted here
    return _json(funnel)


# -- daily rollups ------------------------------------------------------------


async def _daily(store: ReadModelStore, keys: list[tuple[dt.date, str]]) -> dict[str, Any]:
    counters = await asyncio.gather(*(store.counters(key) for _, key in keys))
    days: list[dict[str, Any]] = [
        {"date": day.isoformat(), **{f: c.get(f, 0) for f in DAILY_FIELDS}}
        for (day, _), c in zip(keys, counters, strict=True)
    ]
    totals = {f: sum(c.get(f, 0) for c in counters) for f in DAILY_FIELDS}
    return {
        "from": keys[0][0].isoformat(),
        "to": keys[-1][0].isoformat(),
        "days": days,
        "totals": totals,
    }


@_authenticated
async def get_flow_daily(
    request: web.Request, ctx: ReadApiContext, principal: Principal
) -> web.Response:
    flow_id = request.match_info["flow_id"]
    site_id = _require_flow(request, ctx, principal, flow_id)
    days = _day_range(request)
    keys = [(d, daily_flow_key(flow_id, d.isoformat(), site_id)) for d in days]
    rollup = await _daily(ctx.store, keys)
    if ctx.beacons is not None:  # viewed and opened per day
        beacons = ctx.beacons
        seen = await asyncio.gather(
            *(beacons.counters(daily_beacon_key(flow_id, d.isoformat(), site_id)) for d in days)
        )
        for row, counts in zip(rollup["days"], seen, strict=True):
            row.update({f: counts.get(f, 0) for f in BEACON_FIELDS.values()})
        for f in BEACON_FIELDS.values():
            rollup["totals"][f] = sum(counts.get(f, 0) for counts in seen)
    return _json({"flow_id": flow_id, "site_id": site_id, **rollup})


@_authenticated
async def get_site_daily(
    request: web.Request, ctx: ReadApiContext, principal: Principal
) -> web.Response:
    site_id = request.match_info["site_id"]
    _require_site(ctx, principal, site_id)
    days = _day_range(request)
    rollup = await _daily(ctx.store, [(d, daily_site_key(site_id, d.isoformat())) for d in days])
    return _json({"site_id": site_id, **rollup})


# -- the application ------------------------------------------------------------


def create_read_api(
    store: ReadModelStore,
    keys: KeyStore,
    sites: Mapping[str, Site],
    catalog: FlowCatalog | None,
    admin_key_sha256: str | None = None,
    beacons: BeaconCounts | None = None,
) -> web.Application:
    """The read API as a sub-application, to be mounted at ``/api/v1``.

    ``beacons``: where the widget's views and opens are counted; None (the
    distributed mode, for now): the funnel's ``viewed`` and ``opened`` are null.

    ``admin_key_sha256`` is the SHA-256 hex of a key that may read every site;
    None: no admin key. A site without ``api_key_sha256`` cannot be read but
    by the admin."""
    admin = check_admin_sha256(admin_key_sha256)
    if admin is not None and any(s.api_key_sha256 == admin for s in sites.values()):
        raise ValueError("the admin key must not be a site's key")
    app = web.Application(middlewares=[_errors])
    app[READ_API] = ReadApiContext(store, keys, dict(sites), catalog, admin, beacons)
    app.router.add_get("/conversations/{conversation_id}", get_conversation)
    app.router.add_get("/sites/{site_id}/leads", get_leads)
    app.router.add_get("/sites/{site_id}/daily", get_site_daily)
    app.router.add_get("/flows/{flow_id}/funnel", get_funnel)
    app.router.add_get("/flows/{flow_id}/daily", get_flow_daily)
    return app
