"""``services.log_follow.follow``: the loop of the log's live followers, on the
in-memory log: where partitions start, restarts after broker trouble, errors it
lets through, and stopping."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import pytest

from services.log_follow import follow, next_positions
from services.log_follower import LogRecord
from services.log_follower_fake import MemoryLog, MemoryLogFollower


def memory_log(counts: Mapping[int, int]) -> MemoryLog:
    log = MemoryLog(len(counts))
    for partition, count in counts.items():
        for i in range(count):
            log.append(partition, f"{partition}/{i}".encode())
    return log


class Ledger:
    """A follower's effects and positions, stored together (as a caller must)."""

    def __init__(self, positions: dict[int, int] | None = None) -> None:
        self.positions: dict[int, int] = dict(positions or {})
        self.seen: list[tuple[int, int]] = []
        self.asked: list[list[int]] = []

    async def where(self, partitions: list[int]) -> dict[int, int | None]:
        self.asked.append(list(partitions))
        return {p: self.positions.get(p) for p in partitions}

    async def handle(self, records: list[LogRecord]) -> None:
        self.seen.extend((r.partition, r.offset) for r in records)
        self.positions.update(next_positions(records))


async def run(
    follower: MemoryLogFollower,
    ledger: Ledger,
    done: int,
    retry_on: tuple[type[BaseException], ...] = (OSError,),
) -> None:
    """Follow until the ledger has seen ``done`` records."""
    stopping = asyncio.Event()

    async def handle(records: list[LogRecord]) -> None:
        await ledger.handle(records)
        if len(ledger.seen) >= done:
            stopping.set()

    follows = follow(
        follower,
        handle,
        ledger.where,
        stopping=stopping,
        retry_on=retry_on,
        retry_seconds=0,
        wait=0.01,
    )
    await asyncio.wait_for(follows, 5)


def test_next_positions_are_one_past_each_partitions_last_record() -> None:
    records = [LogRecord(0, 3, b""), LogRecord(1, 7, None), LogRecord(0, 9, b"")]
    assert next_positions(records) == {0: 10, 1: 8}
    assert next_positions([]) == {}


async def test_a_manual_follower_starts_each_partition_at_the_callers_position() -> None:
    log = memory_log({0: 5, 1: 4})
    follower = MemoryLogFollower(log)
    ledger = Ledger({0: 3})  # partition 1: never read, from its beginning
    await run(follower, ledger, done=2 + 4)
    assert sorted(ledger.seen) == [(0, 3), (0, 4), (1, 0), (1, 1), (1, 2), (1, 3)]
    assert ledger.asked == [[0, 1]]  # asked once, at start
    with pytest.raises(RuntimeError):
        follower.assigned()  # stopped on the way out


class Flaky(MemoryLogFollower):
    """Its first ``failures`` polls after the first fail as a lost broker does."""

    def __init__(self, log: MemoryLog, failures: int, error: Exception) -> None:
        super().__init__(log)
        self.failures = failures
        self.error = error
        self.polls = 0
        self.starts = 0
        self.stops = 0

    async def start(self) -> None:
        self.starts += 1
        await super().start()

    async def stop(self) -> None:
        self.stops += 1
        await super().stop()

    async def poll(self, max_records: int = 5_000, wait: float = 0.2) -> list[LogRecord]:
        self.polls += 1
        if self.polls > 1 and self.failures:
            self.failures -= 1
            raise self.error
        return await super().poll(2, wait)


async def test_broker_trouble_restarts_the_follower_from_the_callers_positions() -> None:
    log = memory_log({0: 7, 1: 5})
    follower = Flaky(log, failures=2, error=ConnectionError("broker gone"))
    ledger = Ledger()
    await run(follower, ledger, done=12)
    assert (follower.starts, follower.stops) == (3, 3)
    assert ledger.asked == [[0, 1], [0, 1], [0, 1]]
    # every record once, in order per partition: nothing lost, nothing read twice
    assert [o for p, o in ledger.seen if p == 0] == list(range(7))
    assert [o for p, o in ledger.seen if p == 1] == list(range(5))


async def test_other_errors_stop_the_follower_and_are_raised() -> None:
    log = memory_log({0: 3})
    follower = Flaky(log, failures=1, error=ValueError("a bug"))
    ledger = Ledger()
    with pytest.raises(ValueError, match="a bug"):
        await run(follower, ledger, done=3, retry_on=(ConnectionError,))
    assert (follower.starts, follower.stops) == (1, 1)
    assert ledger.seen == [(0, 0), (0, 1)]


async def test_a_group_member_seeks_every_assignment_and_stops_when_told() -> None:
    log = memory_log({0: 3, 1: 3, 2: 3})
    log.committed["g"] = {0: 3, 1: 3, 2: 3}  # the group's advisory commits are ignored
    follower = MemoryLogFollower(log, group_id="g")
    ledger = Ledger({2: 1})
    stopping = asyncio.Event()

    async def handle(records: list[LogRecord]) -> None:
        await ledger.handle(records)
        if len(ledger.seen) == 3 + 3 + 2 and ledger.asked == [[0, 1, 2]]:
            await follower.rebalance([1])  # another member took 0 and 2
            log.append(1, b"late")
        elif len(ledger.seen) == 9:
            stopping.set()

    await asyncio.wait_for(follow(follower, handle, ledger.where, stopping=stopping, wait=0.01), 5)
    assert ledger.asked == [[0, 1, 2], [1]]
    assert ledger.seen[-1] == (1, 3)
    assert sorted(ledger.seen[:-1]) == [
        (0, 0),
        (0, 1),
        (0, 2),
        (1, 0),
        (1, 1),
        (1, 2),
        (2, 1),
        (2, 2),
    ]
    assert stopping.is_set()


async def test_cancelling_it_stops_the_follower() -> None:
    log = memory_log({0: 1})
    follower = MemoryLogFollower(log)
    ledger = Ledger()
    handled = asyncio.Event()

    async def handle(records: list[LogRecord]) -> None:
        await ledger.handle(records)
        if ledger.seen:
            handled.set()

    task = asyncio.create_task(follow(follower, handle, ledger.where, wait=0.01))
    await asyncio.wait_for(handled.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    with pytest.raises(RuntimeError):
        follower.assigned()
