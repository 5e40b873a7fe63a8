"""The ``events`` topic through an aiokafka consumer group: the projector's RecordSource.

Positions come from the read-model store (see :mod:`projector.live`): on every
assignment the projection's ``on_assigned`` seeks the new partitions, and the
group's Kafka commits are advisory (they make the lag visible to Kafka's own
tools). ``read_committed`` keeps aborted transactional writes out, should a
producer ever use transactions.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.structs import OffsetAndMetadata

from projector.live import Record
from services.distributed.settings import KafkaSettings

OnAssigned = Callable[[list[int]], Awaitable[None]]


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, source: KafkaRecordSource) -> None:
        self._source = source

    async def on_partitions_revoked(self, revoked: Any) -> None:
        for tp in revoked:
            self._source.next_offsets.pop(tp.partition, None)

    async def on_partitions_assigned(self, assigned: Any) -> None:
        if self._source.on_assigned is not None:
            await self._source.on_assigned(sorted(tp.partition for tp in assigned))


class KafkaRecordSource:
    def __init__(
        self,
        settings: KafkaSettings,
        *,
        max_records: int = 5_000,
        poll_timeout_ms: int = 200,
        session_timeout_ms: int = 10_000,
    ) -> None:
        self._settings = settings
        self._topic = settings.events_topic
        self._max_records = max_records
        self._poll_timeout_ms = poll_timeout_ms
        self._session_timeout_ms = session_timeout_ms
        self._consumer: AIOKafkaConsumer | None = None
        self.on_assigned: OnAssigned | None = None
        self.next_offsets: dict[int, int] = {}

    @property
    def group_id(self) -> str:
        return f"{self._settings.prefix}projector"

    async def start(self) -> None:
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self._settings.bootstrap,
            group_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            fetch_max_wait_ms=100,
            max_partition_fetch_bytes=4 * 1024 * 1024,
            session_timeout_ms=self._session_timeout_ms,
            heartbeat_interval_ms=max(1000, self._session_timeout_ms // 4),
        )
        await self._consumer.start()
        self._consumer.subscribe([self._topic], listener=_Listener(self))

    async def stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()

    def _client(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            raise RuntimeError("the events consumer is not started")
        return self._consumer

    def assigned(self) -> list[int]:
        return sorted(tp.partition for tp in self._client().assignment())

    async def poll(self) -> list[Record]:
        batches = await self._client().getmany(
            timeout_ms=self._poll_timeout_ms, max_records=self._max_records
        )
        records = [
            Record(tp.partition, msg.offset, msg.value)
            for tp, messages in batches.items()
            for msg in messages
            if msg.value is not None
        ]
        for tp, messages in batches.items():
            if messages:
                self.next_offsets[tp.partition] = messages[-1].offset + 1
        return records

    async def seek(self, partition: int, offset: int | None) -> None:
        tp = TopicPartition(self._topic, partition)
        if offset is None:
            await self._client().seek_to_beginning(tp)
        else:
            self._client().seek(tp, offset)
        self.next_offsets.pop(partition, None)

    async def commit(self, offsets: dict[int, int]) -> None:
        """Advisory (positions live in the store): a commit lost to a rebalance is fine."""
        mine = set(self.assigned())
        with contextlib.suppress(KafkaError):
            await self._client().commit(
                {
                    TopicPartition(self._topic, p): OffsetAndMetadata(o, "")
                    for p, o in offsets.items()
                    if p in mine
                }
            )

    def lag(self) -> dict[int, int]:
        consumer = self._client()
        out: dict[int, int] = {}
        for tp in consumer.assignment():
            high = consumer.highwater(tp)
            if high is None:
                continue
            position = self.next_offsets.get(tp.partition)
            out[tp.partition] = high if position is None else max(0, high - position)
        return out
