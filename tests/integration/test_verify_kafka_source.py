"""How the Kafka source turns a partition's records into transcripts (no broker):
commands opened as the processor opens them, unreadable ones skipped as it skips
them, conversations past the topics' retention or before ``--from`` set apart."""

from __future__ import annotations

import pytest

from app.verify.kafka_source import EVENTS_PAST_RETENTION, PAST_RETENTION, KafkaLog
from app.verify.model import UnreadableLog
from schemas.batches import encode_batch
from schemas.codec import encode
from schemas.commands import Command, PressButton, StartConversation, SubmitLead, VisitorContext
from schemas.events import ConversationStarted, Event, NodeEntered, event_id
from services.distributed.command_sealing import CommandSealer
from services.distributed.settings import KafkaSettings

SECRET = "unit-test-command-secret-0123456789"


def source() -> KafkaLog:
    return KafkaLog(KafkaSettings(bootstrap="unused:9092"), CommandSealer(SECRET))


def start(cid: str, at: float = 100.0) -> StartConversation:
    return StartConversation(conversation_id=cid, seq=1, at=at, flow_id="f", site_id="s")


def started(cid: str, at: float = 100.0) -> ConversationStarted:
    return ConversationStarted(
        conversation_id=cid,
        seq=1,
        id=event_id(cid, 1),
        at=at,
        command_seq=1,
        flow_id="f",
        flow_version=1,
        site_id="s",
        context=VisitorContext(),
    )


def entered(cid: str, seq: int, command_seq: int) -> Event:
    return NodeEntered(
        conversation_id=cid,
        seq=seq,
        id=event_id(cid, seq),
        at=100.0 + seq,
        command_seq=command_seq,
        node_id="q",
        kind="question",
    )


def test_commands_are_opened_and_unreadable_ones_skipped() -> None:
    sealer = CommandSealer(SECRET)
    lead = SubmitLead(conversation_id="a", seq=2, at=1.0, node_id="n", fields={"email": "x@y.z"})
    other = CommandSealer("another-secret-0123456789abcdef").seal(lead)
    log = source()
    records = [
        (0, b"a", encode(start("a"))),
        (1, b"a", encode(sealer.seal(lead))),
        (2, b"a", encode(other)),
        (3, b"a", b"not json"),
        (4, b"a", None),
    ]
    commands = log._commands(0, records)
    assert commands == {"a": [(0, start("a")), (1, lead)]}
    assert log.skipped_commands == 2


def test_an_unknown_command_version_stops_the_verification() -> None:
    raw = encode(start("a")).replace(b'"v":1', b'"v":3')
    with pytest.raises(UnreadableLog, match=r"^commands partition 2 offset 7: StartConversation"):
        source()._commands(2, [(7, b"a", raw)])


def test_conversations_are_sorted_by_what_the_topics_still_hold() -> None:
    log = source()
    commands: dict[str, list[tuple[int, Command]]] = {
        "whole": [
            (0, start("whole")),
            (3, PressButton(conversation_id="whole", seq=2, at=101.0, node_id="q", button_id="b")),
        ],
        "no-start": [
            (
                1,
                PressButton(
                    conversation_id="no-start", seq=5, at=101.0, node_id="q", button_id="b"
                ),
            )
        ],
        "unlogged": [(2, start("unlogged"))],
    }
    records = [
        (0, b"", encode_batch([started("whole"), entered("whole", 2, 1)])),
        (1, b"", encode_batch([started("no-start")])),
        (2, b"", encode_batch([entered("old", 7, 4)])),
        (3, b"", encode_batch([entered("whole", 3, 2)])),
    ]
    events = log._events(0, records)
    assert [e.where for e in events["whole"]] == [
        "events partition 0 offset 0",
        "events partition 0 offset 0",
        "events partition 0 offset 3",
    ]
    out = {t.conversation_id: t for t in log._transcripts(commands, events, None)}
    assert out["whole"].commands_lost == "" and len(out["whole"].commands) == 2
    assert out["no-start"].commands_lost == PAST_RETENTION
    assert out["old"].commands_lost == EVENTS_PAST_RETENTION
    assert out["unlogged"].events == () and out["unlogged"].commands_lost == ""
    assert out["whole"].pending_from is None  # the processors' offset is not known
    marked = {t.conversation_id: t for t in log._transcripts(commands, events, None, 3)}
    assert (marked["whole"].pending_from, marked["unlogged"].pending_from) == (1, None)
    marked = {t.conversation_id: t for t in log._transcripts(commands, events, None, 2)}
    assert marked["unlogged"].pending_from == 0
    later = {t.conversation_id for t in log._transcripts(commands, log._events(0, records), 150.0)}
    assert later == set()  # every conversation started before --from


def test_an_unknown_batch_version_names_partition_and_offset() -> None:
    raw = encode_batch([started("a")]).replace(b'"v":1,"conv', b'"v":4,"conv')
    with pytest.raises(UnreadableLog, match=r"^events partition 1 offset 9: EventBatch version 4"):
        source()._events(1, [(9, b"a", raw)])
