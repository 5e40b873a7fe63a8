"""The processor under faults, on a real broker, Redis and processes: a zombie
frozen past its session, poison records on ``commands`` and ``events``, a Redis
outage under load followed by a rolling restart.

The oracle is the ``events`` topic read by an independent consumer: no
(conversation, seq) may appear twice in it, and every visitor's conversation
must finish.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import urllib.request
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from redis.asyncio import Redis

from bench.registry.core import partition_of
from projector.redis_store import RedisReadModel
from schemas.batches import decode_batch
from services.distributed.kafka_writer import KafkaPartitionWriter
from services.distributed.settings import KafkaSettings
from services.distributed.topics import ensure_topics
from services.processor.batch import Out
from services.processor.writer import WriteFailed
from tests.integration.distributed_fixtures import new_cluster
from tests.support.distributed import Cluster, Service, read_topic
from tests.support.kafka import LocalKafka
from tests.support.patient import PatientVisitor
from tests.support.redis_server import LocalRedis
from tests.support.server import free_port

FLOWS = ("solar-quote", "insurance-quote", "saas-demo")
THINK = (0.1, 0.3)


def start_services(cluster: Cluster, processors: int = 1, gateways: int = 1) -> list[Service]:
    started = [cluster.processor(f"processor-{i}").start() for i in range(processors)]
    started += [cluster.gateway(i).start() for i in range(gateways)]
    for service in started:
        service.wait_ready(90)
    return started


async def play_all(visitors: list[PatientVisitor], seconds: float = 150) -> None:
    try:
        ends = await asyncio.wait_for(asyncio.gather(*(v.play() for v in visitors)), seconds)
    finally:
        await asyncio.gather(*(v.close() for v in visitors))
    assert all(end["done"] for end in ends)


async def no_duplicate_events(cluster: Cluster) -> int:
    records = await read_topic(cluster.bootstrap, f"{cluster.prefix}events", cluster.partitions)
    keys = [
        (event.conversation_id, event.seq)
        for _, _, value in records
        for event in decode_batch(value).events
    ]
    duplicates = len(keys) - len(set(keys))
    assert duplicates == 0, f"{duplicates} (conversation, seq) written twice"
    return len(keys)


def readyz(service: Service) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{service.port}/readyz", timeout=2) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return 0, {}  # not serving HTTP yet


async def test_a_processor_frozen_past_its_session_is_fenced_and_writes_nothing_twice(
    cluster: Cluster,
) -> None:
    """Regression: a processor stopped (SIGSTOP) past its session timeout and then
    resumed appended events another processor had already written."""
    zombie, other, gateway = start_services(cluster, processors=2)
    visitors = [
        PatientVisitor([gateway.ws_url], FLOWS[i % 3], random.Random(i), think=THINK)
        for i in range(16)
    ]
    playing = asyncio.create_task(play_all(visitors))
    await asyncio.sleep(2.0)
    zombie.freeze()
    await asyncio.sleep(14.0)  # past the 10 s session: the other takes every partition
    took_over = other.log_text().count('"partitions assigned"')
    zombie.thaw()
    assert took_over >= 2, "the other processor never took the frozen one's partitions"
    await playing
    assert await no_duplicate_events(cluster) > 16 * 3
    deadline = time.monotonic() + 30  # the zombie notices once its next heartbeat fails
    while not any(line in zombie.log_text() for line in ("fenced", "partitions revoked")):
        assert time.monotonic() < deadline, zombie.log_text()[-3000:]
        await asyncio.sleep(0.5)
    await no_duplicate_events(cluster)  # and wrote nothing after it woke


async def test_poison_commands_are_dead_lettered_and_the_partition_goes_on(
    cluster: Cluster,
) -> None:
    processor, gateway = start_services(cluster)
    producer = AIOKafkaProducer(bootstrap_servers=cluster.bootstrap)
    await producer.start()
    try:
        for partition in range(cluster.partitions):
            for value in (b"\xff not json", b'{"type":"PressButton","v":99}'):
                await producer.send_and_wait(
                    f"{cluster.prefix}commands", value, key=b"poison", partition=partition
                )
    finally:
        await producer.stop()
    visitors = [PatientVisitor([gateway.ws_url], FLOWS[i % 3], random.Random(i)) for i in range(8)]
    await play_all(visitors, 90)
    dead = await read_topic(cluster.bootstrap, f"{cluster.prefix}commands-dead", 1)
    assert len(dead) == 2 * cluster.partitions
    assert readyz(processor)[0] == 200


async def test_an_unreadable_events_record_stops_only_its_partition_and_says_so(
    cluster: Cluster,
) -> None:
    """Regression: the processor's catch-up crashed its agent over and over on an
    unreadable events record while /readyz said 200. Now that partition is out of
    service, readiness names the record, and the other partitions serve on."""
    producer = AIOKafkaProducer(bootstrap_servers=cluster.bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(f"{cluster.prefix}events", b"garbage", key=b"x", partition=2)
    finally:
        await producer.stop()
    processor = cluster.processor().start()
    gateway = cluster.gateway(0).start()
    gateway.wait_ready()
    deadline = time.monotonic() + 60
    status, body = readyz(processor)
    while "out_of_service" not in body or not body["out_of_service"]:
        assert time.monotonic() < deadline, body
        await asyncio.sleep(0.5)
        status, body = readyz(processor)
    assert status == 503
    out_of_service = body["out_of_service"]
    assert isinstance(out_of_service, dict) and list(out_of_service) == ["2"]
    assert out_of_service["2"].startswith("events partition 2 offset 0: unreadable record")
    served: list[str] = []
    attempts = 0
    # conversations of the other partitions are served; a new conversation lands on
    # partition 2 one time in four, so play until six were served (P(24 attempts
    # serve fewer than six) is about 1e-8 if only partition 2 is out)
    while len(served) < 6 and attempts < 24:
        visitor = PatientVisitor([gateway.ws_url], FLOWS[attempts % 3], random.Random(attempts))
        attempts += 1
        try:
            await asyncio.wait_for(visitor.play(), 20)
            served.append(visitor.conversation_id)
        except TimeoutError:
            pass
        finally:
            await visitor.close()
    assert len(served) == 6, (attempts, served)
    assert 2 not in {partition_of(cid, cluster.partitions) for cid in served}, served


async def test_a_redis_outage_under_load_then_a_rolling_restart(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """Regression: a Redis blip left processors that could not stop (SIGTERM killed
    after 45 s) and conversations stalled for about a minute. Now batches wait for
    Redis, every SIGTERM exits within the documented bound, and every conversation
    finishes with nothing written twice."""
    redis = LocalRedis(tmp_path / "redis").start()
    cluster = new_cluster(kafka_bootstrap, redis.url, tmp_path / "cluster")
    try:
        first, second, gateway = start_services(cluster, processors=2)
        visitors = [
            PatientVisitor([gateway.ws_url], FLOWS[i % 3], random.Random(i), think=THINK)
            for i in range(16)
        ]
        playing = asyncio.create_task(play_all(visitors, 180))
        await asyncio.sleep(1.5)
        redis.stop()
        await asyncio.sleep(10.0)
        redis.start()
        for processor in (first, second):
            began = time.monotonic()
            processor.stop()  # SIGTERM, as a rolling restart does
            assert time.monotonic() - began < 10.0, "SIGTERM took longer than the bound"
            processor.start().wait_ready(90)
        await playing
        await no_duplicate_events(cluster)
    finally:
        cluster.stop()
        redis.stop()


async def test_a_newer_format_events_record_stops_only_its_partition_of_the_projector(
    cluster: Cluster,
) -> None:
    """Regression: a newer-format record made the live projector skip every valid
    record fetched with it (149 of 210 conversations never projected) and /readyz
    said 200 after a restart. Now its partition stops at it, readiness names it,
    and every conversation of the other partitions is projected."""
    _, gateway = start_services(cluster)
    projector = cluster.projector().start()
    projector.wait_ready(90)
    producer = AIOKafkaProducer(bootstrap_servers=cluster.bootstrap)
    await producer.start()
    try:
        poison = b'{"type":"EventBatch","v":99,"events":[]}'
        sent = await producer.send_and_wait(
            f"{cluster.prefix}events", poison, key=b"x", partition=1
        )
    finally:
        await producer.stop()
    visitors = [PatientVisitor([gateway.ws_url], FLOWS[i % 3], random.Random(i)) for i in range(12)]
    await play_all(visitors, 90)
    deadline = time.monotonic() + 30
    status, body = readyz(projector)
    while "stalled" not in body:
        assert time.monotonic() < deadline, body
        await asyncio.sleep(0.5)
        status, body = readyz(projector)
    # its offset, not 0: a transaction's marker may precede it on the partition
    assert status == 503 and f"events partition 1 offset {sent.offset}" in str(body["stalled"])
    redis = Redis.from_url(cluster.redis_url)
    try:
        store = RedisReadModel(redis, prefix=cluster.prefix)
        partition_of = {
            e.conversation_id: p
            for p, _, value in await read_topic(
                cluster.bootstrap, f"{cluster.prefix}events", cluster.partitions
            )
            if value != poison
            for e in decode_batch(value).events
        }
        deadline = time.monotonic() + 30  # the other partitions are projected
        for visitor in visitors:
            cid = visitor.conversation_id
            view = await store.conversation(cid)
            if partition_of[cid] == 1:
                assert view is None  # after the poison: waits for an upgraded projector
                continue
            while view is None or view.status != "completed":
                assert time.monotonic() < deadline, cid
                await asyncio.sleep(0.2)
                view = await store.conversation(cid)
    finally:
        await redis.aclose()


async def test_a_writer_that_could_not_start_starts_once_kafka_is_there(tmp_path: Path) -> None:
    """A partition's writer retries its start while Kafka is away (each attempt a
    WriteFailed), and starts and commits once the broker answers."""
    port = free_port()
    settings = KafkaSettings(bootstrap=f"127.0.0.1:{port}", partitions=1)
    writer = KafkaPartitionWriter(settings, 0, request_timeout_ms=2000)
    for _ in range(2):
        with pytest.raises(WriteFailed, match="cannot start the writer of partition 0"):
            await writer.start()
    broker = LocalKafka(tmp_path / "broker", port=port).start()
    try:
        await ensure_topics(settings)
        await writer.start()
        offsets = await writer.commit([Out("events", b"c", b"not read here")])
        assert offsets == [0]
    finally:
        await writer.stop()
        broker.stop()
