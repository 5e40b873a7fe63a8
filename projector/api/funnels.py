"""The read API's funnel: ``GET /flows/{flow_id}/funnel``.

One flow version's funnel (``version``, default the catalog's latest): each
node's entries, exits, conversions and drop-off in the flow's order, each
edge's traffic, and the totals. For a site's key it counts only that site's
conversations, never another site's on the same flow id; the admin key reads
all sites together, or one with ``?site=``. The widget's views and opens come
from the beacon counts where there are any (embedded mode), else they are null.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from projector.api.access import ReadApiContext, authenticated, require_flow
from projector.api.errors import ApiError, json_response, not_found_response
from projector.api.params import int_param
from projector.write_set import funnel_key
from schemas.flow import Flow, NodeKind
from services.beacons import FIELDS as BEACON_FIELDS
from services.beacons import beacon_key
from services.http_auth import Principal

TOTAL_FIELDS = ("started", "completed", "leads", "rejected", "abandoned")


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


@authenticated
async def get_funnel(
    request: web.Request, ctx: ReadApiContext, principal: Principal
) -> web.Response:
    flow_id = request.match_info["flow_id"]
    site_id = require_flow(request, ctx, principal, flow_id)
    version = int_param(request, "version", 0, 1, 2**31 - 1, "bad_version")
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
        raise not_found_response("flow version")
    if ctx.beacons is not None:  # viewed and opened, before started
        counters = counters | await ctx.beacons.counters(beacon_key(flow_id, version, site_id))
    funnel = funnel_json(flow_id, version, flow, counters, site_id)
    if ctx.beacons is None:
        funnel["totals"].update(dict.fromkeys(BEACON_FIELDS.values()))  # not counted here
    return json_response(funnel)
