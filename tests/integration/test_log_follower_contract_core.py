"""The LogFollower contract (tests/support/log_follower_contract.py) on the
in-memory fake; tests/integration/test_log_follower_contract.py runs the same
cases on the SQLite and Kafka adapters."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from services.log_follower import LogFollower, LogRecord
from services.log_follower_fake import MemoryLog, MemoryLogFollower
from tests.support.log_follower_contract import LogFollowerContract, Put


class PromptFollower(MemoryLogFollower):
    """The in-memory follower with a poll's usual wait (under a second) cut to
    :data:`PROMPT_WAIT`: the in-memory log delivers at once, so a longer wait only
    shows, in real time, that nothing comes (read_bounded polls 0.25 s past a
    trailing gap before it asks the position). A long wait, as of the poll the
    stop case cancels, is kept."""

    async def poll(self, max_records: int = 5_000, wait: float = 0.2) -> list[LogRecord]:
        return await super().poll(max_records, wait if wait >= 1.0 else min(wait, PROMPT_WAIT))


PROMPT_WAIT = 0.005


class MemoryHarness:
    partitions = 3
    gaps = True
    tombstones = True
    groups = True

    def __init__(self) -> None:
        self.log = MemoryLog(self.partitions)

    def follower(self, group_id: str | None = None) -> LogFollower:
        return PromptFollower(self.log, group_id=group_id)

    async def append(self, puts: Sequence[Put]) -> list[int]:
        return [
            self.log.append(p.partition, p.value, key=p.key, timestamp=p.timestamp) for p in puts
        ]

    async def append_aborted(self, partition: int, values: Sequence[bytes]) -> None:
        self.log.gap(partition, len(values) + 1)  # the records and the abort marker

    def where(self, partition: int, offset: int) -> str:
        return f"events partition {partition} offset {offset}"


class TestMemoryLogFollower(LogFollowerContract):
    QUIET_WAIT = 0.01  # the in-memory log delivers at once

    @pytest.fixture
    def harness(self) -> MemoryHarness:
        return MemoryHarness()


async def test_a_rebalance_forgets_revoked_partitions_and_tells_the_new_assignment() -> None:
    """What the group variant's contract case cannot play on one real member."""
    log = MemoryLog(2)
    for i in range(4):
        log.append(i % 2, b"%d" % i)
    follower = MemoryLogFollower(log, group_id="g")
    told: list[list[int]] = []
    revoked: list[list[int]] = []

    async def on_assigned(partitions: list[int]) -> None:
        told.append(partitions)

    async def on_revoked(partitions: list[int]) -> None:
        revoked.append(partitions)

    follower.on_assigned, follower.on_revoked = on_assigned, on_revoked
    await follower.start()
    assert len(await follower.poll()) == 4
    await follower.commit({0: 2, 1: 2})
    await follower.rebalance([1])
    assert told == [[0, 1], [1]] and revoked == [[0]] and follower.assigned() == [1]
    await follower.commit({0: 0})  # not assigned any more: left out
    assert log.committed["g"] == {0: 2, 1: 2}
    again = MemoryLogFollower(log, group_id="g")
    await again.start()  # a new member starts at the group's committed offsets
    log.append(0, b"new")
    assert [r.value for r in await again.poll()] == [b"new"]
