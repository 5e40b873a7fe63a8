"""The read API's deliveries: where a site's leads went (docs/read-api.md).

``GET /sites/{site_id}/deliveries`` lists a site's deliveries newest first
(``?status=pending|delivered|dead|erased``, ``limit``, ``cursor``) with the
site's summary; ``GET /sites/{site_id}/deliveries/{delivery_id}`` shows one
with its attempts. A site's key reads only its own site's deliveries (and
summary); no response carries a lead's contact details, a destination's URL
or a secret.
"""

from __future__ import annotations

from aiohttp import web

from projector.api.access import READ_API, ReadApiContext, authenticated, require_site
from projector.api.errors import ApiError, json_response, not_found_response
from projector.api.params import int_param
from services.delivery.model import STATUSES, Status
from services.delivery.payload import iso
from services.delivery.store import DeliveryStore
from services.delivery.views import delivery_json
from services.http_auth import Principal

DELIVERIES = web.AppKey("deliveries", DeliveryStore)
LIMIT, MAX_LIMIT = 50, 500


def _store(request: web.Request) -> DeliveryStore:
    store = request.app.get(DELIVERIES)
    if store is None:
        raise ApiError(404, "not_found", "lead delivery is not configured here")
    return store


def _status(request: web.Request) -> Status | None:
    raw = request.query.get("status")
    if raw is None:
        return None
    for status in STATUSES:
        if raw == status:
            return status
    raise ApiError(400, "bad_status", f"status must be one of {', '.join(STATUSES)}")


async def list_deliveries(
    request: web.Request, ctx: ReadApiContext, principal: Principal
) -> web.Response:
    site_id = request.match_info["site_id"]
    require_site(ctx, principal, site_id)
    store = _store(request)
    status = _status(request)
    limit = int_param(request, "limit", LIMIT, 1, MAX_LIMIT, "bad_limit")
    cursor = request.query.get("cursor")
    if cursor is not None and (len(cursor) > 200 or not cursor.isprintable()):
        raise ApiError(400, "bad_cursor", "cursor is not one this API returned")
    try:
        page = await store.page(site_id, status, limit, cursor)
    except ValueError:
        raise ApiError(400, "bad_cursor", "cursor is not one this API returned") from None
    summary = await store.summary(site_id)
    return json_response(
        {
            "site_id": site_id,
            "summary": {
                "counts": {s: summary.counts.get(s, 0) for s in STATUSES},
                "oldest_pending_captured_at": (
                    None if summary.oldest_pending_at is None else iso(summary.oldest_pending_at)
                ),
            },
            "deliveries": [delivery_json(d, attempts=False) for d in page.deliveries],
            "next_cursor": page.next_cursor,
        }
    )


async def get_delivery(
    request: web.Request, ctx: ReadApiContext, principal: Principal
) -> web.Response:
    site_id = request.match_info["site_id"]
    require_site(ctx, principal, site_id)
    delivery = await _store(request).get(request.match_info["delivery_id"])
    if delivery is None or delivery.site_id != site_id:
        raise not_found_response("delivery")  # another site's delivery looks like none
    return json_response(delivery_json(delivery))


def add_delivery_routes(app: web.Application, store: DeliveryStore) -> None:
    """Mount the deliveries on a read API app (before it starts)."""
    assert READ_API in app
    app[DELIVERIES] = store
    app.router.add_get("/sites/{site_id}/deliveries", authenticated(list_deliveries))
    app.router.add_get("/sites/{site_id}/deliveries/{delivery_id}", authenticated(get_delivery))
