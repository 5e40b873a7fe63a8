"""The :class:`~services.log_follower.LogFollower` port on a Kafka topic (aiokafka).

Every Kafka consumer of the project lives here; its callers see partitions,
offsets and :class:`~services.log_follower.LogRecord` only. Both variants read
with ``isolation_level="read_committed"``: records of aborted transactions are
never returned, and their offsets and the transaction markers are gaps that
:meth:`KafkaLogFollower.position` steps over.

Consumer group (``group_id`` given): the follower subscribes to the topic and
takes part in the group's rebalances. Each assignment is handed to
``on_assigned(partitions)`` (where the caller seeks them to the positions it
stores); revoked partitions forget what the follower knew of them. Commits are
advisory, made only for partitions still assigned, and a failed one is
ignored: they let Kafka's own tools show the group's lag, the caller's stored
positions stay the truth. Used by the live projector.

Manual assignment (``group_id`` None): the given partitions, or all of the
topic's, are assigned by hand: no group is created or joined, nothing is
committed, the live consumers are not rebalanced; ``on_assigned`` (if set) is
told of them once, at the end of ``start``. A partition is fetched only
once it is sought (it is assigned paused), and a bounded reader pauses it again
once done, so no fetch is left in flight when the follower stops (a fetch in
flight made ``stop`` wait for it). Used by exports, rebuilds and the verifier.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.structs import OffsetAndMetadata

from services.distributed.settings import KafkaSettings
from services.distributed.topics import partition_count
from services.log_follower import LogRecord, OnAssigned

MIB = 1024 * 1024


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, follower: KafkaLogFollower) -> None:
        self._follower = follower

    async def on_partitions_revoked(self, revoked: Any) -> None:
        partitions = sorted(tp.partition for tp in revoked)
        if partitions and self._follower.on_revoked is not None:
            await self._follower.on_revoked(partitions)
        for partition in partitions:
            self._follower._forget(partition)

    async def on_partitions_assigned(self, assigned: Any) -> None:
        if self._follower.on_assigned is not None:
            await self._follower.on_assigned(sorted(tp.partition for tp in assigned))


class KafkaLogFollower:
    """A :class:`~services.log_follower.LogFollower` of one Kafka topic.

    ``group_id``: the consumer group to join (None: manual assignment of
    ``partitions``, default all of the topic's; a topic that does not exist
    then has no partitions and :meth:`assigned` is empty).
    ``max_partition_fetch_bytes`` must exceed the largest record met (the
    verifier reads 8 MiB policy snapshots and asks for 16 MiB).
    ``session_timeout_ms`` is the group's (how soon a dead member's partitions
    move); ``fetch_max_wait_ms`` how long the broker holds a fetch that has
    nothing to return yet. ``name`` is the log's name in messages (default:
    the topic without the deployment's prefix, ``events``)."""

    def __init__(
        self,
        settings: KafkaSettings,
        topic: str,
        *,
        group_id: str | None = None,
        partitions: Sequence[int] | None = None,
        max_partition_fetch_bytes: int = 8 * MIB,
        session_timeout_ms: int = 10_000,
        fetch_max_wait_ms: int = 100,
        name: str | None = None,
    ) -> None:
        self._settings = settings
        self._topic = topic
        self._group_id = group_id
        self._partitions = None if partitions is None else sorted(partitions)
        self._max_partition_fetch_bytes = max_partition_fetch_bytes
        self._session_timeout_ms = session_timeout_ms
        self._fetch_max_wait_ms = fetch_max_wait_ms
        self._name = name or topic.removeprefix(settings.prefix)
        self._consumer: AIOKafkaConsumer | None = None
        self._next: dict[int, int] = {}  # partition -> offset after the last record polled
        self.on_assigned: OnAssigned | None = None
        self.on_revoked: OnAssigned | None = None

    @property
    def name(self) -> str:
        return self._name

    @property
    def topic(self) -> str:
        return self._topic

    @property
    def group_id(self) -> str | None:
        return self._group_id

    async def start(self) -> None:
        group = self._group_id is not None
        partitions = self._partitions
        if not group and partitions is None:
            partitions = list(range(await partition_count(self._settings, self._topic)))
        options: dict[str, Any] = {}
        if group:
            options = {
                "auto_offset_reset": "earliest",
                "session_timeout_ms": self._session_timeout_ms,
                "heartbeat_interval_ms": max(1000, self._session_timeout_ms // 4),
            }
        consumer = AIOKafkaConsumer(
            **self._settings.client_kwargs(),
            group_id=self._group_id,
            enable_auto_commit=False,
            isolation_level="read_committed",
            fetch_max_wait_ms=self._fetch_max_wait_ms,
            max_partition_fetch_bytes=self._max_partition_fetch_bytes,
            fetch_max_bytes=max(64 * MIB, self._max_partition_fetch_bytes),
            **options,
        )
        await consumer.start()
        self._consumer = consumer
        if group:
            consumer.subscribe([self._topic], listener=_Listener(self))
            return
        tps = [self._tp(p) for p in partitions or []]
        if tps:
            consumer.assign(tps)
            consumer.pause(*tps)  # before any await: nothing is fetched until a seek
        if self.on_assigned is not None:
            await self.on_assigned([tp.partition for tp in tps])

    async def stop(self) -> None:
        """Leave the group (if any) and close; idempotent."""
        consumer, self._consumer = self._consumer, None
        if consumer is None:
            return
        with contextlib.suppress(Exception):  # no assignment (yet): nothing to pause
            consumer.pause(*consumer.assignment())
        # One turn of the loop first: a consumer stopped before the task its start
        # created ever ran raises CancelledError from stop (aiokafka 0.14).
        await asyncio.sleep(0)
        await consumer.stop()

    def _client(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            raise RuntimeError(f"the {self._name} follower is not started")
        return self._consumer

    def _tp(self, partition: int) -> TopicPartition:
        return TopicPartition(self._topic, partition)

    def _forget(self, partition: int) -> None:
        self._next.pop(partition, None)

    def assigned(self) -> list[int]:
        return sorted(tp.partition for tp in self._client().assignment())

    async def seek(self, partition: int, offset: int | None) -> None:
        consumer = self._client()
        tp = self._tp(partition)
        if offset is None:
            await consumer.seek_to_beginning(tp)
        else:
            consumer.seek(tp, offset)
        consumer.resume(tp)
        self._forget(partition)

    def pause(self, partitions: Sequence[int]) -> None:
        if partitions:
            self._client().pause(*(self._tp(p) for p in partitions))

    async def poll(self, max_records: int = 5_000, wait: float = 0.2) -> list[LogRecord]:
        batches = await self._client().getmany(timeout_ms=int(wait * 1000), max_records=max_records)
        records: list[LogRecord] = []
        for tp, messages in batches.items():
            for msg in messages:
                records.append(
                    LogRecord(
                        tp.partition,
                        msg.offset,
                        msg.value,
                        msg.key,
                        msg.timestamp / 1000,
                        tuple(msg.headers),
                    )
                )
            if messages:
                self._next[tp.partition] = messages[-1].offset + 1
        return records

    async def position(self, partition: int) -> int:
        position: int = await self._client().position(self._tp(partition))
        return position

    async def end_offsets(self) -> dict[int, int]:
        """With ``read_committed``, the last stable offset: records of a
        transaction still open are not counted in."""
        tps = list(self._client().assignment())
        if not tps:
            return {}
        ends = await self._client().end_offsets(tps)
        return {tp.partition: int(offset) for tp, offset in ends.items()}

    async def beginning_offsets(self) -> dict[int, int]:
        tps = list(self._client().assignment())
        if not tps:
            return {}
        begins = await self._client().beginning_offsets(tps)
        return {tp.partition: int(offset) for tp, offset in begins.items()}

    async def offsets_for_time(self, since: float) -> dict[int, int]:
        tps = list(self._client().assignment())
        if not tps:
            return {}
        found = await self._client().offsets_for_times({tp: int(since * 1000) for tp in tps})
        missing = [tp for tp in tps if found.get(tp) is None]
        ends = await self._client().end_offsets(missing) if missing else {}
        return {
            tp.partition: int(ends[tp]) if found.get(tp) is None else int(found[tp].offset)
            for tp in tps
        }

    def lag(self) -> dict[int, int]:
        """Per assigned partition fetched from, its high watermark less the
        consumer's position: the offset after the last record polled, or past
        the transaction markers and aborted records after it once they were
        fetched (so a log written in transactions shows 0 when all is read).
        Before any position is known, the whole high watermark."""
        consumer = self._client()
        out: dict[int, int] = {}
        for tp in consumer.assignment():
            high = consumer.highwater(tp)
            if high is None:
                continue
            position = _fetch_position(consumer, tp)
            if position is None:
                position = self._next.get(tp.partition)
            out[tp.partition] = high if position is None else max(0, high - position)
        return out

    async def commit(self, positions: dict[int, int]) -> None:
        """Advisory, group only: positions of partitions no longer assigned are
        left out, and a commit lost to a rebalance is fine. A manual follower
        has no group: nothing is committed."""
        if self._group_id is None:
            return
        consumer = self._client()
        mine = {tp.partition for tp in consumer.assignment()}
        offsets = {self._tp(p): OffsetAndMetadata(o, "") for p, o in positions.items() if p in mine}
        if not offsets:
            return
        with contextlib.suppress(KafkaError):
            await consumer.commit(offsets)


def _fetch_position(consumer: AIOKafkaConsumer, tp: TopicPartition) -> int | None:
    """The consumer's position in ``tp`` without waiting (None when it has none
    yet), read from its subscription state as its own ``highwater`` reads the
    high watermark: ``position()`` is a coroutine that waits for a reset."""
    subscription = consumer._subscription.subscription
    assignment = None if subscription is None else subscription.assignment
    if assignment is None or tp not in assignment.tps:
        return None
    state = assignment.state_value(tp)
    return int(state.position) if state.has_valid_position else None
