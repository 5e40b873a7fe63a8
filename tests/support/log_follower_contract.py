"""The contract of :class:`~services.log_follower.LogFollower`, one suite for every adapter.

:class:`LogFollowerContract` holds the cases; a test module subclasses it
(``class TestX(LogFollowerContract)``) and provides a ``harness`` fixture
that writes to the log under test the way its real writers do (a Kafka
producer, an insert into events.db, :class:`MemoryLog.append`). Cases a log
cannot express (SQLite has no gaps, no tombstones and no consumer groups) are
skipped by what the harness says it supports.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import orjson
import pytest

from schemas.batches import decode_batch, encode_batch
from schemas.commands import VisitorContext
from schemas.events import ConversationStarted, event_id
from services.log_follower import (
    Chunk,
    LogFollower,
    LogRecord,
    UnreadableLog,
    bounded_range,
    decode_record,
    read_bounded,
)

T0 = 1_700_000_000.0


@dataclass(frozen=True, slots=True)
class Put:
    """One record to append: ``value`` None is a tombstone."""

    partition: int
    value: bytes | None
    key: bytes = b"k"
    timestamp: float = T0


class Harness(Protocol):
    partitions: int  # how many partitions the log has (the suite uses at most 2)
    gaps: bool  # can hold offsets with nothing readable (aborted transactions, markers)
    tombstones: bool
    groups: bool  # a follower can be a consumer-group member

    def follower(self, group_id: str | None = None) -> LogFollower:
        """A follower of the log, not started: manual (every partition) or in a group."""
        ...

    async def append(self, puts: Sequence[Put]) -> list[int]:
        """Append in order, durably and readable; returns the records' offsets."""
        ...

    async def append_aborted(self, partition: int, values: Sequence[bytes]) -> None:
        """Write ``values`` in a transaction that is aborted (only if ``gaps``)."""
        ...

    def where(self, partition: int, offset: int) -> str:
        """How an :class:`UnreadableLog` names the record."""
        ...


def started(cid: str) -> ConversationStarted:
    return ConversationStarted(
        conversation_id=cid,
        seq=1,
        id=event_id(cid, 1),
        at=T0,
        command_seq=1,
        flow_id="f",
        flow_version=1,
        site_id="s",
        context=VisitorContext(),
    )


async def poll_until(follower: LogFollower, count: int, within: float = 30.0) -> list[LogRecord]:
    """Poll until ``count`` records came (exactly: more fails), or fail."""
    out: list[LogRecord] = []
    deadline = time.monotonic() + within
    while len(out) < count:
        assert time.monotonic() < deadline, f"{len(out)} of {count} records in {within} s"
        out.extend(await follower.poll(max_records=1_000, wait=0.2))
    assert len(out) == count, [(r.partition, r.offset) for r in out[count:]]
    return out


def by_partition(records: Sequence[LogRecord]) -> dict[int, list[LogRecord]]:
    out: dict[int, list[LogRecord]] = {}
    for record in records:
        out.setdefault(record.partition, []).append(record)
    return out


class LogFollowerContract:
    """The cases. Subclasses provide the ``harness`` fixture."""

    # How long a poll must come back empty to show that nothing more is coming: a
    # broker may deliver a record late; the in-memory log has it at once (its
    # subclass waits less, so the unit tier does not sleep).
    QUIET_WAIT = 0.3

    @staticmethod
    def used(harness: Harness) -> list[int]:
        return list(range(min(2, harness.partitions)))

    async def test_records_come_in_offset_order_per_partition_from_the_sought_offset(
        self, harness: Harness
    ) -> None:
        parts = self.used(harness)
        puts = [Put(p, b"r%d-%d" % (p, i), b"key-%d" % i, T0 + i) for i in range(10) for p in parts]
        offsets = await harness.append(puts)
        follower = harness.follower()
        await follower.start()
        try:
            assert follower.assigned() == list(range(harness.partitions))
            for p in parts:
                await follower.seek(p, None)
            got = by_partition(await poll_until(follower, len(puts)))
            for p in parts:
                mine = [
                    (put, o) for put, o in zip(puts, offsets, strict=True) if put.partition == p
                ]
                assert [r.value for r in got[p]] == [put.value for put, _ in mine]
                assert [r.offset for r in got[p]] == [o for _, o in mine]
                assert [r.key for r in got[p]] == [put.key for put, _ in mine]
                assert all(
                    abs(r.timestamp - put.timestamp) < 0.002
                    for r, (put, _) in zip(got[p], mine, strict=True)
                )
                assert await follower.position(p) == got[p][-1].offset + 1
            fifth = got[parts[0]][5]
            await follower.seek(parts[0], fifth.offset)
            assert await follower.position(parts[0]) == fifth.offset
            again = await poll_until(follower, 5)
            assert [r.value for r in again] == [r.value for r in got[parts[0]][5:]]
        finally:
            await follower.stop()

    async def test_positions_handed_back_after_a_restart_resume_exactly(
        self, harness: Harness
    ) -> None:
        parts = self.used(harness)
        first = [Put(p, b"a%d-%d" % (p, i), timestamp=T0 + i) for i in range(8) for p in parts]
        await harness.append(first)
        follower = harness.follower()
        await follower.start()
        try:
            for p in parts:
                await follower.seek(p, None)
            read = by_partition(await poll_until(follower, len(first)))
        finally:
            await follower.stop()
        # the caller applied the first 3 records of each partition and stored where it was
        stored = {p: read[p][2].offset + 1 for p in parts}
        later = [Put(p, b"b%d-%d" % (p, i), timestamp=T0 + 20 + i) for i in range(4) for p in parts]
        await harness.append(later)
        restarted = harness.follower()
        await restarted.start()
        try:
            for p in parts:
                await restarted.seek(p, stored[p])
                assert await restarted.position(p) == stored[p]
            resumed = by_partition(await poll_until(restarted, len(parts) * (5 + 4)))
            for p in parts:
                expected = [r.value for r in read[p][3:]] + [
                    put.value for put in later if put.partition == p
                ]
                assert [r.value for r in resumed[p]] == expected  # nothing lost, nothing twice
            assert await restarted.poll(wait=self.QUIET_WAIT) == []
        finally:
            await restarted.stop()

    async def test_a_bounded_read_stops_at_the_end_captured_when_it_began(
        self, harness: Harness
    ) -> None:
        parts = self.used(harness)
        before = [Put(p, b"x%d-%d" % (p, i), timestamp=T0 + i) for i in range(15) for p in parts]
        await harness.append(before)
        follower = harness.follower()
        await follower.start()
        try:
            start, end = await bounded_range(follower)
            assert set(start) == set(end) == set(range(harness.partitions))
            assert sum(end[p] - start[p] for p in parts) == len(before)  # no gaps written
            chunks: list[Chunk] = []
            async for chunk in read_bounded(follower, start, end, max_records=7):
                if not chunks:  # appended while the read goes on: not read
                    await harness.append([Put(p, b"late", timestamp=T0 + 99) for p in parts])
                assert len(chunk.records) <= 7
                chunks.append(chunk)
            values = sorted(r.value or b"" for c in chunks for r in c.records)
            assert values == sorted(put.value or b"" for put in before)
            assert sum(c.covered for c in chunks) == len(before)
            for p in parts:
                assert await follower.position(p) >= end[p]  # the late records may be fetched
        finally:
            await follower.stop()

    async def test_offsets_for_time_finds_the_first_record_at_or_after_it(
        self, harness: Harness
    ) -> None:
        parts = self.used(harness)
        puts = [
            Put(p, b"t%d-%d" % (p, i), timestamp=T0 + 10 * i + 5 * p)
            for i in range(10)
            for p in parts
        ]
        offsets = await harness.append(puts)
        offset = {(put.partition, put.timestamp): o for put, o in zip(puts, offsets, strict=True)}
        follower = harness.follower()
        await follower.start()
        try:
            found = await follower.offsets_for_time(T0 + 35)
            assert found[0] == offset[(0, T0 + 40)]
            if len(parts) > 1:
                assert found[1] == offset[(1, T0 + 35)]  # at counts
            end = await follower.end_offsets()
            assert await follower.offsets_for_time(T0 + 1_000) == end  # none: the end
            start, _ = await bounded_range(follower, since=T0 + 35)
            assert {p: start[p] for p in parts} == {p: found[p] for p in parts}
        finally:
            await follower.stop()

    async def test_gaps_of_an_aborted_transaction_are_stepped_over(self, harness: Harness) -> None:
        if not harness.gaps:
            pytest.skip("this log has no gaps")
        await harness.append([Put(0, b"a"), Put(0, b"b")])
        await harness.append_aborted(0, [b"aborted-1", b"aborted-2", b"aborted-3"])
        await harness.append([Put(0, b"c")])
        await harness.append_aborted(0, [b"aborted-4"])  # a gap at the end, too
        follower = harness.follower()
        await follower.start()
        try:
            start, end = await bounded_range(follower)
            records = [r async for c in read_bounded(follower, start, end) for r in c.records]
            assert [r.value for r in records] == [b"a", b"b", b"c"]
            assert records[2].offset - records[1].offset > 3  # three records and markers
            assert end[0] > records[2].offset + 1
            assert await follower.position(0) >= end[0]
            assert follower.lag().get(0, 0) == 0  # markers and aborted records are no lag
            await follower.seek(0, None)
            polled = await poll_until(follower, 3)
            assert [r.value for r in polled] == [b"a", b"b", b"c"]
        finally:
            await follower.stop()

    async def test_a_tombstone_is_a_record_without_a_value(self, harness: Harness) -> None:
        if not harness.tombstones:
            pytest.skip("this log has no tombstones")
        offsets = await harness.append([Put(0, b"a"), Put(0, None), Put(0, b"c")])
        follower = harness.follower()
        await follower.start()
        try:
            await follower.seek(0, None)
            records = await poll_until(follower, 3)
            assert [(r.offset, r.value) for r in records] == list(
                zip(offsets, [b"a", None, b"c"], strict=True)
            )
            with pytest.raises(UnreadableLog, match="tombstone") as caught:
                decode_record(follower.name, records[1], decode_batch)
            assert (caught.value.partition, caught.value.offset) == (0, offsets[1])
        finally:
            await follower.stop()

    async def test_decode_errors_name_partition_and_offset(self, harness: Harness) -> None:
        part = self.used(harness)[-1]
        good = encode_batch([started("c1")])
        newer = orjson.dumps({**orjson.loads(good), "v": 7})
        offsets = await harness.append([Put(part, good), Put(part, b"{not json"), Put(part, newer)])
        follower = harness.follower()
        await follower.start()
        try:
            await follower.seek(part, None)
            records = await poll_until(follower, 3)
            assert decode_record(follower.name, records[0], decode_batch).events == (started("c1"),)
            with pytest.raises(UnreadableLog) as broken:
                decode_record(follower.name, records[1], decode_batch)
            where = harness.where(part, offsets[1])
            assert str(broken.value).startswith(f"{where}: unreadable record")
            assert (broken.value.where, broken.value.partition, broken.value.offset) == (
                where,
                part,
                offsets[1],
            )
            assert not broken.value.newer
            with pytest.raises(UnreadableLog) as upgrade:
                decode_record(follower.name, records[2], decode_batch)
            assert upgrade.value.newer and upgrade.value.offset == offsets[2]
            assert str(upgrade.value) == (
                f"{harness.where(part, offsets[2])}: EventBatch version 7 is not supported"
                " (this reader knows v1); upgrade leadflow to read it"
            )
        finally:
            await follower.stop()

    async def test_a_paused_partition_is_not_read_until_sought_again(
        self, harness: Harness
    ) -> None:
        parts = self.used(harness)
        await harness.append([Put(p, b"p%d" % p) for p in parts])
        follower = harness.follower()
        await follower.start()
        try:
            for p in parts:
                await follower.seek(p, None)
            await poll_until(follower, len(parts))
            follower.pause([parts[0]])
            offsets = await harness.append([Put(p, b"q%d" % p) for p in parts])
            rest = await poll_until(follower, len(parts) - 1) if len(parts) > 1 else []
            assert [r.partition for r in rest] == parts[1:]
            assert await follower.poll(wait=self.QUIET_WAIT) == []
            await follower.seek(parts[0], offsets[0])
            resumed = await poll_until(follower, 1)
            assert [(r.partition, r.value) for r in resumed] == [(parts[0], b"q%d" % parts[0])]
        finally:
            await follower.stop()

    async def test_stop_leaves_nothing_in_flight(self, harness: Harness) -> None:
        parts = self.used(harness)
        await harness.append([Put(p, b"s%d-%d" % (p, i)) for i in range(20) for p in parts])
        follower = harness.follower()
        await follower.start()
        start, end = await bounded_range(follower)
        async for _ in read_bounded(follower, start, end, max_records=5):
            pass
        began = time.monotonic()
        await follower.stop()
        assert time.monotonic() - began < 1.0
        await follower.stop()  # idempotent
        # stopped under a poll that waits on an empty log: the poll is cancelled, stop is prompt
        other = harness.follower()
        await other.start()
        for p in parts:
            await other.seek(p, end[p])
        waiting = asyncio.ensure_future(other.poll(wait=5.0))
        await asyncio.sleep(self.QUIET_WAIT)
        waiting.cancel()
        began = time.monotonic()
        await other.stop()
        assert time.monotonic() - began < 1.0
        with pytest.raises(asyncio.CancelledError):
            await waiting

    async def test_a_manual_follower_is_told_its_partitions_once_and_commits_nothing(
        self, harness: Harness
    ) -> None:
        follower = harness.follower()
        told: list[list[int]] = []

        async def on_assigned(partitions: list[int]) -> None:
            told.append(partitions)

        follower.on_assigned = on_assigned
        await follower.start()
        try:
            assert told == [list(range(harness.partitions))]
            await follower.commit({0: 1})  # advisory; nothing to commit to
        finally:
            await follower.stop()

    async def test_a_group_member_is_told_its_partitions_and_seeks_there(
        self, harness: Harness
    ) -> None:
        if not harness.groups:
            pytest.skip("this log has no consumer groups")
        parts = list(range(harness.partitions))
        puts = [Put(p, b"g%d-%d" % (p, i)) for i in range(6) for p in parts]
        offsets = await harness.append(puts)
        third = {
            p: [o for put, o in zip(puts, offsets, strict=True) if put.partition == p][2]
            for p in parts
        }
        group = f"contract-{time.monotonic_ns()}"
        told: list[list[int]] = []
        follower = harness.follower(group)

        async def on_assigned(partitions: list[int]) -> None:
            told.append(partitions)
            for p in partitions:
                await follower.seek(p, third[p])

        follower.on_assigned = on_assigned
        await follower.start()
        try:
            records = by_partition(await poll_until(follower, 4 * len(parts), within=60))
            assert told and told[-1] == parts
            assert sorted(follower.assigned()) == parts
            for p in parts:
                assert [r.value for r in records[p]] == [b"g%d-%d" % (p, i) for i in range(2, 6)]
            await follower.commit({p: records[p][-1].offset + 1 for p in parts} | {99: 1})
            assert follower.lag() == dict.fromkeys(parts, 0)
        finally:
            await follower.stop()
