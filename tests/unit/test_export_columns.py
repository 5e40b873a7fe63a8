"""The export's flat table: every event type's columns, and the privacy rules.

The Arrow tables and JSON Lines made from these columns (pyarrow) are tested in
tests/integration/test_export_tables.py."""

from __future__ import annotations

import orjson
import pytest

from projector.export.columns import (
    COMMON,
    PII,
    SPECIFIC,
    UNKNOWN_FIELD,
    Conversation,
    OpenedLead,
    column_names,
    field_errors,
    referrer_origin,
)
from projector.export.raw_columns import to_columns
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
from schemas.flow import FieldType, LeadField
from services.conversation.leads import validate_lead

CID = "c1"
T = 1_764_115_200.25


def header(seq: int, command_seq: int = 1) -> dict[str, object]:
    return {
        "conversation_id": CID,
        "seq": seq,
        "id": event_id(CID, seq),
        "at": T + seq,
        "command_seq": command_seq,
    }


def one_of_each() -> list[Event]:
    return [
        ConversationStarted(
            **header(1),  # type: ignore[arg-type]
            flow_id="solar-quote",
            flow_version=3,
            site_id="acme",
            context=VisitorContext(
                device="mobile",
                referrer="https://news.example:8443/path?email=ann@example.com",
                utm_source="google",
                utm_medium="cpc",
                utm_campaign="spring",
                locale="en-GB",
                time_zone="Europe/London",
            ),
        ),
        NodeEntered(**header(2), node_id="roof", kind="question"),  # type: ignore[arg-type]
        ButtonPressed(**header(3, 2), node_id="roof", button_id="flat"),  # type: ignore[arg-type]
        EdgeChosen(
            **header(4, 2),  # type: ignore[arg-type]
            node_id="roof",
            button_id="flat",
            candidates=("a", "b"),
            chosen="b",
            propensity=0.25,
            policy_version="thompson-7",
            seed=(1 << 63) - 1,
            features=("device=mobile", "hour=night"),
        ),
        CommandRejected(
            **header(5, 3),  # type: ignore[arg-type]
            command_type="SubmitLead",
            reason="invalid_lead",
            detail="check the form",
            consumed=True,
            fields={"email": "is not a valid email address", "ann@example.com": UNKNOWN_FIELD},
        ),
        LeadCaptured(
            **header(6, 4),  # type: ignore[arg-type]
            node_id="contact",
            site_id="acme",
            fields_present=("email", "name"),
            consent=True,
            sealed="SEALED-BLOB",
        ),
        ConversationCompleted(**header(7, 4), node_id="end", lead_captured=True),  # type: ignore[arg-type]
    ]


def rows(cols: dict[str, list[object]]) -> list[dict[str, object]]:
    names = list(cols)
    return [dict(zip(names, values, strict=True)) for values in zip(*cols.values(), strict=True)]


def specific(row: dict[str, object]) -> dict[str, object]:
    """The non-null type-specific columns of a row."""
    return {k: v for k, v in row.items() if k in SPECIFIC + PII and v is not None}


def test_every_event_type_maps_to_its_columns() -> None:
    """Guards the column contract analysts build on (docs/analytics.md)."""
    events = one_of_each()
    out = rows(to_columns(events, {}, include_pii=False))
    assert [r["type"] for r in out] == [e.type for e in events]
    for row, e in zip(out, events, strict=True):
        assert row["event_id"] == e.id
        assert row["conversation_id"] == CID
        assert (row["seq"], row["command_seq"], row["v"]) == (e.seq, e.command_seq, 1)
        assert row["at"] == round(e.at * 1_000_000)
        assert (row["flow_id"], row["flow_version"], row["site_id"]) == ("solar-quote", 3, "acme")
    assert specific(out[0]) == {
        "device": "mobile",
        "referrer": "https://news.example:8443",
        "utm_source": "google",
        "utm_medium": "cpc",
        "utm_campaign": "spring",
        "locale": "en-GB",
        "time_zone": "Europe/London",
    }
    assert specific(out[1]) == {"node_id": "roof", "kind": "question"}
    assert specific(out[2]) == {"node_id": "roof", "button_id": "flat"}
    assert specific(out[3]) == {
        "node_id": "roof",
        "button_id": "flat",
        "candidates": ["a", "b"],
        "chosen": "b",
        "propensity": 0.25,
        "policy_version": "thompson-7",
        "seed": (1 << 63) - 1,
        "features": ["device=mobile", "hour=night"],
    }
    assert specific(out[4]) == {
        "command_type": "SubmitLead",
        "reason": "invalid_lead",
        "detail": "check the form",
        "consumed": True,
        "field_errors": '{"email":"is not a valid email address"}',
        "unknown_fields": 1,
    }
    assert specific(out[5]) == {
        "node_id": "contact",
        "fields_present": ["email", "name"],
        "consent": True,
    }
    assert specific(out[6]) == {"node_id": "end", "lead_captured": True}


def test_columns_cover_every_field_of_every_event_type() -> None:
    """A field added to an event must be mapped (or knowingly left out) here."""
    left_out = {"sealed", "fields", "context", "id", "at", "flow_id", "flow_version", "site_id"}
    left_out.add("preview")  # preview conversations are not exported at all (selection.py)
    mapped = set(COMMON) | set(SPECIFIC) | {"event_id"}
    for e in one_of_each():
        fields = set(e.__dataclass_fields__)
        assert fields - left_out <= mapped, e.type


def test_without_pii_no_contact_detail_and_no_sealed_blob_anywhere() -> None:
    """The default export carries no contact details: not the sealed blob, not an
    unknown field's name the visitor typed, not a referrer's query string."""
    cols = to_columns(one_of_each(), {}, include_pii=False)
    assert set(cols) == set(column_names(False))
    assert not set(PII) & set(cols)
    text = orjson.dumps(cols)
    for secret in (b"SEALED-BLOB", b"ann@example.com", b"sealed"):
        assert secret not in text


def test_with_pii_the_opened_lead_is_a_json_column_and_erased_leads_are_flagged() -> None:
    events = one_of_each()
    lead_id = events[5].id
    opened = {lead_id: OpenedLead({"email": "ann@example.com", "name": "Ann"})}
    out = rows(to_columns(events, {}, include_pii=True, leads=opened))
    assert orjson.loads(str(out[5]["lead"])) == {"email": "ann@example.com", "name": "Ann"}
    assert out[5]["lead_erased"] is False
    assert all(r["lead"] is None and r["lead_erased"] is None for i, r in enumerate(out) if i != 5)
    assert out[0]["referrer"] == "https://news.example:8443/path?email=ann@example.com"
    assert "ann@example.com" in str(out[4]["field_errors"])
    erased = rows(to_columns(events, {}, include_pii=True, leads={lead_id: OpenedLead(None)}))
    assert (erased[5]["lead"], erased[5]["lead_erased"]) == (None, True)
    cols = to_columns(events, {}, True, opened)
    assert list(cols) == list(column_names(True))
    assert b"SEALED-BLOB" not in orjson.dumps(cols)


def test_later_events_carry_the_flow_and_site_of_their_conversation() -> None:
    """A conversation's start may be in an earlier batch than its other events."""
    events = one_of_each()
    known: dict[str, Conversation] = {}
    to_columns(events[:1], known, include_pii=False)
    later = rows(to_columns(events[1:], known, include_pii=False))
    assert {(r["flow_id"], r["site_id"]) for r in later} == {("solar-quote", "acme")}


def test_the_validation_messages_never_echo_a_value() -> None:
    """Why field_errors may be exported without --include-pii: only unknown field
    names come from the visitor, and those are counted, not named."""
    specs = (
        LeadField("email", FieldType.EMAIL, "Email", required=True),
        LeadField("phone", FieldType.PHONE, "Phone", required=False),
        LeadField("consent", FieldType.CONSENT, "Ok", required=True),
    )
    typed = {"email": "ann(at)example", "phone": "0044 12", "consent": "maybe", "x@y.z": "1"}
    _, errors = validate_lead(specs, typed, "en-GB")
    text, unknown = field_errors(errors, include_pii=False)
    assert unknown == 1
    assert text is not None
    for value in typed.values():
        assert value not in text
    assert "x@y.z" not in text


@pytest.mark.parametrize(
    ("referrer", "origin"),
    [
        ("", ""),
        ("https://a.example/x?q=1", "https://a.example"),
        ("http://user:pw@b.example:81/", "http://b.example:81"),
        ("not a url", ""),
        ("http://[bad", ""),
    ],
)
def test_referrer_keeps_only_scheme_and_host(referrer: str, origin: str) -> None:
    assert referrer_origin(referrer) == origin
