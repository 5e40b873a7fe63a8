"""Which conversations an export selects, and how unreadable records stop it."""

from __future__ import annotations

import argparse
from pathlib import Path

import orjson
import pytest

from app.cli_export import add_command, check_args, output_format
from projector.export.errors import UnreadableLog
from projector.export.kafka_reader import raw_records
from projector.export.leads import open_lead
from projector.export.raw import decode
from projector.export.selection import Cohort, Selection, selects
from projector.export.source import KafkaOrigin, SqliteOrigin, origin_and_selection
from projector.export.sqlite_reader import raw_rows
from schemas.batches import encode_batch
from schemas.codec import encode
from schemas.commands import VisitorContext
from schemas.events import (
    ButtonPressed,
    ConversationStarted,
    Event,
    LeadCaptured,
    event_id,
)
from services.conversation.sealing import AesGcmSealer
from services.log_follower import LogRecord

T0 = 1_000_000.0


def start(cid: str, at: float, flow: str = "f", site: str = "s") -> ConversationStarted:
    return ConversationStarted(
        conversation_id=cid,
        seq=1,
        id=event_id(cid, 1),
        at=at,
        command_seq=1,
        flow_id=flow,
        flow_version=1,
        site_id=site,
        context=VisitorContext(),
    )


def press(cid: str, seq: int, at: float) -> ButtonPressed:
    return ButtonPressed(
        conversation_id=cid,
        seq=seq,
        id=event_id(cid, seq),
        at=at,
        command_seq=seq,
        node_id="n",
        button_id="b",
    )


def log() -> list[Event]:
    """a starts before the range, b and c inside, d at its end; b goes on after it."""
    return [
        start("a", T0 - 10),
        start("b", T0),
        press("a", 2, T0 + 1),
        start("c", T0 + 5, flow="g", site="t"),
        press("b", 2, T0 + 50),  # after --to: still b's
        start("d", T0 + 10),
        press("c", 2, T0 + 60),
        press("orphan", 2, T0 + 1),  # its start is not in the scanned range
    ]


def kept(selection: Selection, events: list[Event] | None = None) -> list[tuple[str, int]]:
    return [(e.conversation_id, e.seq) for e in Cohort(selection).keep(events or log())]


def test_the_unit_is_the_conversation_started_in_from_to() -> None:
    assert kept(Selection(since=T0, until=T0 + 10)) == [("b", 1), ("c", 1), ("b", 2), ("c", 2)]


def test_no_bounds_selects_every_conversation_whose_start_was_seen() -> None:
    assert ("orphan", 2) not in kept(Selection())
    assert len(kept(Selection())) == 7


@pytest.mark.parametrize(
    ("selection", "conversations"),
    [
        (Selection(flow_id="g"), {"c"}),
        (Selection(site_id="s"), {"a", "b", "d"}),
        (Selection(flow_id="f", since=T0), {"b", "d"}),
        (Selection(until=T0), {"a"}),
        (Selection(site_id="nope"), set()),
    ],
)
def test_flow_site_and_time_filters(selection: Selection, conversations: set[str]) -> None:
    assert {cid for cid, _ in kept(selection)} == conversations


def test_the_cohort_persists_across_batches() -> None:
    cohort = Cohort(Selection(since=T0))
    events = log()
    first = cohort.keep(events[:3])
    second = cohort.keep(events[3:])
    assert [e.conversation_id for e in first + second] == ["b", "c", "b", "d", "c"]
    assert len(cohort) == 3 and "b" in cohort and "a" not in cohort


def test_selects_is_half_open() -> None:
    selection = Selection(since=T0, until=T0 + 1)
    assert selects(selection, T0, "f", "s")
    assert not selects(selection, T0 + 1, "f", "s")


def sqlite_rows(events: list[Event]) -> list[tuple[int, str, str, bytes]]:
    return [(i + 1, e.conversation_id, e.type, encode(e)) for i, e in enumerate(events)]


def test_sqlite_rows_of_a_start_and_its_events_in_one_chunk_are_kept() -> None:
    """Regression: the prefilter that skips decoding unselected conversations
    must know the starts of the same chunk."""
    events = decode(raw_rows(sqlite_rows(log()), Cohort(Selection(since=T0))))
    assert [(e.conversation_id, e.seq) for e in events] == [
        ("b", 1),
        ("c", 1),
        ("b", 2),
        ("d", 1),
        ("c", 2),
    ]


def test_an_unknown_version_in_sqlite_names_the_position_and_the_version() -> None:
    rows = sqlite_rows(log())
    body = orjson.loads(rows[4][3])
    body["v"] = 99
    rows[4] = (rows[4][0], rows[4][1], rows[4][2], orjson.dumps(body))
    with pytest.raises(UnreadableLog) as caught:
        decode(raw_rows(rows, Cohort(Selection())))
    message = str(caught.value)
    assert "events.db position 5" in message
    assert "ButtonPressed version 99" in message
    assert "upgrade leadflow" in message


def test_an_unknown_version_in_kafka_names_partition_and_offset() -> None:
    good_batch = encode_batch([start("b", T0)])
    good = LogRecord(3, 16, good_batch)
    bad_batch = orjson.loads(encode_batch([press("b", 2, T0)]))
    bad_batch["events"][0]["v"] = 2
    bad = LogRecord(3, 17, orjson.dumps(bad_batch))
    with pytest.raises(UnreadableLog, match=r"partition 3 offset 17: ButtonPressed version 2"):
        raw_records([good, bad], Cohort(Selection()))
    newer_batch = LogRecord(0, 5, orjson.dumps({**orjson.loads(good_batch), "v": 7}))
    with pytest.raises(UnreadableLog, match=r"partition 0 offset 5: EventBatch version 7"):
        raw_records([newer_batch], Cohort(Selection()))


def test_a_malformed_record_stops_the_export_too() -> None:
    with pytest.raises(UnreadableLog, match=r"partition 1 offset 2: unreadable record"):
        raw_records([LogRecord(1, 2, b"{not json")], Cohort(Selection()))


def lead(sealed: str) -> LeadCaptured:
    return LeadCaptured(
        conversation_id="c",
        seq=9,
        id=event_id("c", 9),
        at=T0,
        command_seq=4,
        node_id="n",
        site_id="s",
        fields_present=("email",),
        consent=True,
        sealed=sealed,
    )


def test_a_lead_opens_with_its_key_and_is_erased_without_it() -> None:
    key = bytes(range(32))
    sealed = AesGcmSealer(key).seal(b'{"email":"ann@example.com"}', event_id("c", 9))
    assert open_lead(lead(sealed), key).fields == {"email": "ann@example.com"}
    assert open_lead(lead(sealed), None).fields is None
    assert open_lead(lead(sealed), bytes(32)).fields is None
    assert open_lead(lead("garbage"), key).fields is None


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_command(parser.add_subparsers(dest="command"))
    return parser.parse_args(["export", "--out", "x.parquet", *argv])


def test_source_arguments_make_an_origin_and_a_selection() -> None:
    origin, selection = origin_and_selection(
        parse("--data-dir", "/d", "--from", "2025-11-26", "--to", "1764201600", "--flow", "f")
    )
    assert origin == SqliteOrigin(Path("/d"))
    assert selection == Selection(since=1_764_115_200.0, until=1_764_201_600.0, flow_id="f")
    kafka, _ = origin_and_selection(parse("--kafka", "--site", "acme"))
    assert isinstance(kafka, KafkaOrigin)


def test_a_bad_time_names_its_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse("--to", "next tuesday")
    assert "--to 'next tuesday'" in capsys.readouterr().err


def test_format_from_the_suffix_and_refusals() -> None:
    assert output_format("week.parquet", None) == "parquet"
    assert output_format("week.JSONL", None) == "jsonl"
    assert output_format("-", None) == "jsonl"
    assert output_format("week.dat", "parquet") == "parquet"
    with pytest.raises(ValueError, match="--format"):
        output_format("week.dat", None)
    with pytest.raises(ValueError, match="not to stdout"):
        check_args("-", "jsonl", include_pii=True)
    with pytest.raises(ValueError, match="Parquet"):
        check_args("-", "parquet", include_pii=False)
    check_args("x.parquet", "parquet", include_pii=True)
