"""The record of the ``events`` topic: every event one command caused, as one record.

One record per command makes a command's effect atomic on the log: a producer
that dies mid-way leaves either all of a command's events or none, never a
prefix (which a reprocessed command could not tell from a complete one). Each
event inside still carries its own conversation id, seq and deterministic id.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from schemas.codec import MessageError, UnsupportedVersion
from schemas.events import EVENTS, Event

BATCH_TYPE = "EventBatch"
BATCH_VERSION = 1


@dataclass(frozen=True, slots=True)
class EventBatch:
    conversation_id: str
    command_seq: int
    events: tuple[Event, ...]

    @property
    def last_seq(self) -> int:
        return self.events[-1].seq


def encode_batch(events: Sequence[Event]) -> bytes:
    if not events:
        raise ValueError("an event batch holds at least one event")
    first = events[0]
    if any(e.conversation_id != first.conversation_id for e in events):
        raise ValueError("an event batch holds the events of one conversation")
    return orjson.dumps(
        {
            "type": BATCH_TYPE,
            "v": BATCH_VERSION,
            "conversation_id": first.conversation_id,
            "command_seq": first.command_seq,
            "events": list(events),
        }
    )


def decode_batch(data: bytes) -> EventBatch:
    try:
        obj: Any = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise MessageError(f"event batch: not valid JSON ({exc})") from exc
    if not isinstance(obj, dict) or obj.get("type") != BATCH_TYPE:
        raise MessageError("not an event batch")
    if obj.get("v") != BATCH_VERSION:
        raise UnsupportedVersion(
            f"EventBatch version {obj.get('v')!r} is not supported (this reader knows v1)"
        )
    raw = obj.get("events")
    if not isinstance(raw, list) or not raw:
        raise MessageError("event batch: 'events' must be a non-empty list")
    events = tuple(EVENTS.decode_obj(item) for item in raw)
    return EventBatch(str(obj.get("conversation_id")), int(obj.get("command_seq", 0)), events)
