"""The floor: a raw aiokafka round trip on the same broker, no Leadflow code.

``RawBus`` is what the gateway's bus is, minus the processor: one producer (acks=all,
idempotent, ``linger_ms`` as the gateway's) and one consumer (manual assignment, no
group, short ``fetch_max_wait_ms``). A round trip produces a 256-byte record and waits
until the consumer reads it back: from ``produce_topic`` itself (one hop, the *raw*
floor) or from the relay's output topic (``bench.kafka.relay``: two hops plus a
gated produce, the Kafka I/O of one command without any decision logic).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
import time

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from bench.kafka.config import REPLY_TIMEOUT_S
from bench.kafka.pacing import Pace, Recorder, Schedule

log = logging.getLogger(__name__)
PAYLOAD_BYTES = 256


async def create_topics(bootstrap: str, names: list[str], wait_s: float = 30.0) -> None:
    """Create 1-partition topics and wait until each partition has a leader."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        with contextlib.suppress(TopicAlreadyExistsError):
            await admin.create_topics([NewTopic(name, 1, 1) for name in names])
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            described = await admin.describe_topics(names)
            leaders = [p.get("leader", -1) for d in described for p in d.get("partitions", [])]
            if len(leaders) == len(names) and all(leader >= 0 for leader in leaders):
                return
            await asyncio.sleep(0.1)
    finally:
        await admin.close()


class RawBus:
    def __init__(
        self,
        bootstrap: str,
        produce_topic: str,
        consume_topic: str,
        *,
        linger_ms: int,
        fetch_max_wait_ms: int,
    ) -> None:
        self._produce_topic = produce_topic
        self._partition = TopicPartition(consume_topic, 0)
        self._producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap,
            acks="all",
            enable_idempotence=True,
            linger_ms=linger_ms,
            request_timeout_ms=10_000,
        )
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            enable_auto_commit=False,
            group_id=None,
            fetch_max_wait_ms=fetch_max_wait_ms,
        )
        self._pending: dict[bytes, asyncio.Future[int]] = {}
        self._ids = itertools.count()
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._producer.start()
        await self._consumer.start()
        self._consumer.assign([self._partition])
        await self._consumer.seek_to_end(self._partition)
        await self._consumer.position(self._partition)
        self._reader = asyncio.create_task(self._read(), name="raw-reader")

    async def stop(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        await self._consumer.stop()
        await self._producer.stop()

    async def round_trip(self) -> None:
        """Produce one record and wait until it is acknowledged and read back."""
        rid = b"%016d" % next(self._ids)
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._pending[rid] = future
        try:
            value = rid + b"x" * (PAYLOAD_BYTES - len(rid))
            await self._producer.send_and_wait(self._produce_topic, value=value, partition=0)
            await asyncio.wait_for(future, REPLY_TIMEOUT_S)
        finally:
            self._pending.pop(rid, None)

    async def _read(self) -> None:
        while True:
            try:
                batches = await self._consumer.getmany(timeout_ms=1000, max_records=1000)
            except KafkaError:
                log.warning("raw consumer failed; retrying", exc_info=True)
                await asyncio.sleep(0.2)
                continue
            for records in batches.values():
                for record in records:
                    future = self._pending.get((record.value or b"")[:16])
                    if future is not None and not future.done():
                        future.set_result(time.perf_counter_ns())


async def raw_client(
    bus: RawBus, pace: Pace, rng: random.Random, t0_ns: int, deadline_ns: int, rec: Recorder
) -> int:
    schedule = Schedule.begin(pace, rng, t0_ns, deadline_ns)
    while (intended := await schedule.next()) is not None:
        sent = time.perf_counter_ns()
        try:
            await bus.round_trip()
        except TimeoutError:
            rec.error("reply_timeout", "raw record not read back")
            continue
        except KafkaError as exc:
            rec.error(f"kafka:{type(exc).__name__}", str(exc))
            continue
        end = time.perf_counter_ns()
        rec.add("press", end - sent)
        rec.add("press_sched", end - intended)
        rec.counts["raw"] += 1
    return schedule.resyncs
