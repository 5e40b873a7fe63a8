"""Why an export cannot go on, said in words an operator can act on.

A record the export cannot decode is the log's one
:class:`~services.log_follower.UnreadableLog` (re-exported here), naming the
record as every reader of the log names it: ``events.db position 812`` or
``events partition 3 offset 812``.
"""

from __future__ import annotations

from schemas.codec import MessageError, UnknownType, UnsupportedVersion
from services.log_follower import UnreadableLog

__all__ = ["NoEventLog", "Place", "UnreadableLog", "describe", "unreadable"]

Place = int | tuple[int, int]  # SQLite position, or (partition, offset) in Kafka's events topic
SQLITE_LOG = "events.db"
KAFKA_LOG = "events"


class NoEventLog(Exception):
    """There is no log to read: no SQLite file, or no ``events`` topic."""


def describe(place: Place) -> str:
    """``events.db position 812`` or ``events partition 3 offset 812``."""
    if isinstance(place, tuple):
        return f"{KAFKA_LOG} partition {place[0]} offset {place[1]}"
    return f"{SQLITE_LOG} position {place}"


def unreadable(place: Place, exc: MessageError) -> UnreadableLog:
    """An :class:`UnreadableLog` for a decode failure at ``place``; its message
    never carries field values, so it is safe to print.

    An unknown version or type is not skipped: an upgraded reader exports it,
    so the export stops rather than leave holes in an analyst's data."""
    newer = isinstance(exc, UnsupportedVersion | UnknownType)
    reason = (
        f"{exc}; upgrade leadflow to export this log" if newer else f"unreadable record ({exc})"
    )
    partition, offset = place if isinstance(place, tuple) else (0, place)
    return UnreadableLog(
        describe(place),
        reason,
        log=KAFKA_LOG if isinstance(place, tuple) else SQLITE_LOG,
        partition=partition,
        offset=offset,
        newer=newer,
    )
