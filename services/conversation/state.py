"""Conversation state as a left fold over its events: ``evolve(state, event)``.

The state holds exactly what the decider needs: where the visitor is, which
command seq was applied last (for idempotence), and the path taken so far (to
re-send missed bot messages on resume and to give the policy earlier answers).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from schemas.commands import VisitorContext
from schemas.events import (
    ButtonPressed,
    CommandRejected,
    ConversationAbandoned,
    ConversationCompleted,
    ConversationStarted,
    EdgeChosen,
    Event,
    LeadCaptured,
    NodeEntered,
    QuestionAnswered,
    VisitorNudged,
    WentBack,
)

Status = Literal["new", "active", "completed"]
LEAD_SUBMITTED = "lead"
INPUT_ANSWERED = "answered"
INPUT_SKIPPED = "skipped"


@dataclass(frozen=True, slots=True)
class Step:
    """A node the conversation entered: ``seq`` of its NodeEntered event, the
    command that led there, and the visitor's answer on it (button id,
    :data:`LEAD_SUBMITTED`, :data:`INPUT_ANSWERED` or :data:`INPUT_SKIPPED`), if any.

    A free-text answer's value is ``value`` when it is not personal; a personal
    one, and a lead's details, are ``sealed`` by the conversation key with the
    event id ``event_id`` (opened only in memory, when a reply renders them)."""

    seq: int
    node_id: str
    command_seq: int
    answer: str | None = None
    value: str = ""
    sealed: str = ""
    event_id: str = ""
    nudge: bool = False  # the flow's idle nudge on ``node_id`` (VisitorNudged), not a visit


@dataclass(frozen=True, slots=True)
class Rejection:
    reason: str
    detail: str
    fields: dict[str, str] = field(default_factory=dict, hash=False)


@dataclass(frozen=True, slots=True)
class ConversationState:
    conversation_id: str
    seq: int = 0
    last_command_seq: int = 0
    status: Status = "new"
    flow_id: str = ""
    flow_version: int = 0
    site_id: str = ""
    context: VisitorContext = field(default_factory=VisitorContext)
    steps: tuple[Step, ...] = ()
    lead_captured: bool = False
    last_rejection: Rejection | None = None
    last_gap_rejected: int = 0
    started_at: float = 0.0
    updated_at: float = 0.0
    preview: bool = False  # a preview conversation (ConversationStarted.preview)
    last_active_at: float = 0.0  # the visitor's last command that changed something
    nudged: bool = False  # the idle nudge fired since the visitor's last command
    abandoned: bool = False  # abandoned since the visitor's last command

    @property
    def current_node(self) -> str | None:
        return self.steps[-1].node_id if self.steps else None

    @property
    def waiting(self) -> bool:
        """Whether the node the visitor is on still waits for their answer."""
        for step in reversed(self.steps):
            if not step.nudge:
                return step.answer is None
        return False

    def answers(self) -> tuple[tuple[str, str], ...]:
        return tuple((s.node_id, s.answer) for s in self.steps if s.answer is not None)


def typed_answer(event: QuestionAnswered) -> str:
    """The answer a free-text question's step holds, as :meth:`ConversationState.answers`
    gives it to the policy (never the value): :data:`INPUT_ANSWERED` or
    :data:`INPUT_SKIPPED`. The policy's rewards and trajectories record the same."""
    return INPUT_SKIPPED if event.skipped else INPUT_ANSWERED


def _answer_last(
    steps: tuple[Step, ...], answer: str, value: str = "", sealed: str = "", event_id: str = ""
) -> tuple[Step, ...]:
    """The steps with the answer on the last visited node (after it, there may be
    only the idle nudges given while it waited)."""
    at = len(steps) - 1
    while at > 0 and steps[at].nudge:
        at -= 1
    if at < 0:
        return steps
    last = replace(steps[at], answer=answer, value=value, sealed=sealed, event_id=event_id)
    return (*steps[:at], last, *steps[at + 1 :])


def _changes(state: ConversationState, event: Event) -> dict[str, Any]:
    """The fields ``event`` changes, so that evolve builds one new state per event."""
    match event:
        case ConversationStarted():
            return {
                "status": "active",
                "flow_id": event.flow_id,
                "flow_version": event.flow_version,
                "site_id": event.site_id,
                "context": event.context,
                "started_at": event.at,
                "preview": event.preview,
            }
        case ButtonPressed(button_id=button_id):
            return {"steps": _answer_last(state.steps, button_id)}
        case LeadCaptured():
            steps = _answer_last(
                state.steps, LEAD_SUBMITTED, sealed=event.sealed, event_id=event.id
            )
            return {"lead_captured": True, "steps": steps}
        case QuestionAnswered():
            answer = typed_answer(event)
            steps = _answer_last(state.steps, answer, event.value, event.sealed, event.id)
            return {"steps": steps}
        case NodeEntered(node_id=node_id):
            step = Step(seq=event.seq, node_id=node_id, command_seq=event.command_seq)
            return {"steps": (*state.steps, step)}
        case WentBack(withdrawn_seq=withdrawn):
            # the re-opened step and all after it are forgotten; its NodeEntered follows
            return {"steps": tuple(s for s in state.steps if s.seq < withdrawn)}
        case VisitorNudged(node_id=node_id):
            nudge = Step(seq=event.seq, node_id=node_id, command_seq=event.command_seq, nudge=True)
            return {"steps": (*state.steps, nudge), "nudged": True}
        case ConversationAbandoned():
            return {"abandoned": True}
        case ConversationCompleted():
            return {"status": "completed"}
        case EdgeChosen():
            return {}
        case CommandRejected(consumed=True):
            rejection = Rejection(event.reason, event.detail, dict(event.fields))
            return {"last_command_seq": event.command_seq, "last_rejection": rejection}
        case CommandRejected():
            return {"last_gap_rejected": event.command_seq}


_ACTIVE: dict[str, Any] = {"nudged": False, "abandoned": False}
"""What a visitor's command resets: a new spell of silence may be nudged and
abandoned again."""


def evolve(state: ConversationState, event: Event) -> ConversationState:
    """Apply one event. Events must come in seq order without gaps."""
    if event.seq != state.seq + 1:
        raise ValueError(f"event seq {event.seq} does not follow {state.seq}")
    changes = _changes(state, event)
    if not isinstance(event, CommandRejected) and event.command_seq > state.last_command_seq:
        changes["last_command_seq"] = event.command_seq
        changes["last_rejection"] = None
        changes.update(_ACTIVE, last_active_at=event.at)
    elif isinstance(event, CommandRejected) and event.consumed:
        changes.update(_ACTIVE, last_active_at=event.at)
    return replace(state, seq=event.seq, updated_at=event.at, **changes)


def fold(state: ConversationState, events: Iterable[Event]) -> ConversationState:
    for event in events:
        state = evolve(state, event)
    return state
