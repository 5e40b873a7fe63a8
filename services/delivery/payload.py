"""The lead as the customer receives it (pure): ``schemas/lead_delivery.v1.json``.

``lead_payload`` builds the JSON document every destination type starts from:
a webhook posts it as is; e-mail and Slack render it for people
(:mod:`services.delivery.render`). It is built from the delivery's
:class:`~services.delivery.model.LeadSnapshot`, the flow version the visitor
ran (question texts and answer labels) and the contact details opened just
before the send. The same lead always gives the same bytes (no send time in
the body), so a retry never carries a different body under the same
``webhook-id``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import orjson

from schemas.flow import FieldType, Flow
from services.delivery.model import LeadSnapshot

PAYLOAD_TYPE = "lead.captured"
PAYLOAD_VERSION = 1


def iso(at: float) -> str:
    """A UTC timestamp, ISO 8601 with milliseconds: ``2026-12-06T07:01:02.345Z``."""
    stamp = datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


def transcript_url(public_url: str, conversation_id: str) -> str:
    return f"{public_url.rstrip('/')}/api/v1/conversations/{conversation_id}"


def lead_payload(
    lead: LeadSnapshot,
    flow: Flow | None,
    contact: Mapping[str, str],
    public_url: str,
) -> dict[str, Any]:
    """The payload document. ``flow`` is the version the visitor ran (None if this
    process does not know it: ids stand in for texts)."""
    form = flow.nodes.get(lead.node_id) if flow is not None else None
    consent_fields = (
        [f for f in form.fields if f.type is FieldType.CONSENT] if form is not None else []
    )
    fields = {k: v for k, v in contact.items() if k not in {f.name for f in consent_fields}}
    consent = {
        "given": lead.consent,
        "text": consent_fields[0].label if consent_fields else None,
        "at": iso(lead.captured_at) if lead.consent else None,
    }
    ctx = lead.context
    data = {
        "lead_id": lead.event_id,
        "site_id": lead.site_id,
        "flow": {
            "id": lead.flow_id,
            "version": lead.flow_version,
            "title": flow.title if flow is not None else "",
        },
        "conversation_id": lead.conversation_id,
        "started_at": iso(lead.started_at),
        "captured_at": iso(lead.captured_at),
        "contact": dict(sorted(fields.items())),
        "consent": consent,
        "answers": [_answer(flow, a.node_id, a.button_id) for a in lead.answers],
        "context": {
            "device": ctx.device,
            "locale": ctx.locale,
            "time_zone": ctx.time_zone,
            "referrer": ctx.referrer,
            "utm": {
                "source": ctx.utm_source,
                "medium": ctx.utm_medium,
                "campaign": ctx.utm_campaign,
            },
        },
        "transcript_url": transcript_url(public_url, lead.conversation_id),
    }
    return {
        "type": PAYLOAD_TYPE,
        "version": PAYLOAD_VERSION,
        "timestamp": iso(lead.captured_at),
        "data": data,
    }


def _answer(flow: Flow | None, node_id: str, button_id: str) -> dict[str, str]:
    node = flow.nodes.get(node_id) if flow is not None else None
    label = button_id
    if node is not None:
        label = next((b.label for b in node.buttons if b.id == button_id), button_id)
    return {
        "question_id": node_id,
        "question": node.text if node is not None else node_id,
        "answer_id": button_id,
        "answer": label,
    }


def payload_bytes(payload: Mapping[str, Any]) -> bytes:
    return orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)
