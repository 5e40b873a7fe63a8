"""The lead as the customer receives it (pure): ``schemas/lead_delivery.v1.json``.

``lead_payload`` builds the JSON document every destination type starts from:
a webhook posts it as is; e-mail and Slack render it for people
(:mod:`services.delivery.render`). It is built from the delivery's
:class:`~services.delivery.model.LeadSnapshot`, the flow version the visitor
ran (question texts and answer labels) and the contact details opened just
before the send. The same lead always gives the same bytes (no send time in
the body), so a retry never carries a different body under the same
``webhook-id``: what could change after the capture (the public URL, the
catalog) is taken once, into the delivery's :class:`~services.delivery.model.Frame`
(:func:`frame`), and :func:`framed_payload` builds from it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import orjson

from schemas.commands import VisitorContext
from schemas.expression_tree import Var
from schemas.flow import FieldType, Flow
from schemas.templates import render
from services.catalog import FlowCatalog
from services.delivery.model import Answer, Frame, Label, LeadSnapshot

PAYLOAD_TYPE = "lead.captured"
PAYLOAD_VERSION = 1


def iso(at: float) -> str:
    """A UTC timestamp, ISO 8601 with milliseconds: ``2026-12-06T07:01:02.345Z``."""
    stamp = datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


def transcript_url(public_url: str, conversation_id: str) -> str:
    return f"{public_url.rstrip('/')}/api/v1/conversations/{conversation_id}"


def frame(lead: LeadSnapshot, flow: Flow | None, public_url: str) -> Frame:
    """The payload's non-personal inputs: taken when the delivery is created and
    kept with it, so a restart on another public URL, or a worker whose catalog
    lacks the flow version, still sends the same bytes. ``flow`` is the version
    the visitor ran (None if this process does not know it: ids stand in for texts)."""
    form = flow.nodes.get(lead.node_id) if flow is not None else None
    consent = [f for f in form.fields if f.type is FieldType.CONSENT] if form is not None else []
    return Frame(
        transcript_url=transcript_url(public_url, lead.conversation_id),
        flow_title=flow.title if flow is not None else "",
        consent_text=consent[0].label if consent else None,
        consent_fields=tuple(f.name for f in consent),
        labels=tuple(_label(flow, a.node_id, a.button_id) for a in lead.answers),
    )


def framing(catalog: FlowCatalog, public_url: str) -> Callable[[LeadSnapshot], Frame]:
    """:func:`frame` with this catalog and public URL: the intake's ``framing``."""

    def framed(lead: LeadSnapshot) -> Frame:
        return frame(lead, catalog.get(lead.flow_id, lead.flow_version), public_url)

    return framed


def lead_payload(
    lead: LeadSnapshot,
    flow: Flow | None,
    contact: Mapping[str, str],
    public_url: str,
) -> dict[str, Any]:
    """The payload document, framed now (:func:`frame`)."""
    return framed_payload(lead, frame(lead, flow, public_url), contact)


def framed_payload(lead: LeadSnapshot, framed: Frame, contact: Mapping[str, str]) -> dict[str, Any]:
    """The payload document: the lead, its frame and the contact details just opened."""
    fields = {k: v for k, v in contact.items() if k not in framed.consent_fields}
    consent = {
        "given": lead.consent,
        "text": framed.consent_text,
        "at": iso(lead.captured_at) if lead.consent else None,
    }
    data = {
        "lead_id": lead.event_id,
        "site_id": lead.site_id,
        "flow": {"id": lead.flow_id, "version": lead.flow_version, "title": framed.flow_title},
        "conversation_id": lead.conversation_id,
        "started_at": iso(lead.started_at),
        "captured_at": iso(lead.captured_at),
        "contact": dict(sorted(fields.items())),
        "consent": consent,
        "answers": [
            _answer(a, label) for a, label in zip(lead.answers, framed.labels, strict=True)
        ],
        "context": _context(lead.context),
        "transcript_url": framed.transcript_url,
    }
    return {
        "type": PAYLOAD_TYPE,
        "version": PAYLOAD_VERSION,
        "timestamp": iso(lead.captured_at),
        "data": data,
    }


def _context(ctx: VisitorContext) -> dict[str, Any]:
    return {
        "device": ctx.device,
        "locale": ctx.locale,
        "time_zone": ctx.time_zone,
        "referrer": ctx.referrer,
        "utm": {"source": ctx.utm_source, "medium": ctx.utm_medium, "campaign": ctx.utm_campaign},
    }


def _no_value(var: Var) -> None:
    return None


def _label(flow: Flow | None, node_id: str, button_id: str) -> Label:
    """A question and an answer as the flow's texts say them, templates rendered with
    their fallbacks (a payload never carries a value a template would insert)."""
    node = flow.nodes.get(node_id) if flow is not None else None
    if node is None:
        return Label(question=node_id, answer=button_id)
    answer = next((b.label for b in node.buttons if b.id == button_id), button_id)
    return Label(
        question=render(node.text, _no_value), answer=render(answer, _no_value, markdown=False)
    )


def _answer(answer: Answer, label: Label) -> dict[str, str]:
    return {
        "question_id": answer.node_id,
        "question": label.question,
        "answer_id": answer.button_id,
        "answer": label.answer,
    }


def payload_bytes(payload: Mapping[str, Any]) -> bytes:
    return orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)
