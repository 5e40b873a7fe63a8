"""The flow registry's feed across processes (in-memory log): a publish reaches every
feed, and a plan made on a stale view is made again, never appended. (Component tests
with real asyncio scheduling; the pure rules are in tests/unit/test_flow_registry.py.)"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence

import pytest

from schemas.flow_registry import ALL_SITES, FlowPublished, RegistryRecord
from services.catalog import FlowCatalog
from services.log_follower_fake import MemoryLog, MemoryLogFollower
from services.registry.core import Conflict, Published, fold, plan_publish
from services.registry.feed import CHANGE_ATTEMPTS, RegistryBusy, RegistryFeed, StaleRegistry
from services.registry.memory import MemoryRegistryWriter
from tests.unit.test_flow_registry import T0, quiz_doc


async def test_a_publish_reaches_every_feed_following_the_registry() -> None:
    log = MemoryLog(name="flows")
    admin = RegistryFeed(MemoryLogFollower(log), FlowCatalog(), MemoryRegistryWriter(log))
    other = RegistryFeed(MemoryLogFollower(log), FlowCatalog(), wait=0.01)
    log.append(0, b"garbage", key=b"x", timestamp=T0)  # skipped, with its position logged
    await admin.load()
    await other.load()
    tasks = [asyncio.create_task(feed.run()) for feed in (admin, other)]
    try:
        plan = await admin.publish(quiz_doc(1), "ann", activate_for=ALL_SITES)
        assert isinstance(plan, Published) and plan.version == 1
        assert admin.catalog.for_site("quiz", "acme") is not None  # applied before it returns
        plan = await admin.publish(quiz_doc(1, "Hue?"), "ann", activate_for=ALL_SITES)
        assert isinstance(plan, Published) and plan.version == 2
        await admin.activate("quiz", 1, "acme", "ann")
        for _ in range(200):
            if other.registry == admin.registry:
                break
            await asyncio.sleep(0.005)
        assert other.registry == admin.registry
        assert [other.catalog.for_site("quiz", s).version for s in ("acme", "b")] == [1, 2]  # type: ignore[union-attr]
        assert admin.skipped == other.skipped == 1
        stale = await admin.publish(quiz_doc(1, "Tint?"), "bob", activate_for="", if_match=1)
        assert stale == Conflict(latest=2)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class RacedWriter(MemoryRegistryWriter):
    """Before each of its first ``races`` appends another process publishes first:
    the append is refused as stale, as the Kafka writer refuses it."""

    def __init__(self, log: MemoryLog, races: int) -> None:
        super().__init__(log)
        self.races = races
        self.refused = 0

    async def append_registry(self, records: Sequence[RegistryRecord]) -> int:
        if self.refused < self.races:
            self.refused += 1
            other = plan_publish(
                fold([]), quiz_doc(1, f"Other {self.refused}?"), by="b", at=T0, activate_for=""
            )
            assert isinstance(other, Published)
            first = other.records[0]
            assert isinstance(first, FlowPublished)
            theirs = dataclasses.replace(first, version=10 + self.refused)
            await MemoryRegistryWriter(self.log).append_registry([theirs])
            raise StaleRegistry("another process wrote first")
        return await super().append_registry(records)


async def test_a_plan_made_on_a_stale_registry_is_made_again_never_appended() -> None:
    log = MemoryLog(name="flows")
    writer = RacedWriter(log, races=2)
    feed = RegistryFeed(MemoryLogFollower(log), FlowCatalog(), writer, wait=0.001)
    feed.change_backoff = 0.002
    await feed.load()
    task = asyncio.create_task(feed.run())
    try:
        plan = await feed.publish(quiz_doc(1, "Mine?"), "ann", activate_for=ALL_SITES)
        assert isinstance(plan, Published)
        assert plan.version == 13  # planned after the two versions the others wrote (11, 12)
        assert writer.refused == 2 and feed.registry.active_version("quiz") == 13
        writer.races = 2 + CHANGE_ATTEMPTS
        with pytest.raises(RegistryBusy):
            await feed.publish(quiz_doc(1, "Again?"), "ann", activate_for=ALL_SITES)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
