"""``leadflow replay --verify --kafka`` on a real cluster: processors and a
gateway on a real broker, visitors over WebSockets, a snapshot published through
the archive topic, then forged records and an unknown schema version."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import random
import subprocess
import sys
import time
from collections.abc import Sequence

import orjson
from aiokafka import AIOKafkaProducer
from redis.asyncio import Redis

from policy.snapshot import Guardrails, decode_snapshot, encode_snapshot
from policy.snapshots_kafka import SnapshotPublisher
from policy.thompson import ThompsonPolicy
from schemas.batches import encode_batch
from schemas.codec import encode
from schemas.commands import Command, StartConversation, VisitorContext
from schemas.events import ConversationStarted, EdgeChosen, Event, event_id
from schemas.replies import Reply
from services.catalog import EXAMPLE_FLOWS_DIR, FlowCatalog
from services.conversation.service import ConversationService
from services.distributed.command_sealing import CommandSealer
from services.distributed.redis_keystore import RedisKeyStore
from services.distributed.topics import snapshot_archive_topic
from services.fakes import InMemoryEventLog
from tests.support.distributed import Cluster, read_topic
from tests.support.journaled_traffic import play as journaled_play
from tests.support.projection import logged_events
from tests.support.server import ROOT
from tests.support.verify_snapshots import latest, snapshot
from tests.support.visitor import Visitor


def verify(cluster: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", "replay", "--verify", "--kafka", *args],
        cwd=ROOT,
        env={**os.environ, **cluster.env},
        capture_output=True,
        text=True,
        timeout=300,
    )


async def play(
    ws_url: str,
    conversations: int,
    seed: int,
    flows: tuple[str, ...] = ("solar-quote", "insurance-quote", "saas-demo"),
) -> list[str]:
    rng = random.Random(seed)
    ids = []
    for i in range(conversations):
        visitor = await Visitor.connect(ws_url)
        try:
            device = rng.choice(["desktop", "mobile", "tablet"])
            await visitor.start(flows[i % len(flows)], device=device, utm_source="google")
            await visitor.play_to_end(random.Random(seed * 1000 + i))
        finally:
            await visitor.close()
        ids.append(visitor.conversation_id)
    return ids


async def produce(
    cluster: Cluster, key: str, value: bytes, topic: str = "events"
) -> tuple[int, int]:
    producer = AIOKafkaProducer(bootstrap_servers=cluster.bootstrap, acks="all")
    await producer.start()
    try:
        meta = await producer.send_and_wait(
            f"{cluster.prefix}{topic}", key=key.encode(), value=value
        )
        return meta.partition, meta.offset
    finally:
        await producer.stop()


def start_command(cid: str) -> StartConversation:
    return StartConversation(
        conversation_id=cid, seq=1, at=time.time(), flow_id="saas-demo", site_id="demo"
    )


async def test_a_kafka_log_verifies_and_forged_records_do_not(cluster: Cluster) -> None:
    """Uniform decisions, then decisions under a snapshot published through the archive
    and under one only in the live topic (published before the archive existed):
    identical. A command the processors have not handled yet is set apart; a forged
    extra event is the first divergence; a conversation whose commands are not in the
    topic is unverifiable; an unknown version stops it (2)."""
    processor = cluster.processor().start()
    gateway = cluster.gateway(0).start()
    processor.wait_log("Worker ready")
    gateway.wait_ready()
    before = await play(gateway.ws_url, 6, seed=1)

    snap = snapshot(
        latest("solar-quote"),
        "solar-quote@1#verify.1",
        seed=4,
        rails=Guardrails(min_exploration=0.1, holdout=0.2),
        created_at=time.time(),
    )
    publisher = SnapshotPublisher(cluster.settings)
    await publisher.start()
    try:
        await publisher.publish(snap)
    finally:
        await publisher.stop()
    processor.wait_log(snap.version, timeout=30)
    after = await play(gateway.ws_url, 9, seed=2)
    # a snapshot only in the live topic (as published before the archive existed)
    legacy = snapshot(latest("solar-quote"), "solar-quote@1#legacy", seed=6, created_at=time.time())
    await produce(cluster, "solar-quote", encode_snapshot(legacy), "policy-snapshots")
    processor.wait_log(f"policy snapshot {legacy.version} installed", timeout=30)
    later = await play(gateway.ws_url, 6, seed=3, flows=("solar-quote",))

    archive = await read_topic(cluster.bootstrap, snapshot_archive_topic(cluster.settings), 1)
    assert [(key, decode_snapshot(value).version) for _, key, value in archive] == [
        (b"solar-quote/solar-quote@1#verify.1", snap.version)
    ]
    events = await logged_events(cluster)
    assert {e.conversation_id for e in events} == set(before) | set(after) | set(later)
    chosen = [e for e in events if isinstance(e, EdgeChosen)]
    assert {e.policy_version for e in chosen} >= {"uniform-v1", snap.version, legacy.version}

    done = verify(cluster)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines()[0] == (
        f"verified 21 conversations ({len(events):,} events, {len(chosen):,} decisions): identical"
    )
    empty = verify(cluster, "--from", "2030-01-01")
    assert empty.returncode == 0
    assert empty.stdout.strip() == "verified 0 conversations (0 events, 0 decisions): identical"

    # a command the (stopped) processors have not handled: in flight, not a divergence
    processor.stop()
    await produce(cluster, "pending-1", encode(start_command("pending-1")), "commands")
    waiting = verify(cluster)
    assert waiting.returncode == 0, waiting.stdout + waiting.stderr
    assert waiting.stdout.splitlines()[1] == (
        "unverifiable: 1 conversation:"
        " commands not processed yet (past the processors' committed offset)"
    )

    # a forged record: one more event for a finished conversation
    last = max((e for e in events if e.conversation_id == after[0]), key=lambda e: e.seq)
    extra = dataclasses.replace(
        chosen[0],
        conversation_id=after[0],
        seq=last.seq + 1,
        id=event_id(after[0], last.seq + 1),
        command_seq=last.command_seq + 1,
    )
    partition, offset = await produce(cluster, after[0], encode_batch([extra]))
    # and a conversation the commands topic never saw
    ghost = ConversationStarted(
        conversation_id="ghost-1",
        seq=1,
        id=event_id("ghost-1", 1),
        at=time.time(),
        command_seq=1,
        flow_id="solar-quote",
        flow_version=1,
        site_id="demo",
        context=VisitorContext(),
    )
    await produce(cluster, "ghost-1", encode_batch([ghost]))
    forged = verify(cluster)
    assert forged.returncode == 1, forged.stdout + forged.stderr
    lines = forged.stdout.splitlines()
    assert lines[0].startswith("verified 21 conversations (") and lines[0].endswith(": 1 diverged")
    assert lines[1].startswith("unverifiable: 1 conversation: commands not processed yet")
    assert lines[2].startswith("unverifiable: 1 conversation: commands past retention")
    assert lines[3] == (
        f"first divergence in conversation {after[0]} at event seq {last.seq + 1}"
        f" (id {extra.id}, EdgeChosen, command {extra.command_seq}, events partition"
        f" {partition} offset {offset}): the log has events the replay didn't produce"
    )

    record = orjson.loads(encode_batch([ghost]))
    partition, offset = await produce(cluster, "ghost-2", orjson.dumps({**record, "v": 2}))
    unreadable = verify(cluster)
    assert unreadable.returncode == 2
    assert unreadable.stderr.strip().endswith(
        f"leadflow: cannot verify the log: events partition {partition} offset {offset}:"
        " EventBatch version 2 is not supported (this reader knows v1)"
    )


class _Recorder(InMemoryEventLog):
    """The log of a service run outside Kafka: keeps each append's events in order,
    as the processor would produce them to the events topic."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[list[Event]] = []

    async def append(self, events: Sequence[Event], command: Command | None = None) -> None:
        self.batches.append(list(events))
        await super().append(events, command)


class _Handled(ConversationService):
    """Keeps every command handled, as the gateways would produce them to the commands topic."""

    commands: list[Command]

    async def handle(self, command: Command) -> Reply:
        self.commands.append(command)
        return await super().handle(command)


async def _produce_log(
    cluster: Cluster, commands: list[Command], batches: list[list[Event]]
) -> None:
    sealer = CommandSealer(cluster.env["LEADFLOW_COMMAND_SECRET"])
    producer = AIOKafkaProducer(
        bootstrap_servers=cluster.bootstrap, acks="all", linger_ms=20, max_batch_size=1 << 20
    )
    await producer.start()
    try:
        sent = [
            await producer.send(
                f"{cluster.prefix}commands",
                key=c.conversation_id.encode(),
                value=encode(sealer.seal(c)),
            )
            for c in commands
        ]
        sent += [
            await producer.send(
                f"{cluster.prefix}events", key=b[0].conversation_id.encode(), value=encode_batch(b)
            )
            for b in batches
        ]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


async def test_a_kafka_log_of_100k_events_verifies(cluster: Cluster) -> None:
    """More than 100,000 events on the topics (as gateways and processors write them:
    sealed lead fields, one batch per command, co-partitioned by conversation), with
    Thompson, held-out and killed decisions from archived snapshots: identical."""
    redis = Redis.from_url(cluster.redis_url)
    try:
        keys = RedisKeyStore(redis, prefix=cluster.prefix)
        snaps = [
            snapshot(latest("solar-quote"), "solar-quote@1#big", seed=1, created_at=1.0),
            snapshot(
                latest("insurance-quote"),
                "insurance-quote@1#big",
                seed=2,
                rails=Guardrails(holdout=0.2),
                created_at=1.0,
            ),
            snapshot(latest("saas-demo"), "saas-demo@1#big", seed=3, rails=Guardrails(killed=True)),
        ]
        policy = ThompsonPolicy()
        publisher = SnapshotPublisher(cluster.settings)
        await publisher.start()
        try:
            for snap in snaps:
                await publisher.publish(snap)
                assert policy.install(snap)
        finally:
            await publisher.stop()
        log = _Recorder()
        service = _Handled(log, keys, FlowCatalog.from_directory(EXAMPLE_FLOWS_DIR), policy)
        service.commands = []
        await journaled_play(service, 7_400, seed=31)
        events = sum(len(b) for b in log.batches)
        decisions = sum(isinstance(e, EdgeChosen) for b in log.batches for e in b)
        assert events >= 100_000
        await _produce_log(cluster, service.commands, log.batches)
    finally:
        await redis.aclose()
    done = verify(cluster)
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]
    assert done.stdout.splitlines()[0] == (
        f"verified 7,400 conversations ({events:,} events, {decisions:,} decisions): identical"
    )
