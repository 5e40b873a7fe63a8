"""The read API's conversation: ``GET /conversations/{conversation_id}``.

One conversation with a page of its transcript (``after_seq``, ``limit``) and
its lead's summary: status, capture time, consent and which fields are
present, never the contact details (those are the leads endpoint's). Another
site's conversation is 404, never 403: its id is an unguessable capability
(see :mod:`projector.api`).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from aiohttp import web

from projector.api.access import ReadApiContext, authenticated
from projector.api.errors import json_response, not_found_response
from projector.api.params import int_param
from projector.privacy import open_lead
from projector.views import ConversationView, LeadView
from services.http_auth import Principal
from services.ports import KeyStore

TRANSCRIPT_LIMIT, TRANSCRIPT_MAX = 100, 500


async def _lead_summary(keys: KeyStore, lead: LeadView | None) -> dict[str, Any] | None:
    """A conversation's lead without its contact details (those: the leads endpoint)."""
    if lead is None:
        return None
    record = await open_lead(keys, lead)
    return {
        "status": record.status,
        "captured_at": lead.captured_at,
        "consent": lead.consent,
        "fields_present": list(lead.fields_present),
    }


def conversation_json(view: ConversationView) -> dict[str, Any]:
    return {
        "conversation_id": view.conversation_id,
        "site_id": view.site_id,
        "flow_id": view.flow_id,
        "flow_version": view.flow_version,
        "status": view.status,
        "current_node": view.current_node,
        "last_seq": view.last_seq,
        "lead_captured": view.lead_captured,
        "answers": [{"node_id": n, "button_id": b} for n, b in view.answers],
        "context": asdict(view.context),
        "started_at": view.started_at,
        "updated_at": view.updated_at,
        "completed_at": view.completed_at,
        "lead_at": view.lead_at,
        "nodes": list(view.nodes),
        "edges": list(view.edges),
        "left": list(view.left),
        "went_back": list(view.went_back),
    }


@authenticated
async def get_conversation(
    request: web.Request, ctx: ReadApiContext, principal: Principal
) -> web.Response:
    conversation_id = request.match_info["conversation_id"]
    after_seq = int_param(request, "after_seq", 0, 0, 10**18, "bad_after_seq")
    limit = int_param(request, "limit", TRANSCRIPT_LIMIT, 1, TRANSCRIPT_MAX, "bad_limit")
    view = await ctx.store.conversation(conversation_id)
    if view is None or not principal.may_read_site(view.site_id):
        raise not_found_response("conversation")  # another site's: 404 too, see the module doc
    entries = await ctx.store.transcript(conversation_id, after_seq, limit + 1)
    more = len(entries) > limit
    entries = entries[:limit]
    body = conversation_json(view)
    body["lead"] = await _lead_summary(ctx.keys, await ctx.store.lead(conversation_id))
    body["transcript"] = entries
    body["next_after_seq"] = entries[-1]["seq"] if more else None
    return json_response(body)
