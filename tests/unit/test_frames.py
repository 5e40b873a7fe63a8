"""Client frame parsing (every FrameError code) and server frame rendering."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from schemas.commands import VisitorContext
from schemas.frames import (
    MAX_CONTEXT_CHARS,
    MAX_FIELD_CHARS,
    MAX_FIELDS,
    MAX_ID_CHARS,
    MAX_SEQ,
    PONG_FRAME,
    FrameError,
    LeadFrame,
    PingFrame,
    PressFrame,
    ResumeFrame,
    StartFrame,
    error_frame,
    message_frame,
    parse_client_frame,
    session_frame,
)
from schemas.replies import BotMessage, ButtonView, FieldView, ReplyError

START: dict[str, Any] = {"type": "start", "v": 1, "site": "demo", "flow": "solar"}
PRESS: dict[str, Any] = {"type": "press", "v": 1, "seq": 2, "node": "property", "button": "house"}
LEAD: dict[str, Any] = {"type": "lead", "v": 1, "seq": 9, "node": "contact", "fields": {}}
RESUME: dict[str, Any] = {"type": "resume", "v": 1, "token": "tok.sig", "last_seq": 14}


def frame(base: dict[str, Any], **changes: Any) -> bytes:
    return orjson.dumps({**base, **changes})


def refused(data: str | bytes) -> FrameError:
    with pytest.raises(FrameError) as info:
        parse_client_frame(data)
    return info.value


# --- parsing each frame type ----------------------------------------------------------


def test_start_frame_is_parsed_with_its_context() -> None:
    """A start frame must carry site, flow and the visitor context."""
    context = {"device": "mobile", "locale": "en-GB", "time_zone": "Europe/London"}
    parsed = parse_client_frame(frame(START, context={**context, "utm_source": "facebook"}))
    assert parsed == StartFrame(
        site="demo",
        flow="solar",
        context=VisitorContext(
            device="mobile", locale="en-GB", time_zone="Europe/London", utm_source="facebook"
        ),
    )


def test_start_frame_without_context_gets_the_default_context() -> None:
    """``context`` is optional and must default to an unknown device in en/UTC."""
    parsed = parse_client_frame(frame(START))
    assert isinstance(parsed, StartFrame)
    assert parsed.context == VisitorContext()


def test_press_frame_is_parsed() -> None:
    """A press frame must give seq, node and button."""
    assert parse_client_frame(frame(PRESS)) == PressFrame(seq=2, node="property", button="house")


def test_lead_frame_is_parsed_and_its_repr_redacted() -> None:
    """A lead frame must keep its fields but never show them in repr()."""
    parsed = parse_client_frame(frame(LEAD, fields={"email": "ann@example.com"}))
    assert parsed == LeadFrame(seq=9, node="contact", fields={"email": "ann@example.com"})
    assert "ann@example.com" not in repr(parsed)


def test_resume_frame_is_parsed_and_last_seq_defaults_to_zero() -> None:
    """A resume frame must carry its token; last_seq 0 means the whole transcript."""
    assert parse_client_frame(frame(RESUME)) == ResumeFrame(token="tok.sig", last_seq=14)
    assert parse_client_frame(b'{"type":"resume","v":1,"token":"t"}') == ResumeFrame(token="t")


def test_ping_frame_is_parsed_from_text() -> None:
    """A ping (as str, the websocket text type) must parse; pong is its JSON answer."""
    assert parse_client_frame('{"type":"ping","v":1}') == PingFrame()
    assert orjson.loads(PONG_FRAME) == {"type": "pong", "v": 1}


def test_frames_at_their_limits_are_accepted() -> None:
    """Values exactly at the documented limits must pass."""
    long_id = "i" * MAX_ID_CHARS
    assert parse_client_frame(frame(PRESS, node=long_id, button=long_id))
    fields = {f"f{i}": "v" * MAX_FIELD_CHARS for i in range(MAX_FIELDS)}
    assert parse_client_frame(frame(LEAD, fields=fields))
    context = {"referrer": "r" * MAX_CONTEXT_CHARS}
    assert parse_client_frame(frame(START, context=context))


# --- every FrameError code -------------------------------------------------------------


@pytest.mark.parametrize("data", [b"{not json", b"\xff\xfe"])
def test_invalid_json_is_malformed(data: str | bytes) -> None:
    """Bytes that are not JSON must be a malformed_frame, not an exception."""
    assert refused(data).code == "malformed_frame"


@pytest.mark.parametrize("data", [b"[]", b"null"])
def test_non_object_is_malformed(data: bytes) -> None:
    """Valid JSON that is not an object must be a malformed_frame."""
    assert refused(data).code == "malformed_frame"


@pytest.mark.parametrize("data", [b'{"type":"hello","v":1}', b'{"v":1}'])
def test_unknown_or_missing_type_is_unknown_frame_type(data: bytes) -> None:
    """A frame type the server does not know must be answered with unknown_frame_type."""
    assert refused(data).code == "unknown_frame_type"


def test_unsupported_version_names_the_version() -> None:
    """A frame of a future version must be refused with unsupported_version."""
    error = refused(frame(PRESS, v=2))
    assert error.code == "unsupported_version"
    assert "version 2" in error.message


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b'{"type":"press","v":1,"node":"n","button":"b"}', "seq: missing"),
        (frame(PRESS, seq="2"), "expected an integer"),
        (frame(LEAD, fields={"email": 5}), "expected str"),
        (frame(LEAD, fields=["email"]), "expected an object"),
        (frame(START, context={"device": "tv"}), "expected one of"),
    ],
    ids=[
        "press-no-seq",
        "seq-as-str",
        "field-not-str",
        "fields-not-object",
        "bad-device",
    ],
)
def test_missing_or_mistyped_field_is_malformed(data: bytes, why: str) -> None:
    """Missing or mistyped fields must be malformed_frame with a message saying which."""
    error = refused(data)
    assert error.code == "malformed_frame"
    assert why in error.message


@pytest.mark.parametrize(
    "data",
    [frame(PRESS, seq=0), frame(LEAD, seq=-3)],
    ids=["press-0", "lead-negative"],
)
def test_non_positive_seq_is_malformed(data: bytes) -> None:
    """Command seqs start at 1 (start is command 1): 0 and below must be refused."""
    error = refused(data)
    assert (error.code, error.message) == (
        "malformed_frame",
        f"seq must be an integer 1..{MAX_SEQ}",
    )


def test_negative_last_seq_is_malformed() -> None:
    """A resume from a negative message seq must be refused."""
    error = refused(frame(RESUME, last_seq=-1))
    expected = f"last_seq must be an integer 0..{MAX_SEQ}"
    assert (error.code, error.message) == ("malformed_frame", expected)


@pytest.mark.parametrize("value", [MAX_SEQ + 1, 2**63, 2**64 - 1, 2**64, 10**30])
@pytest.mark.parametrize(("base", "name"), [(PRESS, "seq"), (LEAD, "seq"), (RESUME, "last_seq")])
def test_numbers_beyond_max_seq_are_malformed(base: dict[str, Any], name: str, value: int) -> None:
    """Regression (issue 14): a press with seq 2**63 reached the event log, which
    overflowed: `unavailable` (retryable) and an error-level log with a traceback."""
    text = orjson.dumps({**base, name: 0}).decode().replace(f'"{name}":0', f'"{name}":{value}')
    assert str(value) in text
    assert refused(text).code == "malformed_frame"


@pytest.mark.parametrize(("base", "name"), [(PRESS, "seq"), (LEAD, "seq"), (RESUME, "last_seq")])
def test_max_seq_itself_is_accepted(base: dict[str, Any], name: str) -> None:
    assert getattr(parse_client_frame(frame(base, **{name: MAX_SEQ})), name) == MAX_SEQ


@pytest.mark.parametrize("value", ["true", "false", "2.0", "1e2", '"3"', "null", "[2]", "{}"])
@pytest.mark.parametrize(("base", "name"), [(PRESS, "seq"), (LEAD, "seq"), (RESUME, "last_seq")])
def test_numbers_must_be_exact_integers(base: dict[str, Any], name: str, value: str) -> None:
    """A boolean is not an integer here, though Python's bool is an int."""
    text = orjson.dumps({**base, name: 0}).decode().replace(f'"{name}":0', f'"{name}":{value}')
    assert refused(text).code == "malformed_frame"


@pytest.mark.parametrize("value", ["true", "1.0", '"1"'])
def test_the_version_must_be_the_integer_1(value: str) -> None:
    text = f'{{"type":"ping","v":{value}}}'
    assert refused(text).code in ("malformed_frame", "unsupported_version")


@pytest.mark.parametrize(
    ("data", "name"),
    [
        (frame(START, site="s" * (MAX_ID_CHARS + 1)), "site"),
        (frame(START, flow=""), "flow"),
        (frame(PRESS, node="n" * (MAX_ID_CHARS + 1)), "node"),
        (frame(RESUME, token="t" * 513), "token"),
    ],
    ids=["site-long", "flow-empty", "node-long", "token-long"],
)
def test_empty_or_over_long_ids_are_malformed(data: bytes, name: str) -> None:
    """Ids must be 1..64 characters (tokens 1..512), so nothing unbounded reaches the log."""
    error = refused(data)
    assert error.code == "malformed_frame"
    assert error.message.startswith(f"{name} must be 1..")


def test_too_many_lead_fields_is_malformed() -> None:
    """More than MAX_FIELDS lead fields must be refused."""
    fields = {f"f{i}": "x" for i in range(MAX_FIELDS + 1)}
    assert refused(frame(LEAD, fields=fields)).code == "malformed_frame"


def test_over_long_lead_field_value_is_malformed() -> None:
    """A lead value over MAX_FIELD_CHARS must be refused."""
    fields = {"email": "e" * (MAX_FIELD_CHARS + 1)}
    assert refused(frame(LEAD, fields=fields)).code == "malformed_frame"


@pytest.mark.parametrize("name", ["referrer", "utm_campaign", "locale"])
def test_over_long_context_value_is_malformed(name: str) -> None:
    """Context strings over MAX_CONTEXT_CHARS must be refused, naming the field."""
    error = refused(frame(START, context={name: "x" * (MAX_CONTEXT_CHARS + 1)}))
    assert (error.code, error.message) == ("malformed_frame", f"context.{name} is too long")


def test_over_long_time_zone_is_malformed() -> None:
    """time_zone is stored in ConversationStarted like the other context strings: bound it."""
    error = refused(frame(START, context={"time_zone": "x" * (MAX_CONTEXT_CHARS + 1)}))
    assert error.code == "malformed_frame"


# --- server frames -------------------------------------------------------------------


def test_error_frame_has_the_documented_keys() -> None:
    """An error frame must carry type, v, code, message, retryable and nothing else."""
    body = orjson.loads(error_frame(ReplyError(code="wrong_node", message="Not current.")))
    assert body == {
        "type": "error",
        "v": 1,
        "code": "wrong_node",
        "message": "Not current.",
        "retryable": False,
    }


def test_error_frame_adds_seq_ack_and_field_errors_when_given() -> None:
    """The answered seq, the ack (seq used up or not) and per-field lead errors must appear."""
    error = ReplyError(code="invalid_lead", message="Check", fields={"email": "is bad"})
    body = orjson.loads(error_frame(error, seq=9, ack=9))
    assert body == {
        "type": "error",
        "v": 1,
        "code": "invalid_lead",
        "message": "Check",
        "retryable": False,
        "fields": {"email": "is bad"},
        "seq": 9,
        "ack": 9,
    }


def test_error_frame_reports_retryable_errors() -> None:
    """A retryable error (service unavailable) must tell the client to retry."""
    body = orjson.loads(error_frame(ReplyError(code="unavailable", message="m", retryable=True)))
    assert body["retryable"] is True


def test_message_frame_serialises_the_bot_message() -> None:
    """A message frame must carry ack and the full message with buttons and fields."""
    message = BotMessage(
        seq=5,
        node_id="contact",
        kind="lead_form",
        text="Details?",
        buttons=(ButtonView(id="b", label="B"),),
        fields=(FieldView(name="email", type="email", label="Email", required=True),),
    )
    body = orjson.loads(message_frame(message, ack=3))
    assert (body["type"], body["v"], body["ack"]) == ("message", 1, 3)
    assert body["message"] == {
        "seq": 5,
        "node_id": "contact",
        "kind": "lead_form",
        "text": "Details?",
        "buttons": [{"id": "b", "label": "B"}],
        "fields": [{"name": "email", "type": "email", "label": "Email", "required": True}],
        "done": False,
        "answer": None,
    }


def test_session_frame_has_the_documented_keys() -> None:
    """A session frame must give the conversation id, token, ack and how many messages follow."""
    body = orjson.loads(session_frame("conv-9", "tok.sig", ack=4, messages=2))
    assert body == {
        "type": "session",
        "v": 1,
        "conversation_id": "conv-9",
        "token": "tok.sig",
        "ack": 4,
        "messages": 2,
        "more": False,
    }
    paged = orjson.loads(session_frame("conv-9", "tok.sig", ack=4, messages=50, more=True))
    assert (paged["messages"], paged["more"]) == (50, True)


def test_lead_field_names_must_be_identifiers() -> None:
    """Field names reach the log in rejections, so an email typed as a name is refused."""
    error = refused(frame(LEAD, fields={"ann@example.com": "x"}))
    assert error.code == "malformed_frame"
    assert "ann@example.com" not in error.message


@pytest.mark.parametrize(
    "frame",
    [
        {"type": "start", "v": 1, "site": "demo", "flow": "f", "start_id": "a" * 16 + "\n"},
        {"type": "lead", "v": 1, "seq": 2, "node": "n", "fields": {"email\n": "x@example.com"}},
    ],
)
def test_a_trailing_newline_does_not_slip_through_an_identifier_check(
    frame: dict[str, object],
) -> None:
    """Regression: the checks used re.match with ``$``, which accepts a final newline."""
    with pytest.raises(FrameError) as raised:
        parse_client_frame(orjson.dumps(frame))
    assert raised.value.code == "malformed_frame"
