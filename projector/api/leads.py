"""The read API's leads: ``GET /sites/{site_id}/leads``.

A site's leads a page at a time (``limit``, ``cursor``), each opened with its
conversation's key: the contact details while the lead is captured, null once
it is erased (crypto-shredding).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from projector.api.access import ReadApiContext, authenticated, require_site
from projector.api.errors import ApiError, json_response
from projector.api.params import int_param
from projector.privacy import LeadRecord, open_lead, open_leads
from projector.store import BadCursor
from projector.views import LeadView
from services.http_auth import Principal
from services.ports import KeyStore

LEADS_LIMIT, LEADS_MAX = 50, 200


async def lead_json(keys: KeyStore, lead: LeadView) -> dict[str, Any]:
    return opened_lead_json(lead, await open_lead(keys, lead))


def opened_lead_json(lead: LeadView, record: LeadRecord) -> dict[str, Any]:
    return {
        "conversation_id": lead.conversation_id,
        "flow_id": lead.flow_id,
        "flow_version": lead.flow_version,
        "captured_at": lead.captured_at,
        "consent": lead.consent,
        "fields_present": list(lead.fields_present),
        "status": record.status,
        "fields": record.fields if record.status == "captured" else None,
    }


@authenticated
async def get_leads(
    request: web.Request, ctx: ReadApiContext, principal: Principal
) -> web.Response:
    site_id = request.match_info["site_id"]
    require_site(ctx, principal, site_id)
    limit = int_param(request, "limit", LEADS_LIMIT, 1, LEADS_MAX, "bad_limit")
    cursor = request.query.get("cursor")
    try:
        page = await ctx.store.leads(site_id, cursor, limit)
    except BadCursor:
        raise ApiError(400, "bad_cursor", "cursor is not one this API returned") from None
    records = await open_leads(ctx.keys, page.leads)
    leads = [
        opened_lead_json(lead, record) for lead, record in zip(page.leads, records, strict=True)
    ]
    return json_response({"site_id": site_id, "leads": leads, "next_cursor": page.next_cursor})
