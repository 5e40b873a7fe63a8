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
    assert [s.partitions for s in topic_specs(settings)] == [3, 3, 2]
