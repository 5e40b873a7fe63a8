"""Failures in the distributed mode: kill -9 of a processor or a gateway, a broker restart.

Visitors here behave like the widget: on a retryable error, a timeout or a dropped
socket they reconnect (to any gateway), resume, and re-send the same command seq.
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

from redis.asyncio import Redis

from projector.redis_store import RedisReadModel
from schemas.batches import decode_batch
from services.conversation.state import ConversationState, fold
from services.distributed.kafka_follower import KafkaLogFollower
from services.processor.recovery import recover
from tests.integration.distributed_fixtures import new_cluster
from tests.support.distributed import Cluster, read_topic
from tests.support.kafka import LocalKafka
from tests.support.patient import PatientVisitor
from tests.support.projection import assert_matches_oracle, wait_caught_up
from tests.support.visitor import Visitor

FLOWS = ("solar-quote", "insurance-quote", "saas-demo")


def start_all(cluster: Cluster, gateways: int = 2, **processor_env: str) -> None:
    processor = cluster.processor(**processor_env).start()
    for ordinal in range(gateways):
        cluster.gateway(ordinal).start()
    processor.wait_log("Worker ready")
    for service in cluster.services[1:]:
        service.wait_ready()


THINK = (0.1, 0.4)


async def play_all(visitors: list[PatientVisitor]) -> list[dict[str, object]]:
    try:
        ends: list[dict[str, object]] = await asyncio.gather(*(v.play() for v in visitors))
        return ends
    finally:
        await asyncio.gather(*(v.close() for v in visitors))


async def check_transcripts(url: str, visitors: list[PatientVisitor]) -> None:
    """What each visitor was shown equals the conversation's whole transcript: no bot
    message lost, none shown twice (resume with last_seq 0 returns them all)."""
    for v in visitors:
        fresh = await Visitor.connect(url)
        try:
            answer = await fresh.resume(v.token, last_seq=0)
            for _ in range(3):  # as the widget does: a retryable error is tried again
                if answer[0]["type"] != "error" or not answer[0].get("retryable"):
                    break
                await asyncio.sleep(1.0)
                answer = await fresh.resume(v.token, last_seq=0)
            assert answer[0]["type"] == "session", f"resume refused: {answer}"
            assert [(m["seq"], m["node_id"]) for m in fresh.messages] == [
                (m["seq"], m["node_id"]) for m in v.seen
            ]
        finally:
            await fresh.close()


async def check_log_and_table(cluster: Cluster, conversations: set[str]) -> None:
    """No event id twice; every conversation's event seqs are 1..n; and the state a
    new owner of its partition recovers (the changelog's checkpoint, then the events
    past its marker) equals the fold of the conversation's events."""
    records = await read_topic(cluster.bootstrap, f"{cluster.prefix}events", cluster.partitions)
    events: dict[str, list[object]] = {}
    ids: list[str] = []
    for _, _, value in records:
        batch = decode_batch(value)
        events.setdefault(batch.conversation_id, []).extend(batch.events)
        ids.extend(e.id for e in batch.events)
    assert len(ids) == len(set(ids)), "an event was written twice"
    kafka = cluster.settings
    topics = {"changelog": kafka.changelog_topic, "events": kafka.events_topic}
    table: dict[bytes, ConversationState] = {}
    for partition in range(cluster.partitions):
        recovered = await recover(
            lambda role, p: KafkaLogFollower(kafka, topics[role], partitions=[p]), partition
        )
        table.update(recovered.states)
    for cid in conversations:
        mine = events[cid]
        assert [e.seq for e in mine] == list(range(1, len(mine) + 1))  # type: ignore[attr-defined]
        folded = fold(ConversationState(cid), mine)  # type: ignore[arg-type]
        assert table[cid.encode()] == folded


async def test_processor_killed_mid_stream_loses_and_repeats_nothing(cluster: Cluster) -> None:
    """kill -9 of the processor while visitors press: after its restart every
    conversation completes, the log has no duplicate and the table equals the log.
    The processor holds two states per partition in memory and spills the rest to
    its state folder; the restart removes the killed process's folder."""
    states = cluster.workdir / "states"
    start_all(cluster, LEADFLOW_PROCESSOR_STATE_CACHE="2", LEADFLOW_PROCESSOR_STATE_DIR=str(states))
    urls = [s.ws_url for s in cluster.services[1:]]
    visitors = [
        PatientVisitor([urls[i % 2]], FLOWS[i % 3], random.Random(i), think=THINK)
        for i in range(24)
    ]
    playing = asyncio.create_task(play_all(visitors))
    await asyncio.sleep(1.5)
    processor = cluster.services[0]
    processor.kill9()
    await asyncio.sleep(1.0)
    processor.start()
    ends = await asyncio.wait_for(playing, 120)
    assert all(end["done"] for end in ends)
    assert sum(v.retries for v in visitors) > 0, "the kill should have interrupted someone"
    await check_transcripts(urls[0], visitors)
    await check_log_and_table(cluster, {v.conversation_id for v in visitors})
    [folder] = states.glob("leadflow-states-*")  # the killed process's is gone
    assert list(folder.glob("partition-*.sqlite")), "24 conversations on 4 partitions spill"


async def test_gateway_killed_visitors_resume_on_the_other(cluster: Cluster) -> None:
    """Visitors of a gateway that dies resume on the other one with their token and
    finish without a lost or repeated bot message."""
    start_all(cluster)
    first, second = cluster.services[1], cluster.services[2]
    visitors = [
        PatientVisitor([first.ws_url, second.ws_url], FLOWS[i % 3], random.Random(i), think=THINK)
        for i in range(12)
    ]
    playing = asyncio.create_task(play_all(visitors))
    await asyncio.sleep(1.0)
    first.kill9()
    ends = await asyncio.wait_for(playing, 120)
    assert all(end["done"] for end in ends)
    assert any(v.retries for v in visitors), "the kill should have interrupted someone"
    await check_transcripts(second.ws_url, visitors)
    await check_log_and_table(cluster, {v.conversation_id for v in visitors})


async def test_broker_restart_under_load_gives_retryable_errors_and_loses_nothing(
    session_redis_url: str, tmp_path: Path
) -> None:
    """While the broker is down visitors get retryable errors and the gateways stay up;
    after it returns every conversation completes and nothing acknowledged is lost,
    and the projector's read models catch up with the whole log."""
    broker = LocalKafka(tmp_path / "broker").start()
    cluster = new_cluster(broker.bootstrap, session_redis_url, tmp_path / "cluster")
    try:
        start_all(cluster, gateways=1)
        cluster.projector().start().wait_ready()
        url = cluster.services[1].ws_url
        visitors = [
            PatientVisitor([url], FLOWS[i % 3], random.Random(i), think=THINK) for i in range(12)
        ]
        playing = asyncio.create_task(play_all(visitors))
        await asyncio.sleep(1.0)
        broker.stop()
        await asyncio.sleep(3.0)
        assert not playing.done()
        broker.start()
        ends = await asyncio.wait_for(playing, 150)
        assert all(end["done"] for end in ends)
        errors = [code for v in visitors for code in v.errors]
        assert "unavailable" in errors or any(v.retries for v in visitors)
        await check_log_and_table(cluster, {v.conversation_id for v in visitors})
        redis = Redis.from_url(cluster.redis_url)
        try:
            store = RedisReadModel(redis, prefix=cluster.prefix)
            await wait_caught_up(cluster, store)
            await assert_matches_oracle(cluster, store)
        finally:
            await redis.aclose()
    finally:
        cluster.stop()
        broker.stop()
