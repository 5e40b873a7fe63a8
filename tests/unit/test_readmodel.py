"""The pure read-model projection: events -> ConversationView, and LeadView.

The events come from the real ConversationService on the in-memory fakes,
playing the shipped solar-quote flow, so the projection is tested against the
event stream the decider really produces.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import orjson

from policy.uniform import UniformPolicy
from projector.readmodel import ConversationView, lead_of, project
from schemas.commands import PressButton, StartConversation, SubmitLead, VisitorContext
from schemas.events import (
    ButtonPressed,
    CommandRejected,
    ConversationStarted,
    Event,
    LeadCaptured,
)
from services.catalog import FlowCatalog
from services.conversation.sealing import AesGcmSealer
from services.conversation.service import ConversationService
from services.fakes import InMemoryEventLog, InMemoryKeyStore

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "flows"
CATALOG = FlowCatalog.from_directory(EXAMPLES)
CID = "conv-rm"
T0 = 1_700_000_000.0
LEAD = {"name": "Ann Example", "email": "ann@example.com", "consent": "true"}
CONTEXT = VisitorContext(device="mobile", utm_source="newsletter", locale="en-GB")


class Played:
    def __init__(self, events: list[Event], keys: InMemoryKeyStore) -> None:
        self.events = events
        self.keys = keys


async def play() -> Played:
    """Play solar-quote to its end (first button each time, one unknown button on the way)."""
    log, keys = InMemoryEventLog(), InMemoryKeyStore()
    service = ConversationService(log, keys, CATALOG, UniformPolicy())
    flow = CATALOG.latest("solar-quote")
    assert flow is not None
    reply = await service.handle(
        StartConversation(
            conversation_id=CID,
            seq=1,
            at=T0,
            flow_id="solar-quote",
            site_id="demo",
            context=CONTEXT,
        )
    )
    seq = 1
    refused_once = False
    while reply.messages and not reply.messages[-1].done:
        seq += 1
        message = reply.messages[-1]
        at = T0 + seq
        if message.kind == "lead_form":
            reply = await service.handle(
                SubmitLead(
                    conversation_id=CID, seq=seq, at=at, node_id=message.node_id, fields=LEAD
                )
            )
            continue
        button = message.buttons[0].id if refused_once else "no-such-button"
        refused = await service.handle(
            PressButton(
                conversation_id=CID, seq=seq, at=at, node_id=message.node_id, button_id=button
            )
        )
        if refused.error is not None:
            assert refused.error.code == "unknown_button"
            refused_once = True
            continue
        reply = refused
    assert reply.messages[-1].done
    return Played(await log.read_conversation(CID), keys)


def fold(events: Iterable[Event], view: ConversationView | None = None) -> ConversationView | None:
    for event in events:
        view = project(view, event)
    return view


async def test_view_is_none_until_the_conversation_started() -> None:
    """Regression: events before ConversationStarted must not create a half-empty view."""
    events = (await play()).events
    assert isinstance(events[0], ConversationStarted)
    for event in events[1:]:
        assert project(None, event) is None


async def test_started_view_copies_the_start_event() -> None:
    """Regression: the view's identity and context come from ConversationStarted."""
    start = (await play()).events[0]
    view = project(None, start)
    assert view == ConversationView(
        conversation_id=CID,
        site_id="demo",
        flow_id="solar-quote",
        flow_version=1,
        status="active",
        current_node="",
        last_seq=1,
        lead_captured=False,
        answers=(),
        device="mobile",
        utm_source="newsletter",
        started_at=T0,
        updated_at=T0,
    )


async def test_view_tracks_a_whole_conversation() -> None:
    """Regression: current node, answers, lead, completion and last_seq follow the events."""
    events = (await play()).events
    view = fold(events)
    assert view is not None
    assert view.status == "completed"
    assert view.lead_captured is True
    assert view.current_node == "end_survey"
    assert view.last_seq == events[-1].seq == len(events)
    assert view.updated_at == events[-1].at
    assert view.started_at == T0
    presses = [(e.node_id, e.button_id) for e in events if isinstance(e, ButtonPressed)]
    assert view.answers == tuple(presses)
    assert view.answers[0] == ("property", "house")
    assert ("survey", "yes") in view.answers


async def test_view_status_is_active_mid_conversation() -> None:
    """Regression: a conversation is only completed once ConversationCompleted is projected."""
    events = (await play()).events
    midway = next(i for i, e in enumerate(events) if isinstance(e, LeadCaptured))
    view = fold(events[:midway])
    assert view is not None
    assert view.status == "active"
    assert view.lead_captured is False
    after_lead = project(view, events[midway])
    assert after_lead is not None
    assert after_lead.lead_captured is True


async def test_rejected_commands_only_advance_last_seq() -> None:
    """Regression: a CommandRejected event must not change the visitor's answers or node."""
    events = (await play()).events
    i = next(i for i, e in enumerate(events) if isinstance(e, CommandRejected))
    before = fold(events[:i])
    after = project(before, events[i])
    assert before is not None
    assert after is not None
    assert after.answers == before.answers
    assert after.current_node == before.current_node
    assert after.last_seq == events[i].seq == before.last_seq + 1


async def test_replaying_an_event_at_or_below_last_seq_leaves_the_view_unchanged() -> None:
    """Regression: redelivered events (at-least-once) must not double-count answers."""
    events = (await play()).events
    view = fold(events)
    for event in events:
        assert project(view, event) is view
    midway = fold(events[:5])
    assert midway is not None
    for event in events[:5]:
        assert project(midway, event) is midway


async def test_folding_the_log_twice_gives_the_same_view() -> None:
    """Regression: re-running the projector over the whole log is idempotent."""
    events = (await play()).events
    once = fold(events)
    assert fold(events, once) == once
    replayed_prefix = fold(events, fold(events[:7]))
    assert replayed_prefix == once


async def test_views_from_two_identical_runs_are_equal() -> None:
    """Regression: the projection depends only on the (deterministic) events."""
    assert fold((await play()).events) == fold((await play()).events)


async def test_lead_of_keeps_details_sealed() -> None:
    """Regression: LeadView copies metadata but carries the contact details only sealed."""
    played = await play()
    event = next(e for e in played.events if isinstance(e, LeadCaptured))
    lead = lead_of(event, "solar-quote")
    assert lead.conversation_id == CID
    assert lead.site_id == "demo"
    assert lead.flow_id == "solar-quote"
    assert lead.event_id == event.id
    assert lead.captured_at == event.at
    assert lead.fields_present == ("consent", "email", "name")
    assert lead.consent is True
    assert lead.sealed == event.sealed
    assert "ann@example.com" not in lead.sealed
    assert "ann@example.com" not in repr(lead)
    key = await played.keys.get(CID)
    assert key is not None
    opened = orjson.loads(AesGcmSealer(key).open(lead.sealed, lead.event_id))
    assert opened["email"] == "ann@example.com"
