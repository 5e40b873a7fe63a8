"""Conversation state as a left fold over hand-written events."""

from __future__ import annotations

from typing import Any

import pytest

from schemas.commands import VisitorContext
from schemas.events import (
    ButtonPressed,
    CommandRejected,
    ConversationCompleted,
    ConversationStarted,
    EdgeChosen,
    Event,
    LeadCaptured,
    NodeEntered,
    event_id,
)
from services.conversation.state import (
    LEAD_SUBMITTED,
    ConversationState,
    Rejection,
    Step,
    evolve,
    fold,
)

CID = "conv-s"
CONTEXT = VisitorContext(device="tablet", locale="de-DE")


def h(seq: int, command_seq: int) -> dict[str, Any]:
    """The common event header for event ``seq`` caused by command ``command_seq``."""
    return {
        "conversation_id": CID,
        "seq": seq,
        "id": event_id(CID, seq),
        "at": 1000.0 + seq,
        "command_seq": command_seq,
    }


def rejected(seq: int, command_seq: int, *, consumed: bool) -> CommandRejected:
    return CommandRejected(
        **h(seq, command_seq),
        command_type="PressButton",
        reason="unknown_button" if consumed else "out_of_order",
        detail="nope",
        consumed=consumed,
        fields={"email": "is not a valid email address"} if consumed else {},
    )


# start (cmd 1) -> q1; press a (cmd 2, decision) -> form; lead (cmd 3) -> end
HISTORY: tuple[Event, ...] = (
    ConversationStarted(**h(1, 1), flow_id="f", flow_version=2, site_id="site", context=CONTEXT),
    NodeEntered(**h(2, 1), node_id="hello", kind="message"),
    NodeEntered(**h(3, 1), node_id="q1", kind="question"),
    ButtonPressed(**h(4, 2), node_id="q1", button_id="a"),
    EdgeChosen(
        **h(5, 2),
        node_id="q1",
        button_id="a",
        candidates=("form", "end"),
        chosen="form",
        propensity=0.5,
        policy_version="p",
        seed=1,
    ),
    NodeEntered(**h(6, 2), node_id="form", kind="lead_form"),
    LeadCaptured(
        **h(7, 3),
        node_id="form",
        site_id="site",
        fields_present=("email",),
        consent=False,
        sealed="xx",
    ),
    NodeEntered(**h(8, 3), node_id="end", kind="end"),
    ConversationCompleted(**h(9, 3), node_id="end", lead_captured=True),
)


def test_evolve_rejects_a_gap_in_event_seq() -> None:
    """Applying event 2 to a state at seq 0 must fail instead of silently skipping one."""
    with pytest.raises(ValueError, match="does not follow"):
        evolve(ConversationState(CID), HISTORY[1])


def test_evolve_rejects_an_event_applied_twice() -> None:
    """Re-applying the last event (a redelivery) must be refused, not double-counted."""
    state = evolve(ConversationState(CID), HISTORY[0])
    with pytest.raises(ValueError, match="does not follow"):
        evolve(state, HISTORY[0])


def test_fold_of_no_events_is_the_initial_state() -> None:
    """A conversation with no events must be new with nothing applied."""
    state = fold(ConversationState(CID), [])
    assert state == ConversationState(CID)
    assert (state.status, state.last_command_seq, state.current_node) == ("new", 0, None)


def test_fold_rebuilds_status_flow_and_command_seq() -> None:
    """Folding the history must restore status, flow, site, context, ack and timestamps."""
    state = fold(ConversationState(CID), HISTORY[:3])
    assert state.status == "active"
    assert (state.flow_id, state.flow_version, state.site_id) == ("f", 2, "site")
    assert state.context == CONTEXT
    assert (state.seq, state.last_command_seq) == (3, 1)
    assert (state.started_at, state.updated_at) == (1001.0, 1003.0)
    assert state.current_node == "q1"


def test_fold_rebuilds_steps_with_answers_and_lead() -> None:
    """Steps must record entered nodes, their causing command and the visitor's answers
    (a lead's step keeps its sealed details, for templates that show them)."""
    state = fold(ConversationState(CID), HISTORY)
    lead = next(e for e in HISTORY if e.type == "LeadCaptured")
    assert state.steps == (
        Step(seq=2, node_id="hello", command_seq=1),
        Step(seq=3, node_id="q1", command_seq=1, answer="a"),
        Step(
            seq=6,
            node_id="form",
            command_seq=2,
            answer=LEAD_SUBMITTED,
            sealed="xx",
            event_id=lead.id,
        ),
        Step(seq=8, node_id="end", command_seq=3),
    )
    assert state.answers() == (("q1", "a"), ("form", LEAD_SUBMITTED))
    assert state.lead_captured
    assert state.status == "completed"
    assert (state.seq, state.last_command_seq) == (9, 3)


def test_edge_chosen_changes_nothing_but_seq() -> None:
    """EdgeChosen is analytics only: it must not alter the conversation's path."""
    before = fold(ConversationState(CID), HISTORY[:4])
    after = evolve(before, HISTORY[4])
    assert after.steps == before.steps
    assert (after.seq, after.last_command_seq) == (5, 2)


def test_consumed_rejection_advances_ack_and_remembers_the_error() -> None:
    """A consumed rejection must use its command seq and keep the error for duplicates."""
    state = fold(ConversationState(CID), [*HISTORY[:3], rejected(4, 2, consumed=True)])
    assert state.last_command_seq == 2
    assert state.last_rejection == Rejection(
        "unknown_button", "nope", {"email": "is not a valid email address"}
    )
    assert state.last_rejection.fields == {"email": "is not a valid email address"}
    assert state.current_node == "q1"


def test_last_rejection_is_cleared_by_the_next_accepted_command() -> None:
    """After a rejection, an accepted command must clear it so its duplicate replays success."""
    events = [
        *HISTORY[:3],
        rejected(4, 2, consumed=True),
        ButtonPressed(**h(5, 3), node_id="q1", button_id="b"),
        NodeEntered(**h(6, 3), node_id="end", kind="end"),
    ]
    state = fold(ConversationState(CID), events)
    assert state.last_rejection is None
    assert state.last_command_seq == 3
    assert state.current_node == "end"


def test_unconsumed_rejection_records_the_gap_but_keeps_ack() -> None:
    """An out-of-order rejection must not use a seq, only remember the gap it refused."""
    state = fold(ConversationState(CID), [*HISTORY[:3], rejected(4, 5, consumed=False)])
    assert state.last_command_seq == 1
    assert state.last_gap_rejected == 5
    assert state.last_rejection is None
    assert state.seq == 4
