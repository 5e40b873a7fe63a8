"""The read API's daily rollups: ``GET /flows/{flow_id}/daily`` and
``GET /sites/{site_id}/daily``.

Conversations started and completed and leads per day from ``from`` to ``to``
(inclusive; by default the 30 days up to today (UTC); at most ``MAX_DAYS``,
:mod:`projector.api.params`), with their totals. A flow's rollup is per site
for a site's key, as its funnel is (:mod:`projector.api.funnels`), and adds the
widget's views and opens per day where they are counted.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

from aiohttp import web

from projector.api.access import ReadApiContext, authenticated, require_flow, require_site
from projector.api.errors import json_response
from projector.api.params import day_range
from projector.store import ReadModelStore
from projector.write_set import daily_flow_key, daily_site_key
from services.beacons import FIELDS as BEACON_FIELDS
from services.beacons import daily_beacon_key
from services.http_auth import Principal

DAILY_FIELDS = ("started", "completed", "leads")


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


@authenticated
async def get_flow_daily(
    request: web.Request, ctx: ReadApiContext, principal: Principal
) -> web.Response:
    flow_id = request.match_info["flow_id"]
    site_id = require_flow(request, ctx, principal, flow_id)
    days = day_range(request)
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
    return json_response({"flow_id": flow_id, "site_id": site_id, **rollup})


@authenticated
async def get_site_daily(
    request: web.Request, ctx: ReadApiContext, principal: Principal
) -> web.Response:
    site_id = request.match_info["site_id"]
    require_site(ctx, principal, site_id)
    days = day_range(request)
    rollup = await _daily(ctx.store, [(d, daily_site_key(site_id, d.isoformat())) for d in days])
    return json_response({"site_id": site_id, **rollup})
