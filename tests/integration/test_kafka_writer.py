"""The processor's transactional writer on a real broker: its two producers take
turns, each next transaction opened ahead (its events partition already added);
one left idle is closed before the coordinator would time it out (and fence the
writer), and a newer writer of the partition fences both producers, open
transaction or not."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from services.distributed.kafka_writer import KafkaPartitionWriter
from services.distributed.settings import KafkaSettings
from services.distributed.topics import ensure_topics
from services.processor.batch import Out, marker_key
from services.processor.writer import Fenced
from tests.support.distributed import read_topic


@pytest.fixture
async def settings(kafka_bootstrap: str) -> KafkaSettings:
    settings = KafkaSettings(
        bootstrap=kafka_bootstrap, prefix=f"w-{uuid.uuid4().hex[:8]}.", partitions=1
    )
    await ensure_topics(settings)
    return settings


def opened_ahead(writer: KafkaPartitionWriter) -> bool:
    return writer.opened_ahead  # (a call: mypy would narrow the property for good)


async def test_an_idle_writer_commits_again_after_its_open_transaction_was_closed(
    settings: KafkaSettings,
) -> None:
    """transaction_timeout 3 s: the transaction opened ahead is closed after 1 s;
    without that the coordinator aborts it at 3 s and bumps the epoch, and the
    writer's next commit would be refused as fenced."""
    writer = KafkaPartitionWriter(settings, 0, transaction_timeout_ms=3000)
    await writer.start()
    try:
        assert opened_ahead(writer)  # opened ahead at start
        assert await writer.commit([Out("events", b"c", b"one")]) == [0]
        assert opened_ahead(writer)  # and again after the commit
        await asyncio.sleep(4.5)
        assert not opened_ahead(writer)  # closed while idle
        offsets = await writer.commit(
            [Out("events", b"c", b"two"), Out("state", b"c", b"s")], marker=0
        )
        assert len(offsets) == 1 and offsets[0] > 0
    finally:
        await writer.stop()
    events = await read_topic(settings.bootstrap, settings.events_topic, 1)
    assert [value for _, _, value in events] == [b"one", b"two"]
    changelog = await read_topic(settings.bootstrap, settings.changelog_topic, 1)
    assert [(key, value) for _, key, value in changelog] == [(b"c", b"s"), (marker_key(0), b"0")]


async def test_a_newer_writer_fences_one_with_a_transaction_open_ahead(
    settings: KafkaSettings,
) -> None:
    zombie = KafkaPartitionWriter(settings, 0)
    await zombie.start()
    for n in range(3):  # both producers, in turn
        await zombie.commit([Out("events", b"c", b"first owner %d" % n)])
    owner = KafkaPartitionWriter(settings, 0)
    await owner.start()  # InitProducerId of both ids: aborts the zombie's open transaction
    try:
        for _ in range(2):  # whichever producer's turn it is: fenced
            with pytest.raises(Fenced):
                await zombie.commit([Out("events", b"c", b"from the zombie")])
            zombie._turn ^= 1
        for n in range(3):
            await owner.commit([Out("events", b"c", b"new owner %d" % n)])
    finally:
        await zombie.stop()
        await owner.stop()
    events = await read_topic(settings.bootstrap, settings.events_topic, 1)
    assert [value for _, _, value in events] == [
        *(b"first owner %d" % n for n in range(3)),
        *(b"new owner %d" % n for n in range(3)),
    ]


async def test_a_stopped_writer_starts_again_with_new_producers(settings: KafkaSettings) -> None:
    """A partition worker that crashed stops its writer and takes the partition over
    again with the same writer: a stopped producer cannot start again, so start()
    builds new ones (same transactional ids) and commits go on."""
    writer = KafkaPartitionWriter(settings, 0)
    await writer.start()
    try:
        await writer.commit([Out("events", b"c", b"before")])
        await writer.stop()
        await writer.start()
        for n in range(2):  # both producers, in turn
            await writer.commit([Out("events", b"c", b"after %d" % n)])
    finally:
        await writer.stop()
    events = await read_topic(settings.bootstrap, settings.events_topic, 1)
    assert [value for _, _, value in events] == [b"before", b"after 0", b"after 1"]
