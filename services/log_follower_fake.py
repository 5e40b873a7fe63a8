"""An in-memory log and :class:`~services.log_follower.LogFollower`, for unit tests.

:class:`MemoryLog` holds partitions of records with Kafka's shapes: offsets
that may have gaps (:meth:`MemoryLog.gap` stands for an aborted transaction
or a transaction marker), tombstones (a None value), record timestamps, and
the committed offsets of consumer groups. :class:`MemoryLogFollower` follows
it, manually or as the only member of a group; it passes the contract suite
the Kafka and SQLite followers pass (tests/integration/test_log_follower_contract_core.py),
so a unit test written against it holds against them.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field

from services.log_follower import Headers, LogRecord, OnAssigned


@dataclass
class _Partition:
    records: list[LogRecord] = field(default_factory=list)
    end: int = 0  # the next offset to be written

    def first_at_or_after(self, offset: int) -> int:
        """Index of the first record at or after ``offset``."""
        return bisect.bisect_left([r.offset for r in self.records], offset)


class MemoryLog:
    """Partitions of records, shared by the followers of one test (a follower
    stopped and another started read the same log, as after a restart)."""

    def __init__(self, partitions: int = 1, name: str = "events") -> None:
        self.name = name
        self._partitions = [_Partition() for _ in range(partitions)]
        self.committed: dict[str, dict[int, int]] = {}  # group id -> partition -> offset
        self._appended = asyncio.Event()

    @property
    def partitions(self) -> int:
        return len(self._partitions)

    def append(
        self,
        partition: int,
        value: bytes | None,
        *,
        key: bytes | None = None,
        timestamp: float = 0.0,
        headers: Headers = (),
    ) -> int:
        """Add a record (None: a tombstone); returns its offset."""
        part = self._partitions[partition]
        record = LogRecord(partition, part.end, value, key, timestamp, headers)
        part.records.append(record)
        part.end += 1
        self._appended.set()
        return record.offset

    def gap(self, partition: int, count: int = 1) -> None:
        """Offsets with nothing readable behind them: an aborted transaction's
        records, or a transaction's marker."""
        self._partitions[partition].end += count
        self._appended.set()

    def partition(self, partition: int) -> _Partition:
        return self._partitions[partition]

    async def appended(self, seconds: float) -> None:
        """Wait up to ``seconds`` for the next append."""
        self._appended.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._appended.wait(), seconds)


class MemoryLogFollower:
    """Follows a :class:`MemoryLog`: manually (``group_id`` None; ``partitions``,
    default all) or as the only member of ``group_id``, which is assigned every
    partition at start; :meth:`rebalance` plays a rebalance. A partition never
    sought starts, in a group, at the group's committed offset, else at the
    beginning; a manual follower reads nothing of it before a seek."""

    def __init__(
        self,
        log: MemoryLog,
        *,
        group_id: str | None = None,
        partitions: Sequence[int] | None = None,
    ) -> None:
        self._log = log
        self._group_id = group_id
        self._wanted = list(range(log.partitions)) if partitions is None else sorted(partitions)
        self._assigned: list[int] | None = None
        self._position: dict[int, int] = {}  # sought or read: the next offset
        self._paused: set[int] = set()
        self.on_assigned: OnAssigned | None = None
        self.on_revoked: OnAssigned | None = None

    @property
    def name(self) -> str:
        return self._log.name

    async def start(self) -> None:
        await self.rebalance(self._wanted)

    async def stop(self) -> None:
        self._assigned = None
        self._position.clear()

    async def rebalance(self, partitions: Sequence[int]) -> None:
        """Revoke the partitions not in ``partitions`` (their positions are
        forgotten), assign ``partitions`` and tell ``on_assigned``."""
        revoked = sorted(set(self._assigned or ()) - set(partitions))
        if revoked and self._group_id is not None and self.on_revoked is not None:
            await self.on_revoked(revoked)
        self._assigned = sorted(partitions)
        for partition in list(self._position):
            if partition not in self._assigned:
                self._forget(partition)
        if self._group_id is None:
            self._paused = set(self._assigned)  # nothing is read before a seek
        else:
            committed = self._log.committed.get(self._group_id, {})
            for partition in self._assigned:
                self._position.setdefault(partition, committed.get(partition, 0))
        if self.on_assigned is not None:
            await self.on_assigned(list(self._assigned))

    def _forget(self, partition: int) -> None:
        self._position.pop(partition, None)
        self._paused.discard(partition)

    def assigned(self) -> list[int]:
        if self._assigned is None:
            raise RuntimeError(f"the {self.name} follower is not started")
        return list(self._assigned)

    async def seek(self, partition: int, offset: int | None) -> None:
        self._check(partition)
        part = self._log.partition(partition)
        begin = part.records[0].offset if part.records else part.end
        self._position[partition] = begin if offset is None else offset
        self._paused.discard(partition)

    def pause(self, partitions: Sequence[int]) -> None:
        for partition in partitions:
            self._check(partition)
            self._paused.add(partition)

    def _check(self, partition: int) -> None:
        if partition not in self.assigned():
            raise ValueError(f"partition {partition} of {self.name} is not assigned")

    def _readable(self) -> list[int]:
        return [p for p in self.assigned() if p in self._position and p not in self._paused]

    async def poll(self, max_records: int = 5_000, wait: float = 0.2) -> list[LogRecord]:
        records = self._take(max_records)
        if not records and wait > 0:
            await self._log.appended(wait)
            records = self._take(max_records)
        return records

    def _take(self, max_records: int) -> list[LogRecord]:
        out: list[LogRecord] = []
        for partition in self._readable():
            part = self._log.partition(partition)
            index = part.first_at_or_after(self._position[partition])
            taken = part.records[index : index + max_records - len(out)]
            if taken:
                self._position[partition] = taken[-1].offset + 1
                out.extend(taken)
            if len(out) >= max_records:
                break
        return out

    async def position(self, partition: int) -> int:
        """Past gaps: the next record's offset, or the end when none is left."""
        self._check(partition)
        part = self._log.partition(partition)
        position = self._position.get(partition, 0)
        index = part.first_at_or_after(position)
        return part.records[index].offset if index < len(part.records) else max(position, part.end)

    async def end_offsets(self) -> dict[int, int]:
        return {p: self._log.partition(p).end for p in self.assigned()}

    async def beginning_offsets(self) -> dict[int, int]:
        out: dict[int, int] = {}
        for p in self.assigned():
            part = self._log.partition(p)
            out[p] = part.records[0].offset if part.records else part.end
        return out

    async def offsets_for_time(self, since: float) -> dict[int, int]:
        out: dict[int, int] = {}
        for p in self.assigned():
            part = self._log.partition(p)
            found = next((r.offset for r in part.records if r.timestamp >= since), None)
            out[p] = part.end if found is None else found
        return out

    def lag(self) -> dict[int, int]:
        """Records at or after the follower's position per partition (a
        partition with no position yet: all of its records)."""
        out: dict[int, int] = {}
        for p in self.assigned():
            part = self._log.partition(p)
            out[p] = len(part.records) - part.first_at_or_after(self._position.get(p, 0))
        return out

    async def commit(self, positions: dict[int, int]) -> None:
        """Kept for the group, for assigned partitions only; a manual follower
        commits nothing."""
        if self._group_id is None:
            return
        mine = set(self.assigned())
        group = self._log.committed.setdefault(self._group_id, {})
        group.update({p: o for p, o in positions.items() if p in mine})
