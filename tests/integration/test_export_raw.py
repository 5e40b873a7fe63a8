"""The export's fast path (event objects -> columns) equals the generic one
(decoded dataclasses -> columns) on every event type and on a simulated log.
The same comparison on Arrow tables is in tests/integration/test_export_tables.py."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from projector.export.columns import Conversation, OpenedLead
from projector.export.errors import UnreadableLog
from projector.export.raw import RawBatch, check, decode
from projector.export.raw_columns import raw_to_columns, to_columns
from projector.export.selection import Cohort, Selection
from schemas.codec import encode
from schemas.events import Event, LeadCaptured
from tests.support.traffic import simulate
from tests.unit.test_export_columns import one_of_each


def objs(events: list[Event]) -> list[dict[str, Any]]:
    return [orjson.loads(encode(e)) for e in events]


def both(events: list[Event], pii: bool, leads: dict[str, OpenedLead] | None = None) -> Any:
    generic = to_columns(events, {}, pii, leads)
    fast = raw_to_columns(objs(events), {}, pii, leads)
    return generic, fast


@pytest.mark.parametrize("pii", [False, True])
def test_every_event_type_gives_the_same_columns(pii: bool) -> None:
    events = one_of_each()
    leads = {e.id: OpenedLead({"email": "a@b.c"}) for e in events if isinstance(e, LeadCaptured)}
    generic, fast = both(events, pii, leads)
    assert fast == generic


def test_a_simulated_log_gives_the_same_columns() -> None:
    events = asyncio.run(simulate(24, seed=4)).events
    assert {e.type for e in events} >= {
        "ConversationStarted",
        "NodeEntered",
        "ButtonPressed",
        "EdgeChosen",
        "LeadCaptured",
        "ConversationCompleted",
        "CommandRejected",
    }
    generic, fast = both(events, pii=False)
    assert fast == generic


def test_optional_fields_absent_from_an_object_take_their_defaults() -> None:
    """An object written before an optional field existed reads as the generic
    decoder reads it."""
    events = one_of_each()
    raw = objs(events)
    raw[0]["context"] = {"device": "tablet"}
    del raw[3]["features"]
    del raw[4]["fields"]
    raw[3]["propensity"] = 1  # an integral number, as JSON may carry it
    decoded = decode(RawBatch(raw, list(range(len(raw)))))
    assert raw_to_columns(raw, {}, False) == to_columns(decoded, {}, False)


def test_the_cohort_on_objects_equals_the_cohort_on_events() -> None:
    events = asyncio.run(simulate(24, seed=8)).events
    starts = sorted(e.at for e in events if e.type == "ConversationStarted")
    selection = Selection(since=starts[4], until=starts[16], site_id="acme")
    kept = Cohort(selection).keep_raw(RawBatch(objs(events), list(range(len(events)))))
    expected = Cohort(selection).keep(events)
    assert 0 < len(expected) < len(events)  # the selection keeps some and drops some
    assert decode(kept) == expected


@pytest.mark.parametrize(
    ("obj", "reason"),
    [
        ({"type": "ButtonPressed", "v": 2}, "ButtonPressed version 2"),
        ({"type": "Teleported", "v": 1}, "unknown event type 'Teleported'"),
        (["not", "an", "object"], "expected a JSON object"),
        ({"type": "ButtonPressed"}, "version None"),
    ],
)
def test_check_refuses_what_the_fast_path_cannot_read(obj: Any, reason: str) -> None:
    with pytest.raises(UnreadableLog, match=rf"events.db position 7: .*{reason}"):
        check(obj, 7)


def test_a_wrongly_typed_field_is_named_by_the_generic_decoder() -> None:
    raw = objs(one_of_each())
    raw[2]["node_id"] = 5
    batch = RawBatch(raw, [(1, i) for i in range(len(raw))])
    with pytest.raises(UnreadableLog, match=r"partition 1 offset 2: .*node_id"):
        decode(batch)


def test_flow_and_site_tags_agree_across_batches() -> None:
    events = one_of_each()
    generic: dict[str, Conversation] = {}
    fast: dict[str, Conversation] = {}
    to_columns(events[:1], generic, False)
    raw_to_columns(objs(events[:1]), fast, False)
    assert generic == fast
    assert raw_to_columns(objs(events[1:]), fast, False) == to_columns(events[1:], generic, False)


def test_an_event_in_the_log_twice_is_exported_once() -> None:
    """Regression: ``export --kafka`` wrote 30,612 rows for 30,607 events, the log
    holding five records twice (a zombie processor's). Objects and events alike."""
    events = asyncio.run(simulate(12, seed=3)).events
    doubled = [e for event in events for e in ([event, event] if event.seq % 3 == 1 else [event])]
    doubled += events[:5]  # and some again at the end
    on_events, on_objects = Cohort(Selection()), Cohort(Selection())
    assert on_events.keep(doubled) == events
    kept = on_objects.keep_raw(RawBatch(objs(doubled), list(range(len(doubled)))))
    assert decode(kept) == events
    assert on_events.duplicates == on_objects.duplicates == len(doubled) - len(events)
