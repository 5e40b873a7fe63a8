"""The ``events`` topic, read like ``leadflow replay --kafka`` reads it.

Through a manual :class:`~services.distributed.kafka_follower.KafkaLogFollower`:
every partition assigned by hand, no group id, so no consumer group is
created, nothing is committed and the live consumers are not rebalanced;
``read_committed`` leaves aborted transactions out. A partition is read from
``offsets_for_time(since)`` (a record's timestamp is at or after the time its
events were stamped, so a conversation started at/after ``since`` has its
start there or later) up to the end offset seen at the start (with
``read_committed``: the last stable offset); later records are not exported
(:func:`~services.log_follower.read_bounded`).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, Protocol

from projector.export.errors import NoEventLog, Place, unreadable
from projector.export.raw import Obj, RawBatch, check, loads
from projector.export.selection import Cohort
from schemas.batches import BATCH_TYPE, BATCH_VERSION, decode_batch
from schemas.codec import MessageError
from services.distributed.kafka_follower import KafkaLogFollower
from services.distributed.settings import KafkaSettings
from services.log_follower import bounded_range, read_bounded

MAX_RECORDS = 10_000
Progress = Callable[[int, int], None]


class TopicRecord(Protocol):
    """What :func:`raw_records` reads of a record (a
    :class:`~services.log_follower.LogRecord`); a tombstone's value is None."""

    @property
    def partition(self) -> int: ...

    @property
    def offset(self) -> int: ...

    @property
    def value(self) -> bytes | None: ...


def raw_records(records: Sequence[TopicRecord], cohort: Cohort) -> RawBatch:
    """The selected conversations' event objects of ``records`` (event batches;
    tombstones are skipped); a record this reader cannot read stops the export
    (never skipped)."""
    objs: list[Obj] = []
    places: list[Place] = []
    for record in records:
        if record.value is None:
            continue
        place = (record.partition, record.offset)
        batch = loads(record.value, place)
        if not _is_batch(batch):
            try:
                decode_batch(record.value)
            except MessageError as exc:
                raise unreadable(place, exc) from exc
            raise unreadable(place, MessageError("not an event batch"))
        for obj in batch["events"]:
            objs.append(check(obj, place))
            places.append(place)
    return cohort.keep_raw(RawBatch(objs, places))


def _is_batch(obj: Any) -> bool:
    return (
        type(obj) is dict
        and obj.get("type") == BATCH_TYPE
        and obj.get("v") == BATCH_VERSION
        and type(obj.get("events")) is list
        and len(obj["events"]) > 0
    )


def events_follower(settings: KafkaSettings) -> KafkaLogFollower:
    """A manual follower of every partition of the ``events`` topic."""
    return KafkaLogFollower(settings, settings.events_topic)


async def iter_kafka(
    settings: KafkaSettings,
    cohort: Cohort,
    since: float | None,
    progress: Progress | None,
    max_records: int = MAX_RECORDS,
) -> AsyncIterator[RawBatch]:
    follower = events_follower(settings)
    try:
        await follower.start()
        if not follower.assigned():
            raise NoEventLog(f"topic {settings.events_topic!r} does not exist: nothing to export")
        start, end = await bounded_range(follower, since)
        total = sum(max(0, end[p] - start[p]) for p in start)
        done = 0
        if progress is not None:
            progress(done, total)
        chunks = read_bounded(follower, start, end, max_records)
        async with contextlib.aclosing(chunks):
            async for chunk in chunks:
                done += chunk.covered
                batch = raw_records(chunk.records, cohort)
                if progress is not None:
                    progress(min(done, total), total)
                if batch.objs:
                    yield batch
        if progress is not None and done < total:
            progress(total, total)
    finally:
        await follower.stop()
