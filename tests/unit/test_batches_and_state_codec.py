"""Event batches (the events topic's records) and the state codec round-trip exactly."""

from __future__ import annotations

from dataclasses import replace

import orjson
import pytest

from policy.uniform import UniformPolicy
from schemas.batches import decode_batch, encode_batch
from schemas.codec import MessageError, UnsupportedVersion
from schemas.commands import Command, PressButton, StartConversation, SubmitLead
from schemas.events import Event
from services.conversation.decider import decide
from services.conversation.sealing import AesGcmSealer, NoSealer
from services.conversation.state import ConversationState
from services.conversation.state_codec import decode_state, encode_state
from tests.unit.flows import quiz

KEY = bytes(range(32))


def played() -> tuple[ConversationState, list[list[Event]]]:
    """A conversation through start, a decision, a rejected press and a lead."""
    flow, state = quiz(), ConversationState("c1")
    batches: list[list[Event]] = []
    commands: list[Command] = [
        StartConversation(conversation_id="c1", seq=1, at=1.0, flow_id=flow.id, site_id="s"),
        PressButton(conversation_id="c1", seq=2, at=2.0, node_id="size", button_id="nope"),
    ]
    for command in commands:
        decision = decide(state, command, flow, UniformPolicy(), NoSealer())
        state = decision.state
        batches.append(list(decision.events))
    while state.current_node != "contact" and state.status == "active":
        node = flow.node(state.current_node or "")
        press = PressButton(
            conversation_id="c1",
            seq=state.last_command_seq + 1,
            at=3.0,
            node_id=node.id,
            button_id=node.buttons[0].id,
        )
        decision = decide(state, press, flow, UniformPolicy(), NoSealer())
        state = decision.state
        batches.append(list(decision.events))
    if state.current_node == "contact":
        lead = SubmitLead(
            conversation_id="c1",
            seq=state.last_command_seq + 1,
            at=4.0,
            node_id="contact",
            fields={"name": "A", "email": "a@example.com", "consent": "true"},
        )
        decision = decide(state, lead, flow, UniformPolicy(), AesGcmSealer(KEY))
        state = decision.state
        batches.append(list(decision.events))
    return state, batches


def test_event_batch_round_trips_every_event_exactly() -> None:
    """Decoding an encoded batch gives back equal events, in order."""
    _, batches = played()
    for events in batches:
        batch = decode_batch(encode_batch(events))
        assert list(batch.events) == events
        assert batch.last_seq == events[-1].seq


def test_event_batch_refuses_mixed_conversations_and_empty_batches() -> None:
    """A batch is one command's events: one conversation, at least one event."""
    _, batches = played()
    first = batches[0][0]
    other = batches[1][0]
    with pytest.raises(ValueError, match="one conversation"):
        encode_batch([first, replace(other, conversation_id="someone-else")])
    with pytest.raises(ValueError, match="at least one"):
        encode_batch([])


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"{", MessageError),
        (b'{"type": "Other", "v": 1}', MessageError),
        (b'{"type": "EventBatch", "v": 2, "events": []}', UnsupportedVersion),
        (b'{"type": "EventBatch", "v": 1, "events": []}', MessageError),
    ],
)
def test_bad_batches_are_refused_clearly(data: bytes, error: type[Exception]) -> None:
    """Garbage, foreign records, unknown versions and empty batches are refused."""
    with pytest.raises(error):
        decode_batch(data)


def test_state_round_trips_through_bytes() -> None:
    """A state with steps, answers, a rejection and a context survives encode/decode."""
    state, _ = played()
    assert decode_state(encode_state(state)) == state


def test_state_of_another_version_is_refused() -> None:
    """A state written by a future version is not silently misread."""
    data = orjson.dumps({"v": 99, "state": {}})
    with pytest.raises(UnsupportedVersion):
        decode_state(data)
