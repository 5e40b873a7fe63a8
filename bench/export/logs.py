"""The benchmark's event log, written where each export reads it.

A simulated log (:func:`tests.support.traffic.simulate`, the real decider) of
``base`` conversations is replicated (:func:`tests.support.export_logs.replicate`)
until it holds at least ``n`` events, then cut at ``n``. Kafka records are
produced as the processor produces them: one record per command, keyed by
conversation, timestamped just after their events.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path

import orjson
from aiokafka import AIOKafkaProducer

from schemas.events import Event
from services.distributed.settings import KafkaSettings
from services.distributed.topics import ensure_topics
from tests.support.export_logs import replicate, write_sqlite_log
from tests.support.projection import command_records
from tests.support.traffic import simulate


def generate(n: int, base: int = 1_000, seed: int = 17) -> list[Event]:
    traffic = asyncio.run(simulate(base, seed=seed, prefix="b"))
    events = traffic.events
    span = events[-1].at - events[0].at + 1
    copies = -(-n // len(events))
    return replicate(events, copies, span)[:n]


def write_sqlite(data_dir: Path, events: Sequence[Event]) -> float:
    began = time.perf_counter()
    write_sqlite_log(data_dir, events)
    return time.perf_counter() - began


async def _produce(settings: KafkaSettings, events: Sequence[Event]) -> int:
    await ensure_topics(settings)
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap,
        acks="all",
        linger_ms=20,
        max_batch_size=1 << 20,
        compression_type=None,
    )
    await producer.start()
    try:
        pending = []
        records = command_records(events)
        for cid, value in records:
            at = orjson.loads(value)["events"][0]["at"]
            pending.append(
                await producer.send(
                    settings.events_topic,
                    key=cid.encode(),
                    value=value,
                    timestamp_ms=int(at * 1000) + 50,
                )
            )
        await asyncio.gather(*pending)
        return len(records)
    finally:
        await producer.stop()


def produce(settings: KafkaSettings, events: Sequence[Event]) -> tuple[int, float]:
    began = time.perf_counter()
    records = asyncio.run(_produce(settings, events))
    return records, time.perf_counter() - began
