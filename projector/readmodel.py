"""Pure projections: events -> read-model views. No I/O here.

A view remembers the last event seq it applied; ``project`` ignores an event at
or below it, so replaying any part of the log changes nothing (idempotence).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from schemas.events import (
    ButtonPressed,
    ConversationCompleted,
    ConversationStarted,
    Event,
    LeadCaptured,
    NodeEntered,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class ConversationView:
    conversation_id: str
    site_id: str
    flow_id: str
    flow_version: int
    status: str
    current_node: str
    last_seq: int
    lead_captured: bool
    answers: tuple[tuple[str, str], ...]
    device: str
    utm_source: str
    started_at: float
    updated_at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class LeadView:
    """A lead as stored: the contact details stay sealed until read with the key."""

    conversation_id: str
    site_id: str
    flow_id: str
    event_id: str
    captured_at: float
    sealed: str
    fields_present: tuple[str, ...]
    consent: bool


def project(view: ConversationView | None, event: Event) -> ConversationView | None:
    """Apply ``event`` to the conversation's view (None until it has started)."""
    if view is None:
        if not isinstance(event, ConversationStarted):
            return None
        return ConversationView(
            conversation_id=event.conversation_id,
            site_id=event.site_id,
            flow_id=event.flow_id,
            flow_version=event.flow_version,
            status="active",
            current_node="",
            last_seq=event.seq,
            lead_captured=False,
            answers=(),
            device=event.context.device,
            utm_source=event.context.utm_source,
            started_at=event.at,
            updated_at=event.at,
        )
    if event.seq <= view.last_seq:
        return view
    match event:
        case NodeEntered(node_id=node_id):
            view = replace(view, current_node=node_id)
        case ButtonPressed(node_id=node_id, button_id=button_id):
            view = replace(view, answers=(*view.answers, (node_id, button_id)))
        case LeadCaptured():
            view = replace(view, lead_captured=True)
        case ConversationCompleted():
            view = replace(view, status="completed")
        case _:
            pass
    return replace(view, last_seq=event.seq, updated_at=event.at)


def lead_of(event: LeadCaptured, flow_id: str) -> LeadView:
    return LeadView(
        conversation_id=event.conversation_id,
        site_id=event.site_id,
        flow_id=flow_id,
        event_id=event.id,
        captured_at=event.at,
        sealed=event.sealed,
        fields_present=event.fields_present,
        consent=event.consent,
    )
