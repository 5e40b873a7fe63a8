"""The client frames' bounds (schemas/frames.py), exactly at and just past each
limit: what reaches the log from a visitor is bounded, and the smallest legal
value is accepted. The frame types and error codes are in test_frames.py."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from schemas.frames import (
    MAX_CONTEXT_CHARS,
    MAX_FIELD_CHARS,
    MAX_FIELDS,
    MAX_ID_CHARS,
    FrameError,
    LeadFrame,
    PressFrame,
    ResumeFrame,
    StartFrame,
    parse_client_frame,
)

START: dict[str, Any] = {"type": "start", "v": 1, "site": "demo", "flow": "solar"}
PRESS: dict[str, Any] = {"type": "press", "v": 1, "seq": 2, "node": "n", "button": "b"}
LEAD: dict[str, Any] = {"type": "lead", "v": 1, "seq": 9, "node": "contact", "fields": {}}
RESUME: dict[str, Any] = {"type": "resume", "v": 1, "token": "tok"}


def parse(base: dict[str, Any], **changes: Any) -> Any:
    return parse_client_frame(orjson.dumps({**base, **changes}))


def refused(base: dict[str, Any], **changes: Any) -> str:
    with pytest.raises(FrameError) as info:
        parse(base, **changes)
    assert info.value.code == "malformed_frame"
    return info.value.message


@pytest.mark.parametrize("length", [16, 40, 64])
def test_a_start_id_of_16_to_64_safe_characters_is_accepted(length: int) -> None:
    start_id = ("Ab9_-" * 13)[:length]
    frame = parse(START, start_id=start_id)
    assert isinstance(frame, StartFrame) and frame.start_id == start_id


@pytest.mark.parametrize(
    "start_id",
    ["a" * 15, "a" * 65, "a" * 15 + ".", "a" * 16 + " ", "ä" * 16, "a/" * 8],
    ids=["15", "65", "dot", "space", "non-ascii", "slash"],
)
def test_any_other_start_id_is_refused(start_id: str) -> None:
    assert refused(START, start_id=start_id) == "start_id must be 16..64 of A-Z a-z 0-9 _ -"


def test_an_empty_start_id_means_none_was_given() -> None:
    assert parse(START, start_id="").start_id == ""
    assert parse(START).start_id == ""


@pytest.mark.parametrize(("name", "base"), [("site", START), ("flow", START), ("node", PRESS)])
def test_ids_of_1_and_64_characters_are_accepted_65_refused(
    name: str, base: dict[str, Any]
) -> None:
    assert getattr(parse(base, **{name: "x"}), name) == "x"
    assert getattr(parse(base, **{name: "x" * MAX_ID_CHARS}), name) == "x" * MAX_ID_CHARS
    message = refused(base, **{name: "x" * (MAX_ID_CHARS + 1)})
    assert message == f"{name} must be 1..{MAX_ID_CHARS} characters"


def test_a_press_needs_a_button_and_a_lead_a_node() -> None:
    assert refused(PRESS, button="") == "button must be 1..64 characters"
    assert refused(LEAD, node="") == "node must be 1..64 characters"
    assert refused(LEAD, node="n" * 65) == "node must be 1..64 characters"


def test_seq_1_is_the_smallest_command_seq() -> None:
    assert parse(PRESS, seq=1) == PressFrame(seq=1, node="n", button="b")
    assert parse(LEAD, seq=1).seq == 1
    assert refused(PRESS, seq=0).startswith("seq must be")
    assert refused(LEAD, seq=0).startswith("seq must be")


def test_a_resume_token_may_be_512_characters_but_not_empty_or_longer() -> None:
    assert parse(RESUME, token="t" * 512) == ResumeFrame(token="t" * 512)
    assert refused(RESUME, token="") == "token must be 1..512 characters"
    assert refused(RESUME, token="t" * 513) == "token must be 1..512 characters"


def test_a_resume_from_zero_asks_for_every_message() -> None:
    assert parse(RESUME, last_seq=0) == ResumeFrame(token="tok", last_seq=0)
    assert refused(RESUME, last_seq=-1).startswith("last_seq must")


@pytest.mark.parametrize(
    "name", ["referrer", "utm_source", "utm_medium", "utm_campaign", "locale", "time_zone"]
)
def test_each_context_string_is_bounded_at_500_characters(name: str) -> None:
    at_limit = parse(START, context={name: "c" * MAX_CONTEXT_CHARS})
    assert getattr(at_limit.context, name) == "c" * MAX_CONTEXT_CHARS
    message = refused(START, context={name: "c" * (MAX_CONTEXT_CHARS + 1)})
    assert message == f"context.{name} is too long"


def test_lead_fields_are_bounded_in_number_and_length() -> None:
    most = {f"f{i}": "v" * MAX_FIELD_CHARS for i in range(MAX_FIELDS)}
    assert parse(LEAD, fields=most) == LeadFrame(seq=9, node="contact", fields=most)
    too_many = {**most, "extra": "v"}
    assert refused(LEAD, fields=too_many) == "too many or too long lead fields"
    too_long = {"email": "v" * (MAX_FIELD_CHARS + 1)}
    assert refused(LEAD, fields=too_long) == "too many or too long lead fields"
    assert parse(LEAD, fields={"email": ""}).fields == {"email": ""}  # required: the decider's


@pytest.mark.parametrize(
    "name", ["email", "phone_2", "x", "0", "a-b", "f" * 64], ids=lambda n: n[:8]
)
def test_lead_field_names_may_be_short_lowercase_identifiers(name: str) -> None:
    assert parse(LEAD, fields={name: "v"}).fields == {name: "v"}


@pytest.mark.parametrize(
    "name", ["", "Email", "_email", "-x", "e mail", "ann@example.com", "f" * 65, "é"]
)
def test_other_lead_field_names_are_refused(name: str) -> None:
    """Names reach the log in rejections, so they cannot carry a visitor's details."""
    assert refused(LEAD, fields={name: "v"}) == "lead field names must be identifiers"
