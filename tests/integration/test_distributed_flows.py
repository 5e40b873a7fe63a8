"""The distributed mode on a real broker: gateways -> Kafka -> processor -> gateways."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from schemas.batches import decode_batch
from schemas.replies import decode_reply
from tests.integration.distributed_fixtures import new_cluster
from tests.support.distributed import Cluster, read_topic
from tests.support.patient import PatientVisitor
from tests.support.visitor import VALID_LEAD, Visitor

EXAMPLES = sorted(p.stem for p in (Path(__file__).parents[2] / "examples" / "flows").glob("*.yaml"))


@pytest.fixture(scope="module")
def cluster(
    kafka_bootstrap: str, session_redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    cluster = new_cluster(kafka_bootstrap, session_redis_url, tmp_path_factory.mktemp("cluster"))
    processor = cluster.processor().start()
    gateways = [cluster.gateway(0).start(), cluster.gateway(1).start()]
    try:
        processor.wait_log("Worker ready")
        for gateway in gateways:
            gateway.wait_ready()
        yield cluster
    finally:
        cluster.stop()


@pytest.mark.parametrize("flow", EXAMPLES)
async def test_every_example_flow_completes_through_kafka(cluster: Cluster, flow: str) -> None:
    """Visitors on both gateways finish every example flow through Kafka and the processor."""
    urls = [s.ws_url for s in cluster.services if s.name.startswith("gateway")]
    visitors = [PatientVisitor([url], flow, random.Random(i)) for i, url in enumerate(urls * 2)]
    try:
        ends = await asyncio.gather(*(v.play() for v in visitors))
    finally:
        await asyncio.gather(*(v.close() for v in visitors))
    assert all(end["done"] for end in ends)
    for v in visitors:
        seqs = [m["seq"] for m in v.seen]
        assert seqs == sorted(set(seqs)), "a bot message was repeated or reordered"


async def test_replies_reach_only_the_gateway_that_asked(cluster: Cluster) -> None:
    """Each reply lands on the replies partition of the gateway that sent the command."""
    gateways = [s for s in cluster.services if s.name.startswith("gateway")]
    owners: dict[str, int] = {}
    for ordinal, gateway in enumerate(gateways):
        visitor = await Visitor.connect(gateway.ws_url)
        try:
            await visitor.start("solar-quote")
            await visitor.play_to_end(random.Random(ordinal))
            owners[visitor.conversation_id] = ordinal
        finally:
            await visitor.close()
    records = await read_topic(
        cluster.bootstrap, f"{cluster.prefix}replies", cluster.reply_partitions
    )
    mine = [(p, decode_reply(v)) for p, _, v in records]
    mine = [(p, r) for p, r in mine if r.conversation_id in owners]
    assert mine, "no replies found"
    assert all(p == owners[r.conversation_id] for p, r in mine)


async def test_every_event_record_is_keyed_by_its_conversation(cluster: Cluster) -> None:
    """An independent consumer sees every events record keyed by its conversation id,
    events of one conversation on one partition, and no event id twice."""
    visitor = await Visitor.connect(cluster.services[1].ws_url)
    try:
        await visitor.start("insurance-quote")
        await visitor.play_to_end(random.Random(9))
    finally:
        await visitor.close()
    records = await read_topic(cluster.bootstrap, f"{cluster.prefix}events", cluster.partitions)
    assert records
    partition_of: dict[str, int] = {}
    ids: list[str] = []
    for partition, key, value in records:
        batch = decode_batch(value)
        assert key == batch.conversation_id.encode()
        assert partition_of.setdefault(batch.conversation_id, partition) == partition
        ids.extend(e.id for e in batch.events)
    assert len(ids) == len(set(ids))


async def test_lead_details_never_cross_kafka_in_clear(cluster: Cluster) -> None:
    """Contact details are sealed on the commands topic and in the events log alike."""
    visitor = PatientVisitor([cluster.services[1].ws_url], "saas-demo", random.Random(3))
    try:
        await visitor.play_through_a_lead_form()
    finally:
        await visitor.close()
    email = VALID_LEAD["email"].encode()
    for topic, partitions in (("commands", cluster.partitions), ("events", cluster.partitions)):
        records = await read_topic(cluster.bootstrap, f"{cluster.prefix}{topic}", partitions)
        assert records and not any(email in value for _, _, value in records)
