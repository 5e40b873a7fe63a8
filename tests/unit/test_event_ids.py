"""Event ids are UUIDv5 of (conversation id, seq), computed by hand on the hot path."""

from __future__ import annotations

import uuid

import pytest

from schemas.events import _EVENT_NAMESPACE, event_id


@pytest.mark.parametrize(
    ("conversation_id", "seq"),
    [("a", 1), ("29a70272-a603-4600-b4f9-f46caccd73b0", 17), ("é" * 50, 123456)],
)
def test_event_id_equals_the_standard_uuid5(conversation_id: str, seq: int) -> None:
    """The hand-rolled id must stay byte-identical to uuid.uuid5, or replays diverge."""
    expected = uuid.uuid5(_EVENT_NAMESPACE, f"{conversation_id}/{seq}")
    assert event_id(conversation_id, seq) == str(expected)
    assert uuid.UUID(event_id(conversation_id, seq)).version == 5


def test_event_ids_differ_per_conversation_and_seq() -> None:
    """Two events never share an id unless they are the same (conversation, seq)."""
    ids = {event_id(c, s) for c in ("a", "b", "a/1") for s in (1, 2, 11)}
    assert len(ids) == 9
