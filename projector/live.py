"""The live projector: follows the ``events`` log into the current namespace.

It reads through a :class:`~services.log_follower.LogFollower` (in the
distributed mode a Kafka consumer group): :func:`services.log_follow.follow`
seeks every partition it is assigned to :meth:`LiveProjection.positions` and
hands every poll to :meth:`LiveProjection.handle`.

Where each partition starts is kept *in the store*, beside the read models
(the namespace's frontier, updated after every batch): the read models and
their position can then never disagree in a way that loses events, and a
rebuilt namespace carries the position its rebuild reached. The follower's
commits are made too, but only so that the usual tools show the group's lag.

When the store fails (Redis down or restarting), nothing advances: once it
answers again the projector seeks every partition it owns back to the
frontier the store holds, forgets its cached views and reads on from there.
Reading the position back from the store, rather than trusting its own,
also covers a Redis that lost its last writes in a crash: its frontier was
written after the batches it covers, so it never claims more than it holds.
When a rebuild switches the namespace the write comes back MOVED; the
projector seeks to the new namespace's frontier the same way.

Records are decoded with :func:`~services.log_follower.decode_record`. An
unreadable one (not JSON, not an event batch) is skipped, logged with its
partition and offset, and counted: no reader could ever project it. A record
of a newer format (a batch version or an event type this reader does not
know) is *not* skipped: its partition stops there (paused, its frontier kept
at that record) while the other partitions go on, and readiness names the
record, so that an upgraded projector projects it and everything after it.
The valid records of the same poll, before it in its partition or in other
partitions, are projected as usual.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, TypeVar

from projector.engine import NamespaceMoved, Projector
from projector.metrics import ProjectorMetrics
from projector.store import ReadModelStore
from schemas.batches import decode_batch
from schemas.events import Event
from services.log_follow import next_positions, seek_to
from services.log_follower import LogFollower, LogRecord, UnreadableLog, decode_record

log = logging.getLogger(__name__)
T = TypeVar("T")


def decode_events(
    name: str, records: Sequence[LogRecord], metrics: ProjectorMetrics
) -> list[Event]:
    """The events of ``records`` (``name``: the log's, for messages).

    An unreadable record is skipped, logged and counted; a tombstone is passed
    over (the ``events`` log has none). A record of a newer format raises
    :class:`~services.log_follower.UnreadableLog` (``newer``)."""
    events: list[Event] = []
    for record in records:
        if record.value is None:
            continue
        try:
            events.extend(decode_record(name, record, decode_batch).events)
        except UnreadableLog as exc:
            if exc.newer:
                raise
            metrics.skipped.labels("unreadable").inc()
            log.error(
                "skipped an unreadable events record",
                extra={
                    "partition": record.partition,
                    "offset": record.offset,
                    "error": type(exc.__cause__ or exc).__name__,
                },
            )
    return events


def decode_until_newer(
    name: str, records: Sequence[LogRecord], metrics: ProjectorMetrics
) -> tuple[list[Event], list[LogRecord], dict[int, UnreadableLog]]:
    """The events of ``records`` up to the first newer-format record of each
    partition (left out with everything after it in its partition), the records
    they came from (unreadable ones included: passed over, as
    :func:`decode_events` does) and the newer-format records' errors."""
    events: list[Event] = []
    kept: list[LogRecord] = []
    newer: dict[int, UnreadableLog] = {}
    for record in records:
        if record.partition in newer:
            continue
        try:
            events.extend(decode_events(name, [record], metrics))
        except UnreadableLog as exc:
            newer[record.partition] = exc
            continue
        kept.append(record)
    return events, kept, newer


class LiveProjection:
    """Projects what ``follower`` reads into the store's current namespace.

    Run it with :func:`services.log_follow.follow` (``handle`` and
    ``positions``), or :meth:`step` by step."""

    def __init__(
        self,
        follower: LogFollower,
        store: ReadModelStore,
        metrics: ProjectorMetrics,
        *,
        retry_seconds: float = 0.5,
        cache_size: int = 20_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._follower = follower
        self._store = store
        self._metrics = metrics
        self._retry_seconds = retry_seconds
        self._cache_size = cache_size
        self._clock = clock
        self._projector: Projector | None = None
        self.stopped: dict[int, str] = {}  # partitions stopped at a newer-format record
        self.last_event_at: float | None = None

    @property
    def stalled(self) -> str | None:
        """Why partitions are stopped (None: none is)."""
        if not self.stopped:
            return None
        return "; ".join(why for _, why in sorted(self.stopped.items()))

    @property
    def namespace(self) -> str | None:
        return None if self._projector is None else self._projector.namespace

    async def _current(self) -> Projector:
        if self._projector is None:
            namespace = await self._retrying(self._store.current_namespace)
            self._projector = Projector(
                self._store, namespace, live=True, cache_size=self._cache_size
            )
        return self._projector

    async def positions(self, partitions: list[int]) -> dict[int, int | None]:
        """Where each newly owned partition starts: the current namespace's
        frontier (None: the beginning of the log)."""
        projector = await self._current()
        frontier = await self._retrying(lambda: self._store.frontier(projector.namespace))
        log.info(
            "projecting partitions",
            extra={"partitions": list(partitions), "ns": projector.namespace},
        )
        projector.forget()  # another projector may have written these conversations
        return {p: frontier.get(str(p)) for p in partitions}

    async def on_assigned(self, partitions: Sequence[int]) -> None:
        """Start each newly owned partition where the current namespace stands."""
        await seek_to(self._follower, partitions, self.positions)
        for partition in [p for p in self.stopped if p not in partitions]:
            del self.stopped[partition]  # another projector owns it now

    async def step(self, max_records: int = 5_000, wait: float = 0.2) -> int:
        """Poll and project one batch; returns how many records it held."""
        records = await self._follower.poll(max_records, wait)
        await self.handle(records)
        return len(records)

    async def handle(self, records: list[LogRecord]) -> None:
        """Project one polled batch, then write its frontier and commit it. A
        newer-format record stops its partition there (see the module's doc);
        everything else of the batch is projected."""
        records = [r for r in records if r.partition not in self.stopped]
        if records:
            events, kept, newer = decode_until_newer(self._follower.name, records, self._metrics)
            if kept:
                await self._project(events, next_positions(kept))
            for partition, exc in newer.items():
                self._stop(partition, exc)
        self._observe()

    def _stop(self, partition: int, exc: UnreadableLog) -> None:
        self.stopped[partition] = str(exc)
        self._follower.pause([partition])
        self._metrics.skipped.labels("newer_format").inc()
        log.error(
            "partition stopped: the events log holds a newer format; upgrade leadflow",
            extra={"partition": exc.partition, "offset": exc.offset, "error": str(exc)},
        )

    async def _project(self, events: list[Event], next_offsets: dict[int, int]) -> None:
        started = time.perf_counter()
        projector = await self._current()
        try:
            result = await projector.project(events)
            frontier = {str(p): o for p, o in next_offsets.items()}
            await self._store.set_frontier(projector.namespace, frontier, live=True)
        except NamespaceMoved:
            await self._follow_switch()
            return  # this batch is read again from the new namespace's frontier
        except Exception as exc:
            self._store_failed(exc)
            await asyncio.sleep(self._retry_seconds)
            # read again from what the store holds (once it answers)
            await self.on_assigned(self._follower.assigned())
            return
        self._metrics.store_up.set(1)
        self._metrics.batch_seconds.observe(time.perf_counter() - started)
        self._metrics.events.inc(len(events))
        for outcome, count in (
            ("applied", result.applied),
            ("duplicate", result.duplicates),
            ("conflict", result.conflicts),
        ):
            if count:
                self._metrics.write_sets.labels(outcome).inc(count)
        if result.last_event_at is not None:
            self.last_event_at = max(self.last_event_at or 0.0, result.last_event_at)
        await self._follower.commit(next_offsets)

    async def _follow_switch(self) -> None:
        self._projector = None
        projector = await self._current()
        self._metrics.namespace_switches.inc()
        log.info(
            "read models rebuilt: following the new namespace", extra={"ns": projector.namespace}
        )
        await self.on_assigned(self._follower.assigned())

    def _store_failed(self, exc: Exception) -> None:
        self._metrics.store_up.set(0)
        self._metrics.store_errors.inc()
        log.warning(
            "read-model store unavailable; retrying the batch",
            extra={"error": type(exc).__name__, "detail": str(exc)[:200]},
        )

    async def _retrying(self, call: Callable[[], Coroutine[Any, Any, T]]) -> T:
        while True:
            try:
                return await call()
            except Exception as exc:
                self._store_failed(exc)
                await asyncio.sleep(self._retry_seconds)

    def _observe(self) -> None:
        for partition, lag in self._follower.lag().items():
            self._metrics.lag.labels(str(partition)).set(lag)
        if self.last_event_at is not None:
            self._metrics.last_event_age.set(max(0.0, self._clock() - self.last_event_at))
