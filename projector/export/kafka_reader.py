"""The ``events`` topic, read like ``leadflow replay --kafka`` reads it.

Every partition is assigned by hand: no group id, so no consumer group is
created, nothing is committed and the live consumers are not rebalanced.
``read_committed`` leaves aborted transactions out. A partition is read from
``offsets_for_times(since)`` (a record's timestamp is at or after the time its
events were stamped, so a conversation started at/after ``since`` has its
start there or later) up to the end offset seen at the start (with
``read_committed``: the last stable offset); later records are not exported.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from projector.export.errors import NoEventLog, unreadable
from projector.export.raw import Obj, Place, RawBatch, check, describe, loads
from projector.export.selection import Cohort
from projector.kafka_replay import _start_offsets as start_offsets
from projector.kafka_replay import read_records
from projector.live import Record
from schemas.batches import BATCH_TYPE, BATCH_VERSION, decode_batch
from schemas.codec import MessageError
from services.distributed.readers import manual_consumer
from services.distributed.settings import KafkaSettings
from services.distributed.topics import partition_count

MAX_RECORDS = 10_000
Progress = Callable[[int, int], None]


def raw_records(records: Sequence[Record], cohort: Cohort) -> RawBatch:
    """The selected conversations' event objects of ``records`` (event batches);
    a record this reader cannot read stops the export (never skipped)."""
    objs: list[Obj] = []
    places: list[Place] = []
    for record in records:
        place = (record.partition, record.offset)
        batch = loads(record.value, place)
        if not _is_batch(batch):
            try:
                decode_batch(record.value)
            except MessageError as exc:
                raise unreadable(describe(place), exc) from exc
            raise unreadable(describe(place), MessageError("not an event batch"))
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


async def assign_ranges(
    consumer: AIOKafkaConsumer, settings: KafkaSettings, since: float | None
) -> tuple[dict[TopicPartition, int], dict[TopicPartition, int]]:
    count = await partition_count(settings, settings.events_topic)
    if not count:
        raise NoEventLog(f"topic {settings.events_topic!r} does not exist: nothing to export")
    tps = [TopicPartition(settings.events_topic, p) for p in range(count)]
    consumer.assign(tps)
    end: dict[TopicPartition, int] = await consumer.end_offsets(tps)
    start = await start_offsets(consumer, tps, end, since)
    for tp in tps:
        consumer.seek(tp, start[tp])
    return start, end


async def iter_kafka(
    settings: KafkaSettings,
    cohort: Cohort,
    since: float | None,
    progress: Progress | None,
    max_records: int = MAX_RECORDS,
) -> AsyncIterator[RawBatch]:
    consumer = manual_consumer(settings)
    try:
        await consumer.start()
        start, end = await assign_ranges(consumer, settings, since)
        total = sum(max(0, end[tp] - start[tp]) for tp in start)
        done = 0
        if progress is not None:
            progress(done, total)
        async for records, covered in read_records(consumer, dict(start), end, max_records):
            done += covered
            batch = raw_records(records, cohort)
            if progress is not None:
                progress(min(done, total), total)
            if batch.objs:
                yield batch
        if progress is not None and done < total:
            progress(total, total)
    finally:
        await consumer.stop()
