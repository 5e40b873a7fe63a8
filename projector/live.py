"""The live projector: follows the ``events`` topic into the current namespace.

Where each partition starts is kept *in the store*, beside the read models
(the namespace's frontier, updated after every batch): the read models and
their position can then never disagree in a way that loses events, and a
rebuilt namespace carries the position its rebuild reached. Kafka commits are
made too, but only so that the usual tools show the group's lag.

When the store fails (Redis down or restarting), nothing advances: once it
answers again the projector seeks every partition it owns back to the
frontier the store holds, forgets its cached views and reads on from there.
Reading the position back from the store, rather than trusting its own,
also covers a Redis that lost its last writes in a crash: its frontier was
written after the batches it covers, so it never claims more than it holds.
When a rebuild switches the namespace the write comes back MOVED; the
projector seeks to the new namespace's frontier the same way.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from projector.engine import NamespaceMoved, Projector
from projector.metrics import ProjectorMetrics
from projector.store import ReadModelStore
from schemas.batches import decode_batch
from schemas.codec import MessageError, UnsupportedVersion
from schemas.events import Event

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Record:
    partition: int
    offset: int
    value: bytes


class RecordSource(Protocol):
    """The ``events`` topic as the projector consumes it (a consumer group)."""

    def assigned(self) -> list[int]: ...

    async def poll(self) -> list[Record]: ...

    async def seek(self, partition: int, offset: int | None) -> None:
        """Continue ``partition`` at ``offset`` (None: the start of the log)."""
        ...

    async def commit(self, offsets: dict[int, int]) -> None: ...

    def lag(self) -> dict[int, int]: ...


def decode_records(
    records: Sequence[Record], metrics: ProjectorMetrics
) -> tuple[list[Event], dict[int, int]]:
    """The events of ``records`` and the next offset of each partition.

    An unreadable record (not JSON, not an event batch) is skipped and counted:
    no reader could ever project it. A batch of a version this reader does not
    know is *not* skipped: UnsupportedVersion stops the projector, so that an
    upgraded one projects it later."""
    events: list[Event] = []
    next_offsets: dict[int, int] = {}
    for record in records:
        try:
            events.extend(decode_batch(record.value).events)
        except UnsupportedVersion:
            raise
        except (MessageError, ValueError, TypeError, KeyError) as exc:
            metrics.skipped.labels("unreadable").inc()
            log.error(
                "skipped an unreadable events record",
                extra={
                    "partition": record.partition,
                    "offset": record.offset,
                    "error": type(exc).__name__,
                },
            )
        next_offsets[record.partition] = record.offset + 1
    return events, next_offsets


class LiveProjection:
    def __init__(
        self,
        source: RecordSource,
        store: ReadModelStore,
        metrics: ProjectorMetrics,
        *,
        retry_seconds: float = 0.5,
        cache_size: int = 20_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._source = source
        self._store = store
        self._metrics = metrics
        self._retry_seconds = retry_seconds
        self._cache_size = cache_size
        self._clock = clock
        self._projector: Projector | None = None
        self.stalled: str | None = None
        self.last_event_at: float | None = None
        self._resync = False

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

    async def on_assigned(self, partitions: Sequence[int]) -> None:
        """Start each newly owned partition where the current namespace stands."""
        projector = await self._current()
        frontier = await self._retrying(lambda: self._store.frontier(projector.namespace))
        for partition in partitions:
            await self._source.seek(partition, frontier.get(str(partition)))
        log.info(
            "projecting partitions",
            extra={"partitions": list(partitions), "ns": projector.namespace},
        )
        projector.forget()  # another projector may have written these conversations

    async def step(self) -> int:
        """Consume and project one batch; returns how many records it held."""
        if self._resync:
            await self.on_assigned(self._source.assigned())
            self._resync = False
        records = await self._source.poll()
        if records:
            try:
                events, next_offsets = decode_records(records, self._metrics)
            except UnsupportedVersion as exc:
                self.stalled = str(exc)
                log.error(
                    "stopped: the events topic holds a newer format", extra={"error": str(exc)}
                )
                raise
            await self._project(events, next_offsets)
        self._observe()
        return len(records)

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
            self._resync = True  # read again from what the store holds
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
        await self._source.commit(next_offsets)

    async def _follow_switch(self) -> None:
        self._projector = None
        projector = await self._current()
        self._metrics.namespace_switches.inc()
        log.info(
            "read models rebuilt: following the new namespace", extra={"ns": projector.namespace}
        )
        await self.on_assigned(self._source.assigned())

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
        for partition, lag in self._source.lag().items():
            self._metrics.lag.labels(str(partition)).set(lag)
        if self.last_event_at is not None:
            self._metrics.last_event_age.set(max(0.0, self._clock() - self.last_event_at))
