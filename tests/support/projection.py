"""Helpers of the projector's integration tests: feed the ``events`` topic, wait for
the projector, and compare Redis with the oracle."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from aiokafka import AIOKafkaProducer
from redis.asyncio import Redis
from redis.exceptions import RedisError

from projector.redis_store import RedisReadModel
from schemas.batches import decode_batch, encode_batch
from schemas.events import Event
from tests.support.distributed import Cluster, read_topic
from tests.support.readmodel_oracle import Oracle


def command_records(events: Sequence[Event]) -> list[tuple[str, bytes]]:
    """The events as the processor writes them: one record per command."""
    out: list[tuple[str, bytes]] = []
    batch: list[Event] = []
    for event in [*events, None]:
        if batch and (
            event is None
            or (event.conversation_id, event.command_seq)
            != (batch[0].conversation_id, batch[0].command_seq)
        ):
            out.append((batch[0].conversation_id, encode_batch(batch)))
            batch = []
        if event is not None:
            batch.append(event)
    return out


async def produce(cluster: Cluster, events: Sequence[Event]) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=cluster.bootstrap, acks="all", enable_idempotence=True, linger_ms=5
    )
    await producer.start()
    try:
        sent = [
            await producer.send(f"{cluster.prefix}events", key=cid.encode(), value=value)
            for cid, value in command_records(events)
        ]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


async def logged_events(cluster: Cluster) -> list[Event]:
    records = await read_topic(cluster.bootstrap, f"{cluster.prefix}events", cluster.partitions)
    return [e for _, _, value in records for e in decode_batch(value).events]


async def end_offsets(cluster: Cluster) -> dict[str, int]:
    counts: dict[str, int] = {str(p): 0 for p in range(cluster.partitions)}
    for p, _, _ in await read_topic(
        cluster.bootstrap, f"{cluster.prefix}events", cluster.partitions
    ):
        counts[str(p)] += 1
    return counts


async def wait_caught_up(
    cluster: Cluster, store: RedisReadModel, within: float = 60.0
) -> dict[str, int]:
    want = {p: n for p, n in (await end_offsets(cluster)).items() if n}
    deadline = time.monotonic() + within
    frontier: dict[str, int] = {}
    while time.monotonic() < deadline:
        try:
            frontier = await store.frontier(await store.current_namespace())
        except (OSError, RedisError):
            frontier = {}
        if all(frontier.get(p, 0) >= n for p, n in want.items()):
            return frontier
        await asyncio.sleep(0.1)
    raise AssertionError(f"projector did not catch up: {frontier} < {want}")


async def assert_matches_oracle(cluster: Cluster, store: RedisReadModel) -> Oracle:
    oracle = await Oracle().fold(await logged_events(cluster))
    assert oracle.conversations
    assert await oracle.read(store) == await oracle.read()
    return oracle


async def dump_namespace(redis: Redis, prefix: str) -> dict[bytes, bytes]:
    out: dict[bytes, bytes] = {}
    async for key in redis.scan_iter(match=f"{prefix}rm:*", count=1000):
        value = await redis.dump(key)
        assert value is not None
        out[key] = value
    return out
