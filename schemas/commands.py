"""Commands: what a visitor asks the conversation service to do (imperative names).

Every command carries the conversation id (its routing key end to end), a
per-conversation command sequence number assigned by the client, the time the
gateway received it, the gateway instance to reply to (``reply_to``: in the
distributed mode the partition of the replies topic that gateway reads) and a
``request_id`` the reply echoes, so a gateway can match replies to requests.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from schemas.codec import Registry

COMMANDS = Registry("command")


@dataclass(frozen=True, slots=True, kw_only=True)
class VisitorContext:
    """What the widget knows about the visitor; never personal data."""

    device: Literal["desktop", "mobile", "tablet", "unknown"] = "unknown"
    referrer: str = ""
    utm_source: str = ""
    utm_medium: str = ""
    utm_campaign: str = ""
    locale: str = "en"
    time_zone: str = "UTC"


@COMMANDS.register
@dataclass(frozen=True, slots=True, kw_only=True)
class StartConversation:
    """Start on the flow's active version for the site, or, with ``flow_version``
    (not 0), on that very version: a preview pins the draft it plays (a negative
    number, :func:`schemas.flow_registry.draft_version`) and sets ``preview``,
    which its ``ConversationStarted`` carries (kept out of read models, rewards
    and deliveries). ``fresh``: the gateway minted ``conversation_id`` for this
    start (no ``start_id``), so no event of it can exist and its state need not be
    read from the log. Older commands have none of these and decode as before."""

    conversation_id: str
    seq: int
    at: float
    flow_id: str
    site_id: str
    context: VisitorContext = field(default_factory=VisitorContext)
    reply_to: str = ""
    request_id: str = ""
    flow_version: int = 0
    preview: bool = False
    fresh: bool = False
    type: Literal["StartConversation"] = "StartConversation"
    v: int = 1


@COMMANDS.register
@dataclass(frozen=True, slots=True, kw_only=True)
class PressButton:
    """Press ``button_id`` on ``node_id``, the node the visitor saw as current."""

    conversation_id: str
    seq: int
    at: float
    node_id: str
    button_id: str
    reply_to: str = ""
    request_id: str = ""
    type: Literal["PressButton"] = "PressButton"
    v: int = 1


@COMMANDS.register
@dataclass(frozen=True, slots=True, kw_only=True)
class SubmitLead:
    """Submit the lead form on ``node_id``. ``fields`` holds contact details in clear:
    the decider validates them and only ever writes them to the log encrypted."""

    conversation_id: str
    seq: int
    at: float
    node_id: str
    fields: dict[str, str]
    reply_to: str = ""
    request_id: str = ""
    type: Literal["SubmitLead"] = "SubmitLead"
    v: int = 1

    def __repr__(self) -> str:  # keep contact details out of logs and tracebacks
        return (
            f"SubmitLead(conversation_id={self.conversation_id!r}, seq={self.seq}, "
            f"node_id={self.node_id!r}, fields=<{len(self.fields)} redacted>)"
        )


@COMMANDS.register
@dataclass(frozen=True, slots=True, kw_only=True)
class AnswerQuestion:
    """Answer the free-text ``input`` node ``node_id`` with ``value`` (typed text, a
    number, a choice id, ...), or skip it (``skip``, when the node allows it). The
    value may be personal data: the decider validates it and writes it to the log
    sealed unless the node says it is not personal; ``repr`` never shows it."""

    conversation_id: str
    seq: int
    at: float
    node_id: str
    value: str = ""
    skip: bool = False
    reply_to: str = ""
    request_id: str = ""
    type: Literal["AnswerQuestion"] = "AnswerQuestion"
    v: int = 1

    def __repr__(self) -> str:  # keep answers out of logs and tracebacks
        return (
            f"AnswerQuestion(conversation_id={self.conversation_id!r}, seq={self.seq}, "
            f"node_id={self.node_id!r}, value=<{len(self.value)} chars redacted>, "
            f"skip={self.skip})"
        )


@COMMANDS.register
@dataclass(frozen=True, slots=True, kw_only=True)
class GoBack:
    """Withdraw the last answer and ask its question again. ``node_id`` is the node
    the visitor saw as current, so a stale press of "change answer" is refused
    (``wrong_node``). Uses a command seq up like a press."""

    conversation_id: str
    seq: int
    at: float
    node_id: str
    reply_to: str = ""
    request_id: str = ""
    type: Literal["GoBack"] = "GoBack"
    v: int = 1


@COMMANDS.register
@dataclass(frozen=True, slots=True, kw_only=True)
class FireTimer:
    """Fire the conversation's ``timer`` (``idle`` or ``abandon``, declared by its
    flow's ``timers``) that was scheduled when its last event had seq ``for_seq``.

    Sent by the runtime that schedules timers (the embedded server, a processor),
    never by a visitor: it uses no command seq (``seq`` stays 0) and is
    idempotent by ``for_seq``: once anything happened after ``for_seq`` the
    timer is stale and changes nothing, so firing it twice (at least once after
    a crash) is harmless. ``reply_to`` is the gateway that last served the
    visitor, when the runtime knows it."""

    conversation_id: str
    seq: int = 0
    at: float
    timer: Literal["idle", "abandon"]
    for_seq: int
    reply_to: str = ""
    request_id: str = ""
    type: Literal["FireTimer"] = "FireTimer"
    v: int = 1


@COMMANDS.register
@dataclass(frozen=True, slots=True, kw_only=True)
class Resume:
    """Re-send every bot message after ``after_seq`` (an event seq); changes nothing.

    ``site_id`` is the site the resume token names: the conversation must be
    that site's (empty only in commands of gateways older than this check)."""

    conversation_id: str
    seq: int = 0
    at: float
    after_seq: int
    site_id: str = ""
    reply_to: str = ""
    request_id: str = ""
    type: Literal["Resume"] = "Resume"
    v: int = 1


Command = (
    StartConversation | PressButton | SubmitLead | AnswerQuestion | GoBack | FireTimer | Resume
)


def decode_command(data: bytes | str) -> Command:
    command: Command = COMMANDS.decode(data)
    return command
