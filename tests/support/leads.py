"""A captured lead for delivery tests: its snapshot, payload and delivery (no I/O).

Built on the unit tier's test quiz (tests/unit/flows.py): the visitor answers
"Big", "Yes please" and "Red", then fills the contact form.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from schemas.commands import VisitorContext
from schemas.events import event_id
from services.delivery.config import Destination
from services.delivery.model import Answer, Delivery, LeadSnapshot, delivery_id
from services.delivery.payload import lead_payload, payload_bytes
from tests.unit.flows import quiz

SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # 24 bytes of key
OTHER_SECRET = "whsec_" + "dGhpcyBpcyBhbm90aGVyIHNlY3JldCBrZXkh"
PUBLIC_URL = "https://leads.example.com"
CONTACT = {
    "name": "Ada <b>Lovelace</b> & Co",
    "email": "ada@example.org",
    "phone": "+44 20 7946 0958",
    "consent": "true",
}
CAPTURED_AT = 1_780_000_000.25


def snapshot(conversation_id: str = "c-0001", **changes: Any) -> LeadSnapshot:
    lead = LeadSnapshot(
        event_id=event_id(conversation_id, 7),
        conversation_id=conversation_id,
        site_id="demo",
        flow_id="quiz",
        flow_version=1,
        node_id="contact",
        captured_at=CAPTURED_AT,
        started_at=CAPTURED_AT - 42.5,
        consent=True,
        fields_present=("consent", "email", "name", "phone"),
        sealed="sealed-blob",
        context=VisitorContext(
            device="mobile",
            referrer="https://search.example/?q=solar",
            utm_source="news",
            utm_medium="email",
            utm_campaign="spring",
            locale="en-GB",
            time_zone="Europe/London",
        ),
        answers=(
            Answer(node_id="size", button_id="big"),
            Answer(node_id="extra", button_id="yes"),
            Answer(node_id="colour", button_id="red"),
        ),
    )
    return replace(lead, **changes)


def payload(
    lead: LeadSnapshot | None = None, contact: dict[str, str] | None = None
) -> dict[str, Any]:
    return lead_payload(lead or snapshot(), quiz(), contact or CONTACT, PUBLIC_URL)


def delivery(destination: Destination, lead: LeadSnapshot | None = None) -> Delivery:
    lead = lead or snapshot()
    return Delivery(
        id=delivery_id(lead.event_id, destination.name),
        site_id=lead.site_id,
        destination=destination.name,
        kind=destination.kind,
        lead=lead,
        created_at=lead.captured_at,
        next_at=lead.captured_at,
        series_at=lead.captured_at,
    )


def body(doc: dict[str, Any]) -> bytes:
    return payload_bytes(doc)
