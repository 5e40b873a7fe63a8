"""Wire frames between the widget and the gateway (JSON text frames over /ws).

Client frames are parsed strictly: anything malformed becomes a
:class:`FrameError` carrying the error code the gateway sends back. The
protocol is documented in docs/protocol.md.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from typing import Any, Literal

import orjson

from schemas.codec import MessageError, Registry, UnknownType, UnsupportedVersion
from schemas.commands import VisitorContext
from schemas.replies import BotMessage, ErrorCode, ReplyError

CLIENT_FRAMES = Registry("frame")
MAX_ID_CHARS = 64
MAX_FIELD_CHARS = 200
MAX_FIELDS = 10
MAX_CONTEXT_CHARS = 500
MAX_TOKEN_CHARS = 512
MAX_ANSWER_CHARS = 1000
"""The longest free-text answer a frame carries (schemas.flow.MAX_ANSWER_CHARS)."""
MAX_SEQ = 2**31 - 1
"""The largest ``seq`` and ``last_seq`` a client may send: far beyond any real
conversation (they are capped, see services/conversation/decider.py), exact in
JavaScript and in a 32-bit integer, and never an overflow in the event log
(2**63 used to end in an error-level "event log append failed")."""
FIELD_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
START_ID = re.compile(r"^[A-Za-z0-9_-]{16,64}$")  # random, unguessable: it names a conversation


class FrameError(Exception):
    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code: ErrorCode = code
        self.message = message


@CLIENT_FRAMES.register
@dataclass(frozen=True, slots=True, kw_only=True)
class StartFrame:
    site: str
    flow: str
    context: VisitorContext = field(default_factory=VisitorContext)
    # a client-generated id that makes a retried start idempotent: the same
    # start_id (on the same site and flow) always names the same conversation
    start_id: str = ""
    # a preview token (POST /api/v1/flows/preview): play that flow draft, marked as a preview
    preview: str = ""
    type: Literal["start"] = "start"
    v: int = 1


@CLIENT_FRAMES.register
@dataclass(frozen=True, slots=True, kw_only=True)
class PressFrame:
    seq: int
    node: str
    button: str
    type: Literal["press"] = "press"
    v: int = 1


@CLIENT_FRAMES.register
@dataclass(frozen=True, slots=True, kw_only=True)
class LeadFrame:
    seq: int
    node: str
    fields: dict[str, str]
    type: Literal["lead"] = "lead"
    v: int = 1

    def __repr__(self) -> str:
        return f"LeadFrame(seq={self.seq}, node={self.node!r}, fields=<redacted>)"


@CLIENT_FRAMES.register
@dataclass(frozen=True, slots=True, kw_only=True)
class AnswerFrame:
    """A free-text answer to an ``input`` node, or ``skip`` (never both)."""

    seq: int
    node: str
    value: str = ""
    skip: bool = False
    type: Literal["answer"] = "answer"
    v: int = 1

    def __repr__(self) -> str:
        return (
            f"AnswerFrame(seq={self.seq}, node={self.node!r}, value=<redacted>, skip={self.skip})"
        )


@CLIENT_FRAMES.register
@dataclass(frozen=True, slots=True, kw_only=True)
class BackFrame:
    """Change the last answer: ``node`` is the current node as the client sees it."""

    seq: int
    node: str
    type: Literal["back"] = "back"
    v: int = 1


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


@CLIENT_FRAMES.register
@dataclass(frozen=True, slots=True, kw_only=True)
class ResumeFrame:
    token: str
    last_seq: int = 0
    type: Literal["resume"] = "resume"
    v: int = 1


@CLIENT_FRAMES.register
@dataclass(frozen=True, slots=True, kw_only=True)
class PingFrame:
    type: Literal["ping"] = "ping"
    v: int = 1


ClientFrame = (
    StartFrame | PressFrame | LeadFrame | AnswerFrame | BackFrame | ResumeFrame | PingFrame
)


def _check_limits(frame: ClientFrame) -> None:
    def short(value: str, name: str, limit: int = MAX_ID_CHARS) -> None:
        if not value or len(value) > limit:
            raise FrameError("malformed_frame", f"{name} must be 1..{limit} characters")

    def bounded(value: int, name: str, lowest: int) -> None:
        # the codec already refused non-integers (floats, strings and booleans)
        if not lowest <= value <= MAX_SEQ:
            raise FrameError("malformed_frame", f"{name} must be an integer {lowest}..{MAX_SEQ}")

    match frame:
        case StartFrame(site=site, flow=flow, context=context, start_id=start_id):
            short(site, "site")
            short(flow, "flow")
            if len(frame.preview) > MAX_TOKEN_CHARS:
                raise FrameError("malformed_frame", f"preview is over {MAX_TOKEN_CHARS} characters")
            if start_id and not START_ID.fullmatch(start_id):
                raise FrameError("malformed_frame", "start_id must be 16..64 of A-Z a-z 0-9 _ -")
            for name in (
                "referrer",
                "utm_source",
                "utm_medium",
                "utm_campaign",
                "locale",
                "time_zone",
            ):
                if len(getattr(context, name)) > MAX_CONTEXT_CHARS:
                    raise FrameError("malformed_frame", f"context.{name} is too long")
        case PressFrame(seq=seq, node=node, button=button):
            short(node, "node")
            short(button, "button")
            bounded(seq, "seq", 1)
        case LeadFrame(seq=seq, node=node, fields=fields):
            short(node, "node")
            bounded(seq, "seq", 1)
            if len(fields) > MAX_FIELDS or any(len(v) > MAX_FIELD_CHARS for v in fields.values()):
                raise FrameError("malformed_frame", "too many or too long lead fields")
            if not all(FIELD_NAME.fullmatch(name) for name in fields):
                # names reach the log (in rejections), so they must not carry contact details
                raise FrameError("malformed_frame", "lead field names must be identifiers")
        case AnswerFrame(seq=seq, node=node, value=value, skip=skip):
            short(node, "node")
            bounded(seq, "seq", 1)
            if len(value) > MAX_ANSWER_CHARS:
                raise FrameError("malformed_frame", f"value is over {MAX_ANSWER_CHARS} characters")
            if skip and value:
                raise FrameError("malformed_frame", "an answer has a value or skip, not both")
            if _CONTROL.search(value):
                raise FrameError("malformed_frame", "value holds control characters")
        case BackFrame(seq=seq, node=node):
            short(node, "node")
            bounded(seq, "seq", 1)
        case ResumeFrame(token=token, last_seq=last_seq):
            short(token, "token", MAX_TOKEN_CHARS)
            bounded(last_seq, "last_seq", 0)
        case PingFrame():
            pass


def parse_client_frame(data: str | bytes) -> ClientFrame:
    """Parse one client text frame, or raise :class:`FrameError` with its error code."""
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise FrameError("malformed_frame", "frame is not valid JSON") from exc
    try:
        frame: ClientFrame = CLIENT_FRAMES.decode_obj(obj)
    except UnknownType as exc:
        raise FrameError("unknown_frame_type", str(exc)) from exc
    except UnsupportedVersion as exc:
        raise FrameError("unsupported_version", str(exc)) from exc
    except (MessageError, TypeError) as exc:
        raise FrameError("malformed_frame", str(exc)) from exc
    _check_limits(frame)
    return frame


_MESSAGE_FIELDS = tuple(f.name for f in fields(BotMessage))
_OMITTED_WHEN_NONE = frozenset({"input", "image"})


def message_frame(message: BotMessage, ack: int) -> str:
    """The text of a ``message`` frame (orjson serialises the dataclasses natively);
    ``input`` and ``image`` are left out when the message has none."""
    body: dict[str, Any] = {}
    for name in _MESSAGE_FIELDS:
        value = getattr(message, name)
        if value is not None or name not in _OMITTED_WHEN_NONE:
            body[name] = value
    return orjson.dumps({"type": "message", "v": 1, "ack": ack, "message": body}).decode()


def error_frame(error: ReplyError, seq: int | None = None, ack: int | None = None) -> str:
    body: dict[str, Any] = {
        "type": "error",
        "v": 1,
        "code": error.code,
        "message": error.message,
        "retryable": error.retryable,
    }
    if error.fields:
        body["fields"] = error.fields
    if seq is not None:
        body["seq"] = seq
    if ack is not None:
        body["ack"] = ack
    return orjson.dumps(body).decode()


def session_frame(
    conversation_id: str, token: str, ack: int, messages: int, more: bool = False
) -> str:
    """Opens the reply to a start or resume; ``messages`` message frames follow.
    ``more``: a resume's page ended before the newest message; resume again."""
    return orjson.dumps(
        {
            "type": "session",
            "v": 1,
            "conversation_id": conversation_id,
            "token": token,
            "ack": ack,
            "messages": messages,
            "more": more,
        }
    ).decode()


def moved_frame(region: str, url: str) -> str:
    """A resumed conversation lives in another region (services.regions): resume it
    at ``url``, that region's socket, with the same token."""
    return orjson.dumps({"type": "moved", "v": 1, "region": region, "url": url}).decode()


PONG_FRAME = '{"type":"pong","v":1}'
