"""The control log, followed: guardrail changes that survive restarts.

:class:`ControlFeed` reads the control log (:mod:`policy.control`) through a
:class:`~services.log_follower.LogFollower` (events.db's ``policy_control``
table, or the ``{prefix}policy-control`` topic): at a start it folds every
record up to the end the log had (:meth:`ControlFeed.load`) and hands each
flow's resulting guardrails to ``apply`` (the fitting schedule's guardrails,
so every snapshot published from then on carries them); then it follows the
log (:meth:`ControlFeed.run`) and applies each new change at once, whoever
wrote it (the policy API, ``leadflow policy promote``, another process).

Writers append through a :class:`ControlWriter`: :meth:`ControlFeed.append`
makes a change durable (its position in the log), :meth:`ControlFeed.applied`
waits until this feed applied it (the snapshot it published, if any; a record
folded by :meth:`ControlFeed.load` counts as applied, with none), so the API
can answer with the snapshot that carries the change. A record that cannot be
decoded is logged with its position and skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from policy.control import ControlError, ControlState, GuardrailChange, decode_change, encode_change
from policy.snapshot import Guardrails, PolicySnapshot
from services.log_follow import follow
from services.log_follower import LogFollower, LogRecord, bounded_range, read_bounded

log = logging.getLogger("leadflow.policy.control")
KEPT_RESULTS = 1024  # the snapshots the latest changes published, for their waiters

# (flow id, its guardrails now, the change; None at a start) -> the snapshot published, if any
Apply = Callable[[str, Guardrails, GuardrailChange | None], Awaitable[PolicySnapshot | None]]


class ControlWriter(Protocol):
    async def append_control(self, flow_id: str, at: float, body: bytes) -> int:
        """Append a record durably; its offset (position) in the log."""
        ...


class ControlFeed:
    def __init__(
        self,
        follower: LogFollower,
        state: ControlState,
        apply: Apply,
        writer: ControlWriter | None = None,
        *,
        retry_on: tuple[type[BaseException], ...] = (OSError,),
        wait: float = 0.2,
    ) -> None:
        self._follower = follower
        self.state = state
        self._apply = apply
        self._writer = writer
        self._retry_on = retry_on
        self._wait = wait
        self.position: int | None = None  # the next offset to read (None: the beginning)
        self.loaded = asyncio.Event()
        self._loaded_end = 0  # the records before it were folded by load()
        self.skipped = 0
        self._applied = asyncio.Condition()
        self._published: dict[int, PolicySnapshot | None] = {}

    def _decoded(self, record: LogRecord) -> GuardrailChange | None:
        try:
            if record.value is None:
                raise ControlError("empty record")
            return decode_change(record.value)
        except ControlError as exc:
            self.skipped += 1
            log.warning(
                "policy control record at %s position %d skipped: %s",
                self._follower.name,
                record.offset,
                exc,
            )
            return None

    async def load(self) -> None:
        """Fold the log up to its end now, then apply each changed flow's guardrails."""
        follower = self._follower
        await follower.start()
        try:
            start, end = await bounded_range(follower)
            async for chunk in read_bounded(follower, start, end):
                for record in chunk.records:
                    change = self._decoded(record)
                    if change is not None:
                        self.state.fold(record.offset, change)
                    self.position = record.offset + 1
            self.position = max(self.position or 0, end.get(0, 0))
        finally:
            await follower.stop()
        for flow_id, rails in sorted(self.state.rails.items()):
            await self._apply(flow_id, rails, None)
        async with self._applied:
            self._loaded_end = self.position or 0
            self.loaded.set()
            self._applied.notify_all()
        log.info(
            "policy guardrail changes loaded",
            extra={
                "changes": sum(len(h) for h in self.state.history.values()),
                "flows": sorted(self.state.rails),
                "skipped": self.skipped,
            },
        )

    async def run(self) -> None:
        """Follow the log after :meth:`load`, applying every new change, until cancelled."""

        async def positions(partitions: list[int]) -> dict[int, int | None]:
            return {p: self.position for p in partitions}

        async def handle(records: list[LogRecord]) -> None:
            for record in records:
                change = self._decoded(record)
                published = None
                if change is not None:
                    rails = self.state.fold(record.offset, change)
                    log.info(
                        "policy guardrails changed",
                        extra={
                            "flow_id": change.flow_id,
                            "by": change.by,
                            "change": change.what(),
                            "reason": change.reason,
                            "guardrails": rails.to_dict(),
                            "position": record.offset,
                        },
                    )
                    try:
                        published = await self._apply(change.flow_id, rails, change)
                    except Exception:
                        log.exception(
                            "policy guardrails not applied", extra={"flow_id": change.flow_id}
                        )
                async with self._applied:  # the result, then the position: see applied()
                    self._published[record.offset] = published
                    self.position = record.offset + 1
                    while len(self._published) > KEPT_RESULTS:  # others' changes nobody awaits
                        del self._published[next(iter(self._published))]
                    self._applied.notify_all()

        await follow(self._follower, handle, positions, retry_on=self._retry_on, wait=self._wait)

    async def append(self, change: GuardrailChange) -> int:
        """Append ``change`` durably: its position in the log (applied later, by
        :meth:`run`, or by :meth:`load` when it runs after this)."""
        if self._writer is None:
            raise RuntimeError("this control feed has no writer")
        return await self._writer.append_control(change.flow_id, change.at, encode_change(change))

    async def applied(self, offset: int) -> PolicySnapshot | None:
        """Wait (unbounded: bound it with ``asyncio.wait_for``) until the record at
        ``offset`` is applied: the snapshot its application published, if any."""

        def done() -> bool:
            if offset in self._published or offset < (self.position or 0):
                return True  # applied (its result dropped if KEPT_RESULTS came after it)
            return self.loaded.is_set() and offset < self._loaded_end

        async with self._applied:
            await self._applied.wait_for(done)
            return self._published.pop(offset, None)

    async def record(
        self, change: GuardrailChange, wait_seconds: float = 15.0
    ) -> tuple[int, PolicySnapshot | None]:
        """Append ``change`` and wait until it is applied: (its position, the
        snapshot it published, if any). TimeoutError if the feed did not get to it."""
        offset = await self.append(change)
        return offset, await asyncio.wait_for(self.applied(offset), wait_seconds)


def guardrails_applier(
    scheduler_set: Callable[[str, Guardrails], Awaitable[PolicySnapshot | None]],
    installed: Callable[[str], PolicySnapshot | None],
    publish: Callable[[PolicySnapshot], Awaitable[object]],
    wall: Callable[[], float] = time.time,
    leading: Callable[[], bool] = lambda: True,
) -> Apply:
    """How a change reaches the processors: the schedule takes the guardrails (and
    republishes its snapshot with them, a new version). When the schedule has
    published nothing for the flow since this process started but a snapshot is
    installed (read back from the snapshots topic after a restart) with other
    guardrails, that snapshot is republished with the new ones as
    ``{version}~{position}``: the change reaches the processors now, not at the
    next fit. A standby (``leading()`` false) only takes the guardrails: the
    leader publishes (and a new leader republishes what its predecessor left
    unpublished, :mod:`app.policy`)."""
    counter = 0

    async def apply(
        flow_id: str, rails: Guardrails, change: GuardrailChange | None
    ) -> PolicySnapshot | None:
        nonlocal counter
        published = await scheduler_set(flow_id, rails)
        if published is not None or not leading():
            return published
        current = installed(flow_id)
        if current is None or current.guardrails == rails:
            return None
        counter += 1
        derived = dataclasses.replace(
            current,
            version=f"{current.version}~g{int(wall() * 1000)}.{counter}",
            created_at=max(wall(), current.created_at + 0.001),
            guardrails=rails,
        )
        await publish(derived)
        log.info(
            "policy snapshot guardrails published",
            extra={"flow_id": flow_id, "policy_version": derived.version},
        )
        return derived

    return apply


async def stop_task(task: asyncio.Task[None] | None) -> None:
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
