"""The processor's loop: consume → decide → write in one transaction → reply.

One :class:`Engine` per processor process follows the ``commands`` topic in
the processors' consumer group (a :class:`~services.log_follower.LogFollower`)
and hands each record to the
:class:`~services.processor.partition_worker.PartitionWorker` of its
partition, which decides, commits and replies (that module says what a worker
owns, and why failure is always the same move: give up the uncommitted batch
and decide it again). The engine commits the partitions' commands positions
to the group every ``commit_seconds`` and on revoke and stop, at least once
(:mod:`services.processor.writer` says why). Both read their tunables from
:class:`~services.processor.settings.EngineSettings`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from services.log_follower import LogFollower
from services.processor.partition_worker import PartitionWorker
from services.processor.settings import EngineSettings

log = logging.getLogger(__name__)
NewWorker = Callable[[int], PartitionWorker]


@dataclass
class Engine:
    """Follows ``commands`` in the group and runs a worker per assigned partition."""

    commands: LogFollower
    new_worker: NewWorker
    settings: EngineSettings = field(default_factory=EngineSettings)
    workers: dict[int, PartitionWorker] = field(default_factory=dict)
    running: bool = False
    rebalancing: bool = False
    joined: bool = False  # the group gave this member an assignment (maybe empty)
    _stopping: bool = False
    _paused: set[int] = field(default_factory=set)
    _committed: dict[int, int] = field(default_factory=dict)  # positions the group has
    _done: asyncio.Event = field(default_factory=asyncio.Event)  # run() has returned

    def __post_init__(self) -> None:
        self.commands.on_assigned = self._assigned
        self.commands.on_revoked = self._revoked

    async def _assigned(self, partitions: list[int]) -> None:
        for partition in partitions:
            if partition not in self.workers:
                worker = self.new_worker(partition)
                self.workers[partition] = worker
                worker.start()
        self._paused.difference_update(partitions)
        self.rebalancing = False
        self.joined = True
        log.info("partitions assigned", extra={"partitions": partitions})

    async def _revoked(self, partitions: list[int]) -> None:
        self.rebalancing = True
        going = [self.workers.pop(p) for p in partitions if p in self.workers]
        await asyncio.gather(*(worker.stop() for worker in going))
        await self._commit_positions(going)  # the next owner starts there
        log.info("partitions revoked", extra={"partitions": partitions})

    async def _commit_positions(self, workers: Sequence[PartitionWorker]) -> None:
        """Tell the group how far the given partitions are (at least once: see
        :mod:`services.processor.writer`)."""
        positions = {}
        for worker in workers:
            if worker.position is not None and worker.position != self._committed.get(
                worker.partition
            ):
                positions[worker.partition] = worker.position
        if not positions:
            return
        try:
            await self.commands.commit(positions)
        except Exception as exc:  # a later commit covers it; a new owner repeats a few
            log.info("commands positions not committed: %r", exc)
            return
        self._committed.update(positions)

    async def _commit_periodically(self) -> None:
        while True:
            await asyncio.sleep(self.settings.commit_seconds)
            await self._commit_positions(list(self.workers.values()))

    async def run(self) -> None:
        """Until :meth:`stop`: fetch commands and hand them to their workers."""
        await self.commands.start()
        self.running = True
        self._done.clear()
        committer = asyncio.create_task(self._commit_periodically(), name="commit-positions")
        try:
            while not self._stopping:
                try:
                    records = await self.commands.poll(
                        max_records=self.settings.max_batch * 2, wait=self.settings.poll_seconds
                    )
                except Exception as exc:  # the broker is away: the consumer reconnects
                    log.warning("fetching commands failed: %r", exc)
                    await asyncio.sleep(self.settings.poll_seconds * 5)
                    continue
                for record in records:
                    worker = self.workers.get(record.partition)
                    if worker is not None:
                        worker.offer(record)
                await self._flow_control()
        finally:
            committer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await committer
            self.running = False
            self._done.set()

    async def _flow_control(self) -> None:
        """Pause the partitions whose queue is full; resume them once it drained."""
        for partition, worker in list(self.workers.items()):
            full = len(worker.queue) >= self.settings.queue_limit
            if full and partition not in self._paused:
                self.commands.pause([partition])
                self._paused.add(partition)
            elif not full and partition in self._paused and worker.next_offset is not None:
                await self.commands.seek(partition, worker.next_offset)
                self._paused.discard(partition)

    async def stop(self) -> None:
        """Stop fetching, finish or abandon each batch in hand, leave the group."""
        self._stopping = True
        if self.running:  # the poll in hand ends within its wait
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._done.wait(), self.settings.poll_seconds * 10 + 1.0)
        going = list(self.workers.values())
        self.workers.clear()
        await asyncio.gather(*(worker.stop() for worker in going))
        await self._commit_positions(going)
        await self.commands.stop()

    def in_flight(self) -> int:
        return sum(len(worker.queue) for worker in self.workers.values())

    def out_of_service(self) -> dict[int, str]:
        """Partitions this processor holds but cannot serve, and why."""
        return {p: w.failed for p, w in self.workers.items() if w.failed is not None}

    def recovering(self) -> bool:
        return any(worker.recovering for worker in self.workers.values())

    def stuck_for(self, now: float) -> float:
        """The longest spell of failed batches of any partition, in seconds."""
        spells = [now - w.failing_since for w in self.workers.values() if w.failing_since]
        return max(spells, default=0.0)
