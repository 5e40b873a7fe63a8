"""Replies: what the conversation service answers the gateway for one command.

A reply lists the bot messages the visitor has not seen yet (each numbered by
the ``seq`` of the event that entered its node) or an error the widget can show.
``ack`` is the last command seq the conversation has applied, so a client that
reconnects knows the seq of its next command.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from schemas.codec import Registry

REPLIES = Registry("reply")

ErrorCode = Literal[
    "malformed_frame",
    "unknown_frame_type",
    "unsupported_version",
    "frame_too_large",
    "rate_limited",
    "no_conversation",
    "unknown_site",
    "unknown_flow",
    "origin_not_allowed",
    "invalid_token",
    "unknown_region",
    "invalid_preview",
    "not_started",
    "already_started",
    "completed",
    "wrong_node",
    "unknown_button",
    "stale_command",
    "out_of_order",
    "invalid_lead",
    "invalid_answer",
    "cannot_go_back",
    "too_many_starts",
    "conversation_too_long",
    "unavailable",
    "internal",
]


NodeKindName = Literal["message", "question", "lead_form", "input", "end"]
InputTypeName = Literal["text", "number", "email", "phone", "date", "choice"]
FieldTypeName = Literal["text", "email", "phone", "consent"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ButtonView:
    id: str
    label: str


@dataclass(frozen=True, slots=True, kw_only=True)
class FieldView:
    name: str
    type: FieldTypeName
    label: str
    required: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class InputView:
    """How the widget asks a free-text question (a message of kind ``input``)."""

    type: InputTypeName = "text"
    max_length: int = 500
    skippable: bool = False
    placeholder: str = ""
    choices: tuple[ButtonView, ...] = ()
    other: bool = False
    min: float | None = None
    max: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ImageView:
    src: str
    alt: str


@dataclass(frozen=True, slots=True, kw_only=True)
class BotMessage:
    """One bot message. ``answer`` is the label the visitor answered it with, if any.
    ``text`` is the safe Markdown subset of docs/protocol.md, templates rendered;
    ``input`` is set on ``input`` messages, ``image`` where the node has one."""

    seq: int
    node_id: str
    kind: NodeKindName
    text: str
    buttons: tuple[ButtonView, ...] = ()
    fields: tuple[FieldView, ...] = ()
    done: bool = False
    answer: str | None = None
    input: InputView | None = None
    image: ImageView | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplyError:
    code: ErrorCode
    message: str
    retryable: bool = False
    fields: dict[str, str] = field(default_factory=dict)


@REPLIES.register
@dataclass(frozen=True, slots=True, kw_only=True)
class Reply:
    """``more``: a resume's messages were cut at a page (MAX_RESUME_MESSAGES in
    services/conversation/replies.py); the client asks for the rest with
    another resume from the last message it got."""

    conversation_id: str
    command_seq: int
    ack: int
    messages: tuple[BotMessage, ...] = ()
    error: ReplyError | None = None
    more: bool = False
    reply_to: str = ""
    request_id: str = ""
    type: Literal["Reply"] = "Reply"
    v: int = 1


def decode_reply(data: bytes | str) -> Reply:
    reply: Reply = REPLIES.decode(data)
    return reply
