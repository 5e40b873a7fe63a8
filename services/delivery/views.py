"""A delivery as operators and customers see it (CLI and read API), pure.

Never the lead's contact details, never a destination's URL or secret: ids,
statuses, times and each attempt's outcome.
"""

from __future__ import annotations

from typing import Any

from services.delivery.model import Attempt, Delivery
from services.delivery.payload import iso


def attempt_json(attempt: Attempt) -> dict[str, Any]:
    return {
        "at": iso(attempt.at),
        "seconds": attempt.seconds,
        "outcome": attempt.outcome,
        "status_code": attempt.status_code,
        "detail": attempt.detail,
    }


def delivery_json(delivery: Delivery, *, attempts: bool = True) -> dict[str, Any]:
    lead = delivery.lead
    out: dict[str, Any] = {
        "id": delivery.id,
        "site_id": delivery.site_id,
        "destination": delivery.destination,
        "type": delivery.kind,
        "status": delivery.status,
        "reason": delivery.reason or None,
        "lead_id": lead.event_id,
        "conversation_id": lead.conversation_id,
        "flow": {"id": lead.flow_id, "version": lead.flow_version},
        "captured_at": iso(lead.captured_at),
        "created_at": iso(delivery.created_at),
        "next_attempt_at": iso(delivery.next_at) if delivery.status == "pending" else None,
        "delivered_at": iso(delivery.delivered_at) if delivery.delivered_at else None,
        "attempt_count": len(delivery.attempts),
        "replays": delivery.replays,
    }
    if attempts:
        out["attempts"] = [attempt_json(a) for a in delivery.attempts]
    return out
