"""The orjson codec: round trips, version and type checks, strict field types."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from schemas.codec import MessageError, Registry, UnknownType, UnsupportedVersion, encode
from schemas.commands import (
    COMMANDS,
    AnswerQuestion,
    FireTimer,
    GoBack,
    PressButton,
    Resume,
    StartConversation,
    SubmitLead,
    VisitorContext,
    decode_command,
)
from schemas.events import (
    EVENTS,
    ButtonPressed,
    CommandRejected,
    ConversationAbandoned,
    ConversationCompleted,
    ConversationStarted,
    EdgeChosen,
    LeadCaptured,
    NodeEntered,
    QuestionAnswered,
    VisitorNudged,
    WentBack,
    decode_event,
    event_id,
)
from schemas.replies import (
    REPLIES,
    BotMessage,
    ButtonView,
    FieldView,
    ImageView,
    InputView,
    Reply,
    ReplyError,
    decode_reply,
)

CID = "conv-c"
CONTEXT = VisitorContext(
    device="desktop",
    referrer="https://example.com/",
    utm_source="news",
    utm_medium="email",
    utm_campaign="spring",
    locale="fr-FR",
    time_zone="Europe/Paris",
)
HEADER: dict[str, Any] = {
    "conversation_id": CID,
    "seq": 4,
    "id": event_id(CID, 4),
    "at": 12.5,
    "command_seq": 2,
}

COMMAND_SAMPLES: dict[str, Any] = {
    "StartConversation": StartConversation(
        conversation_id=CID,
        seq=1,
        at=1.25,
        flow_id="quiz",
        site_id="site",
        context=CONTEXT,
        reply_to="gw-1",
    ),
    "PressButton": PressButton(conversation_id=CID, seq=2, at=2.0, node_id="q", button_id="b"),
    "SubmitLead": SubmitLead(
        conversation_id=CID, seq=3, at=3.0, node_id="f", fields={"email": "a@example.com"}
    ),
    "Resume": Resume(conversation_id=CID, at=4.0, after_seq=7, reply_to="gw-2"),
    "AnswerQuestion": AnswerQuestion(
        conversation_id=CID, seq=4, at=4.5, node_id="budget", value="1200"
    ),
    "GoBack": GoBack(conversation_id=CID, seq=5, at=5.0, node_id="q", reply_to="gw-1"),
    "FireTimer": FireTimer(conversation_id=CID, at=6.0, timer="idle", for_seq=9, reply_to="3"),
}
EVENT_SAMPLES: dict[str, Any] = {
    "ConversationStarted": ConversationStarted(
        **HEADER, flow_id="quiz", flow_version=3, site_id="site", context=CONTEXT
    ),
    "ButtonPressed": ButtonPressed(**HEADER, node_id="q", button_id="b"),
    "EdgeChosen": EdgeChosen(
        **HEADER,
        node_id="q",
        button_id="b",
        candidates=("x", "y", "z"),
        chosen="y",
        propensity=1 / 3,
        policy_version="uniform-v1",
        seed=2**62 + 12345,
    ),
    "NodeEntered": NodeEntered(**HEADER, node_id="q", kind="question"),
    "LeadCaptured": LeadCaptured(
        **HEADER,
        node_id="f",
        site_id="site",
        fields_present=("consent", "email"),
        consent=True,
        sealed="c2VhbGVk",
    ),
    "ConversationCompleted": ConversationCompleted(**HEADER, node_id="end", lead_captured=True),
    "QuestionAnswered": QuestionAnswered(
        **HEADER, node_id="budget", variable="budget", personal=True, sealed="c2VhbGVk"
    ),
    "WentBack": WentBack(**HEADER, node_id="q", from_node="f", withdrawn_seq=2),
    "VisitorNudged": VisitorNudged(**HEADER, node_id="q", idle_seconds=60.0),
    "ConversationAbandoned": ConversationAbandoned(
        **HEADER, node_id="q", idle_seconds=1800.0, lead_captured=False
    ),
    "CommandRejected": CommandRejected(
        **HEADER,
        command_type="SubmitLead",
        reason="invalid_lead",
        detail="Please check",
        consumed=True,
        fields={"email": "is not a valid email address"},
    ),
}
REPLY_SAMPLES: dict[str, Any] = {
    "Reply": Reply(
        conversation_id=CID,
        command_seq=3,
        ack=3,
        messages=(
            BotMessage(
                seq=5,
                node_id="q",
                kind="question",
                text="Pick",
                buttons=(ButtonView(id="a", label="A"), ButtonView(id="b", label="B")),
                answer="A",
            ),
            BotMessage(
                seq=6,
                node_id="f",
                kind="lead_form",
                text="Details",
                fields=(FieldView(name="email", type="email", label="Email", required=True),),
            ),
            BotMessage(
                seq=7,
                node_id="budget",
                kind="input",
                text="**Your** budget?",
                input=InputView(type="choice", choices=(ButtonView(id="a", label="A"),), min=1.0),
                image=ImageView(src="https://example.com/a.png", alt="A roof"),
            ),
        ),
        error=ReplyError(code="invalid_lead", message="m", fields={"email": "bad"}),
        reply_to="gw-1",
    )
}
ALL: list[tuple[Registry, Any]] = [
    *((COMMANDS, m) for m in COMMAND_SAMPLES.values()),
    *((EVENTS, m) for m in EVENT_SAMPLES.values()),
    *((REPLIES, m) for m in REPLY_SAMPLES.values()),
]


def press_obj(**changes: Any) -> dict[str, Any]:
    obj: dict[str, Any] = orjson.loads(encode(COMMAND_SAMPLES["PressButton"]))
    obj.update(changes)
    return obj


@pytest.mark.parametrize(
    ("registry", "samples"),
    [(COMMANDS, COMMAND_SAMPLES), (EVENTS, EVENT_SAMPLES), (REPLIES, REPLY_SAMPLES)],
    ids=["commands", "events", "replies"],
)
def test_samples_cover_every_registered_type(registry: Registry, samples: dict[str, Any]) -> None:
    """A new message type must get a round-trip sample here (this test fails until it does)."""
    assert sorted(samples) == registry.names()
    assert all(sample.type == name for name, sample in samples.items())


@pytest.mark.parametrize(("registry", "message"), ALL, ids=[m.type for _, m in ALL])
def test_message_round_trips_equal(registry: Registry, message: Any) -> None:
    """encode then decode must give back an equal message of the same class."""
    decoded = registry.decode(encode(message))
    assert type(decoded) is type(message)
    assert decoded == message


def test_nested_dataclasses_and_tuples_are_restored() -> None:
    """Nested dataclasses must come back as instances and JSON arrays as tuples."""
    started = decode_event(encode(EVENT_SAMPLES["ConversationStarted"]))
    assert isinstance(started, ConversationStarted)
    assert isinstance(started.context, VisitorContext)
    chosen = decode_event(encode(EVENT_SAMPLES["EdgeChosen"]))
    assert isinstance(chosen, EdgeChosen)
    assert isinstance(chosen.candidates, tuple)
    reply = decode_reply(encode(REPLY_SAMPLES["Reply"]))
    assert isinstance(reply.messages, tuple)
    assert isinstance(reply.messages[0], BotMessage)
    assert isinstance(reply.messages[0].buttons, tuple)
    assert isinstance(reply.messages[0].buttons[0], ButtonView)
    assert isinstance(reply.error, ReplyError)


def test_typed_decoders_return_their_types() -> None:
    """decode_command/decode_event/decode_reply must dispatch on ``type``."""
    assert isinstance(decode_command(encode(COMMAND_SAMPLES["Resume"])), Resume)
    assert isinstance(decode_event(encode(EVENT_SAMPLES["NodeEntered"])), NodeEntered)
    assert isinstance(decode_reply(encode(REPLY_SAMPLES["Reply"])), Reply)


def test_omitted_defaults_are_filled_in() -> None:
    """Optional fields (reply_to, context, seq of Resume) must take their defaults."""
    start = decode_command(
        b'{"type":"StartConversation","v":1,"conversation_id":"c","seq":1,"at":1,'
        b'"flow_id":"f","site_id":"s"}'
    )
    assert isinstance(start, StartConversation)
    assert (start.context, start.reply_to) == (VisitorContext(), "")
    resume = decode_command(b'{"type":"Resume","v":1,"conversation_id":"c","at":1,"after_seq":0}')
    assert isinstance(resume, Resume)
    assert resume.seq == 0


def test_int_is_accepted_for_a_float_field_as_float() -> None:
    """JSON has one number type: ``"at": 5`` must decode as the float 5.0."""
    command = decode_command(orjson.dumps(press_obj(at=5)))
    assert command.at == 5.0
    assert isinstance(command.at, float)


def test_unknown_type_raises_unknown_type() -> None:
    """A message of a type nobody registered must be refused as UnknownType."""
    with pytest.raises(UnknownType, match="DeleteEverything"):
        decode_command(orjson.dumps(press_obj(type="DeleteEverything")))


def test_missing_type_raises_unknown_type() -> None:
    """A message without ``type`` must be refused, not guessed."""
    obj = press_obj()
    del obj["type"]
    with pytest.raises(UnknownType):
        decode_command(orjson.dumps(obj))


@pytest.mark.parametrize("version", [2, None])
def test_wrong_version_raises_unsupported_version_with_clear_message(version: Any) -> None:
    """A known type of an unknown version must say which version this reader knows."""
    obj = press_obj(v=version)
    if version is None:
        del obj["v"]
    with pytest.raises(UnsupportedVersion) as info:
        decode_command(orjson.dumps(obj))
    assert str(info.value) == (
        f"PressButton version {version!r} is not supported (this reader knows v1)"
    )
    assert isinstance(info.value, MessageError)


def test_missing_required_field_is_a_message_error_naming_it() -> None:
    """A missing field must be reported by name, not crash with a TypeError."""
    obj = press_obj()
    del obj["button_id"]
    with pytest.raises(MessageError, match="button_id: missing"):
        decode_command(orjson.dumps(obj))


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"seq": "2"}, "seq: expected an integer"),
        ({"seq": True}, "seq: expected an integer"),
        ({"seq": 2.0}, "seq: expected an integer"),
        ({"node_id": 7}, "node_id: expected str"),
    ],
    ids=["int-as-str", "int-as-bool", "int-as-float", "str-as-int"],
)
def test_wrong_scalar_type_is_a_message_error(changes: dict[str, Any], match: str) -> None:
    """Field types are checked: no silent coercion of strings or booleans to numbers."""
    with pytest.raises(MessageError, match=match):
        decode_command(orjson.dumps(press_obj(**changes)))


def test_bool_field_given_an_int_is_a_message_error() -> None:
    """``consumed: 1`` is not a boolean and must be refused."""
    obj: dict[str, Any] = orjson.loads(encode(EVENT_SAMPLES["CommandRejected"]))
    obj["consumed"] = 1
    with pytest.raises(MessageError, match="consumed: expected bool"):
        decode_event(orjson.dumps(obj))


def test_literal_and_nested_values_are_checked() -> None:
    """A value outside a Literal or a non-object nested field must be refused."""
    obj: dict[str, Any] = orjson.loads(encode(COMMAND_SAMPLES["StartConversation"]))
    with pytest.raises(MessageError, match="expected one of"):
        decode_command(orjson.dumps({**obj, "context": {"device": "tv"}}))
    with pytest.raises(MessageError, match="expected an object"):
        decode_command(orjson.dumps({**obj, "context": "mobile"}))


def test_dict_values_and_tuple_items_are_type_checked() -> None:
    """Containers must check their items: lead fields are strings, candidates a list."""
    lead: dict[str, Any] = orjson.loads(encode(COMMAND_SAMPLES["SubmitLead"]))
    with pytest.raises(MessageError, match="expected str"):
        decode_command(orjson.dumps({**lead, "fields": {"email": 5}}))
    chosen: dict[str, Any] = orjson.loads(encode(EVENT_SAMPLES["EdgeChosen"]))
    with pytest.raises(MessageError, match="expected a list"):
        decode_event(orjson.dumps({**chosen, "candidates": "x"}))


def test_nested_field_error_names_the_dotted_path() -> None:
    """An error inside ``context`` must name ``context.referrer``, not ``contextreferrer``."""
    obj: dict[str, Any] = orjson.loads(encode(COMMAND_SAMPLES["StartConversation"]))
    with pytest.raises(MessageError, match=r"context\.referrer"):
        decode_command(orjson.dumps({**obj, "context": {"referrer": 5}}))


@pytest.mark.parametrize("data", [b"{not json", b"[1, 2]"])
def test_malformed_input_is_a_message_error(data: bytes) -> None:
    """Bytes that are not a JSON object must raise MessageError, nothing else."""
    with pytest.raises(MessageError):
        decode_command(data)


def test_submit_lead_repr_redacts_contact_details() -> None:
    """Contact details must never reach logs or tracebacks through repr()."""
    command = SubmitLead(
        conversation_id=CID,
        seq=3,
        at=3.0,
        node_id="f",
        fields={"email": "ann@example.com", "phone": "+442079460958"},
    )
    text = repr(command)
    assert "ann@example.com" not in text
    assert "+442079460958" not in text
    assert "<2 redacted>" in text
    assert CID in text
