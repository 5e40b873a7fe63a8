"""Topic creation on a real broker: idempotent, safe when instances start together."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace

import pytest

from services.distributed.settings import KafkaSettings
from services.distributed.topics import TopicMismatch, ensure_topics, topic_specs


def fresh(bootstrap: str) -> KafkaSettings:
    return KafkaSettings(
        bootstrap=bootstrap, prefix=f"t{uuid.uuid4().hex[:8]}.", partitions=3, reply_partitions=2
    )


async def test_instances_starting_together_all_see_the_topics(kafka_bootstrap: str) -> None:
    """A gateway and a processor creating the same topics at once both succeed (the
    loser of the race waits for the winner's topics to show their partitions)."""
    settings = fresh(kafka_bootstrap)
    await asyncio.gather(*(ensure_topics(settings) for _ in range(4)))
    await ensure_topics(settings)  # and again later: idempotent


async def test_a_topic_with_other_partitions_is_refused(kafka_bootstrap: str) -> None:
    """Running against topics partitioned differently would move conversations: refuse."""
    settings = fresh(kafka_bootstrap)
    await ensure_topics(settings)
    with pytest.raises(TopicMismatch, match="commands has 3 partitions, expected 5"):
        await ensure_topics(replace(settings, partitions=5))
    assert [s.partitions for s in topic_specs(settings)] == [3, 3, 2, 3, 1]


async def test_the_snapshot_archive_keeps_every_version_apart(kafka_bootstrap: str) -> None:
    """Snapshots are archived (before the live topic) under a key per version in a
    compacted topic that takes records as large as the live one: replay --verify
    finds the snapshot of every logged decision there."""
    from policy.snapshots_kafka import SnapshotPublisher
    from services.distributed.topics import (
        policy_topic_specs,
        snapshot_archive_topic,
        snapshots_topic,
    )
    from tests.support.distributed import read_topic
    from tests.support.verify_snapshots import latest, snapshot

    settings = fresh(kafka_bootstrap)
    await ensure_topics(settings)
    specs = {s.name: s for s in policy_topic_specs(settings)}
    archive, live = specs[snapshot_archive_topic(settings)], specs[snapshots_topic(settings)]
    assert (archive.partitions, archive.config["cleanup.policy"]) == (1, "compact")
    assert archive.config["max.message.bytes"] == live.config["max.message.bytes"]
    publisher = SnapshotPublisher(settings)
    await publisher.start()
    try:
        for n in (1, 2):
            await publisher.publish(snapshot(latest("solar-quote"), f"solar-quote@1#{n}", seed=n))
    finally:
        await publisher.stop()
    archived = await read_topic(kafka_bootstrap, archive.name, 1)
    assert [key for _, key, _ in archived] == [
        b"solar-quote/solar-quote@1#1",
        b"solar-quote/solar-quote@1#2",
    ]
    assert [key for _, key, _ in await read_topic(kafka_bootstrap, live.name, 1)] == [
        b"solar-quote",
        b"solar-quote",
    ]
