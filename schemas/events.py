"""Events: what happened in a conversation (past-tense names). The log is immutable.

Every event carries the conversation id, the conversation's event sequence
number ``seq`` (1, 2, 3, ... without gaps), a deterministic ``id`` derived from
the two (so reprocessing a command yields the very same ids), the time, and the
``command_seq`` of the command that caused it.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field
from typing import Literal

from schemas.codec import Registry
from schemas.commands import VisitorContext

EVENTS = Registry("event")
_EVENT_NAMESPACE = uuid.UUID("6f1c2a8e-3d4b-5c6d-9e8f-0a1b2c3d4e5f")


_NAMESPACE_BYTES = _EVENT_NAMESPACE.bytes


def event_id(conversation_id: str, seq: int) -> str:
    """The id of event ``seq`` of a conversation: a UUIDv5, stable across replays.

    Equal to ``uuid.uuid5(namespace, f"{conversation_id}/{seq}")``, computed
    directly because it runs for every event on the hot path."""
    digest = bytearray(
        hashlib.sha1(_NAMESPACE_BYTES + f"{conversation_id}/{seq}".encode()).digest()[:16]
    )
    digest[6] = (digest[6] & 0x0F) | 0x50
    digest[8] = (digest[8] & 0x3F) | 0x80
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


@dataclass(frozen=True, slots=True, kw_only=True)
class EventHeader:
    """What every event carries: conversation id, event seq, deterministic id,
    time, and the seq of the command that caused it."""

    conversation_id: str
    seq: int
    id: str
    at: float
    command_seq: int


@EVENTS.register
@dataclass(frozen=True, slots=True, kw_only=True)
class ConversationStarted(EventHeader):
    """``preview``: a conversation of the studio's preview (usually on a draft, a
    negative ``flow_version``). Every event of it stays in the log (replays verify
    it) but read models, funnels, the policy's rewards and lead delivery skip the
    conversation. Events logged before the field existed decode with False."""

    flow_id: str
    flow_version: int
    site_id: str
    context: VisitorContext
    preview: bool = False
    type: Literal["ConversationStarted"] = "ConversationStarted"
    v: int = 1


@EVENTS.register
@dataclass(frozen=True, slots=True, kw_only=True)
class ButtonPressed(EventHeader):
    node_id: str
    button_id: str
    type: Literal["ButtonPressed"] = "ButtonPressed"
    v: int = 1


@EVENTS.register
@dataclass(frozen=True, slots=True, kw_only=True)
class EdgeChosen(EventHeader):
    """The policy chose ``chosen`` among ``candidates`` at a decision point.

    ``propensity`` is the probability the policy gave ``chosen``; with
    ``policy_version``, ``seed`` and ``features`` (the visitor context the
    choice was conditioned on, e.g. ``device=mobile``) it lets analysts
    evaluate other policies offline and replay this decision exactly."""

    node_id: str
    button_id: str
    candidates: tuple[str, ...]
    chosen: str
    propensity: float
    policy_version: str
    seed: int
    features: tuple[str, ...] = ()
    type: Literal["EdgeChosen"] = "EdgeChosen"
    v: int = 1


@EVENTS.register
@dataclass(frozen=True, slots=True, kw_only=True)
class NodeEntered(EventHeader):
    node_id: str
    kind: Literal["message", "question", "lead_form", "input", "end"]
    type: Literal["NodeEntered"] = "NodeEntered"
    v: int = 1


@EVENTS.register
@dataclass(frozen=True, slots=True, kw_only=True)
class LeadCaptured(EventHeader):
    """A lead. Contact details are sealed with the conversation's own key (kept
    outside the log): deleting that key erases them everywhere (crypto-shredding)."""

    node_id: str
    site_id: str
    fields_present: tuple[str, ...]
    consent: bool
    sealed: str
    type: Literal["LeadCaptured"] = "LeadCaptured"
    v: int = 1


@EVENTS.register
@dataclass(frozen=True, slots=True, kw_only=True)
class QuestionAnswered(EventHeader):
    """A free-text answer on an ``input`` node, stored under ``variable``. A
    ``personal`` answer is only in ``sealed`` (the conversation key, like a lead's
    details: erasing the key erases it); a non-personal one is ``value`` in clear.
    ``skipped``: the visitor skipped the question (no value either way)."""

    node_id: str
    variable: str
    personal: bool
    value: str = ""
    sealed: str = ""
    skipped: bool = False
    type: Literal["QuestionAnswered"] = "QuestionAnswered"
    v: int = 1

    def __repr__(self) -> str:
        return (
            f"QuestionAnswered(conversation_id={self.conversation_id!r}, seq={self.seq}, "
            f"node_id={self.node_id!r}, personal={self.personal}, skipped={self.skipped})"
        )


@EVENTS.register
@dataclass(frozen=True, slots=True, kw_only=True)
class WentBack(EventHeader):
    """The visitor withdrew their last answer: the step whose ``NodeEntered`` has seq
    ``withdrawn_seq`` (on ``node_id``, a question or input node) is re-opened, and it
    and every step after it (up to ``from_node``, where the visitor was) are
    forgotten. A ``NodeEntered`` of ``node_id`` follows. Decisions logged after
    ``withdrawn_seq`` chose an edge the visitor turned back from."""

    node_id: str
    from_node: str
    withdrawn_seq: int
    type: Literal["WentBack"] = "WentBack"
    v: int = 1


@EVENTS.register
@dataclass(frozen=True, slots=True, kw_only=True)
class VisitorNudged(EventHeader):
    """The flow's idle nudge fired at ``node_id``, the node the visitor had left
    unanswered for ``idle_seconds``: its message (if any) is shown, then the
    conversation goes to the nudge's node (if any; a ``NodeEntered`` follows)."""

    node_id: str
    idle_seconds: float
    type: Literal["VisitorNudged"] = "VisitorNudged"
    v: int = 1


@EVENTS.register
@dataclass(frozen=True, slots=True, kw_only=True)
class ConversationAbandoned(EventHeader):
    """No visitor command for the flow's ``abandon_after`` seconds: the visitor left
    at ``node_id`` (without a lead unless ``lead_captured``). Not an end: a visitor
    who comes back goes on, and a later spell of silence is abandoned again."""

    node_id: str
    idle_seconds: float
    lead_captured: bool = False
    type: Literal["ConversationAbandoned"] = "ConversationAbandoned"
    v: int = 1


@EVENTS.register
@dataclass(frozen=True, slots=True, kw_only=True)
class ConversationCompleted(EventHeader):
    node_id: str
    lead_captured: bool
    type: Literal["ConversationCompleted"] = "ConversationCompleted"
    v: int = 1


@EVENTS.register
@dataclass(frozen=True, slots=True, kw_only=True)
class CommandRejected(EventHeader):
    """A command that was refused. ``consumed`` says whether it used up its
    command seq (a rejected but in-order command does; an out-of-order one not)."""

    command_type: str
    reason: str
    detail: str
    consumed: bool
    fields: dict[str, str] = field(default_factory=dict)
    type: Literal["CommandRejected"] = "CommandRejected"
    v: int = 1


Event = (
    ConversationStarted
    | ButtonPressed
    | EdgeChosen
    | NodeEntered
    | LeadCaptured
    | QuestionAnswered
    | WentBack
    | VisitorNudged
    | ConversationAbandoned
    | ConversationCompleted
    | CommandRejected
)


def decode_event(data: bytes | str) -> Event:
    event: Event = EVENTS.decode(data)
    return event
