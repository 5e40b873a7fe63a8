"""One commands partition's worker: recover, then decide and commit batch after batch.

The :class:`~services.processor.engine.Engine` hands each record of the
``commands`` topic to the :class:`PartitionWorker` of its partition. A
worker owns everything of its partition: the fenced transactional writer,
the conversations' states (recovered from the changelog when the partition
is assigned) and a queue of commands. It decides the commands it holds as one
batch (:class:`~services.processor.batch.BatchDecider`) and commits the batch
(:class:`~services.processor.writer.PartitionWriter`); only then does it
apply the new states in memory and send the replies.

Failure is always the same move: **give up the uncommitted batch and decide it
again.** Nothing of an uncommitted batch is visible anywhere, and commands are
idempotent by their per-conversation seq, so a retry (after Redis or Kafka
come back), a rebalance (the next owner reads from the committed position) or
a kill -9 all converge on one history. This is also what bounds shutdown and
rebalances: a worker waits for its batch in hand at most ``drain_seconds``,
then abandons it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field

from services.log_follower import LogRecord, UnreadableLog
from services.processor.batch import BatchDecider, ReplyOut, state_records
from services.processor.metrics import ProcessorMetrics
from services.processor.recovery import Recovered
from services.processor.settings import EngineSettings
from services.processor.state_cache import StateCache
from services.processor.timers import PartitionTimers
from services.processor.writer import Fenced, PartitionWriter, WriteFailed

# The engine's logger, as before the worker had its own module: the log lines
# (their "logger" field) and any filter on it stay the same.
log = logging.getLogger("services.processor.engine")
SendReply = Callable[[ReplyOut], Awaitable[None]]
Recover = Callable[[int], Awaitable[Recovered]]


@dataclass
class PartitionWorker:
    """One commands partition: recover, then decide and commit batch after batch."""

    partition: int
    writer: PartitionWriter
    recover: Recover
    decider: BatchDecider
    send_reply: SendReply
    metrics: ProcessorMetrics
    settings: EngineSettings = field(default_factory=EngineSettings)
    clock: Callable[[], float] = time.monotonic
    timers: PartitionTimers | None = None  # the flows' durable timers (processor.timers)
    states: StateCache = field(default_factory=StateCache)  # recovery fills it
    queue: deque[LogRecord] = field(default_factory=deque)
    recovering: bool = True
    failed: str | None = None  # why the partition is out of service (an unreadable log)
    lost: bool = False  # fenced: another processor owns the partition now
    failing_since: float | None = None  # the current spell of failed batches
    next_offset: int | None = None  # after the last record queued
    position: int | None = None  # after the last record committed: the group's offset
    committed_batches: int = 0
    checkpoints: int = 0
    restarts: int = 0  # taken over again after an unexpected error
    dirty: set[bytes] = field(default_factory=set)  # states changed since the last checkpoint
    _last_events: int | None = None  # the last events offset committed: a checkpoint's marker
    _checkpointed_at: float = 0.0
    _stopping: bool = False
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"partition-{self.partition}")

    @property
    def ready(self) -> bool:
        return not self.recovering and self.failed is None and not self.lost

    def offer(self, record: LogRecord) -> None:
        if self.next_offset is not None and record.offset < self.next_offset:
            return  # fetched again after a seek: already queued or committed
        self.queue.append(record)
        self.next_offset = record.offset + 1
        self._wake.set()

    async def stop(self) -> None:
        """Finish the batch in hand within ``drain_seconds``, else abandon it
        (uncommitted: the next owner decides it again); then close the writer."""
        self._stopping = True
        self._wake.set()
        task = self._task
        drained = True
        if task is not None and not task.done():
            try:
                await asyncio.wait_for(asyncio.shield(task), self.settings.drain_seconds)
            except TimeoutError:
                drained = False
                log.warning("abandoning the batch in hand", extra={"partition": self.partition})
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self.timers is not None:
            await self.timers.stop()
        if drained:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._final_checkpoint(), self.settings.drain_seconds)
        await self.writer.stop()
        self.states.close()  # the partition's memory and spill file

    async def _run(self) -> None:
        """Take the partition over, then serve it. An unexpected error (a client
        library's state machine after a broker restart, say) does not leave the
        partition out of service until the next rebalance: the writer is stopped,
        and after a pause the partition is taken over again, fencing included, and
        its states recovered from the log (a batch that had committed is decided
        again as a duplicate: idempotent by seq). The crash starts a spell of
        failures, as a failed batch does, so a partition that crashes again and
        again counts as stuck for the stall watch. Fenced and an unreadable log
        still end the worker."""
        while not self._stopping:
            try:
                if await self._take_over():
                    await self._serve()
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                self.restarts += 1
                self.recovering = True
                self._failing()  # until a batch commits: a crash loop is a stuck partition
                log.exception(
                    "partition worker crashed: taking the partition over again",
                    extra={**self._extra, "restarts": self.restarts},
                )
                with contextlib.suppress(Exception):
                    await self.writer.stop()
                if self.timers is not None:
                    with contextlib.suppress(Exception):
                        await self.timers.stop()
                await self._pause()

    async def _take_over(self) -> bool:
        """Fence the previous owner, then recover the states; False: give up."""
        while not self._stopping:
            try:
                await self.writer.start()
                break
            except Fenced:
                self.lost = True
                return False
            except WriteFailed as exc:
                log.warning("writer not started, retrying: %s", exc, extra=self._extra)
                await self._pause()
        while not self._stopping:
            started = self.clock()
            try:
                recovered = await self.recover(self.partition)
            except UnreadableLog as exc:
                self.failed = str(exc)
                self.metrics.rejected.labels("unreadable_log").inc()
                log.error("partition out of service: %s", exc, extra=self._extra)
                return False
            except Exception as exc:  # Kafka away: try again
                log.warning("recovery failed, retrying: %r", exc, extra=self._extra)
                await self._pause()
                continue
            if recovered.states is not self.states:
                self.states.close()  # a crashed worker's earlier cache
            self.states = recovered.states
            self.dirty = set(recovered.caught_up)
            self._last_events = recovered.events_end - 1 if recovered.events_end > 0 else None
            self._checkpointed_at = self.clock()
            self.recovering = False
            if self.timers is not None:
                self.timers.recovered(self.states.states())
                self.timers.start()
            log.info(
                "partition recovered",
                extra={
                    **self._extra,
                    "conversations": len(self.states),
                    "in_memory": self.states.in_memory,
                    "timers": len(self.timers.queue) if self.timers is not None else 0,
                    "changelog_records": recovered.changelog_records,
                    "caught_up_events": recovered.caught_up_events,
                    "seconds": round(self.clock() - started, 3),
                },
            )
            return True
        return False

    async def _serve(self) -> None:
        while not self._stopping:
            if not self.queue:
                self._wake.clear()
                await self._wake.wait()
                continue
            batch = [self.queue[i] for i in range(min(len(self.queue), self.settings.max_batch))]
            done = await self._process(batch)
            for _ in range(done):
                self.queue.popleft()
            if done < len(batch) and not self.lost:
                await self._pause()

    async def _process(self, batch: Sequence[LogRecord]) -> int:
        """Decide, commit, apply, reply; returns how many records of ``batch`` are
        done (the rest: decided again later; nothing of them happened)."""
        output = await self.decider.decide(self.partition, batch, self.states)
        if output.blocked is not None:
            self._failed_batch("decide", output.blocked)
        if output.decided == 0:
            return 0
        checkpoint = self.clock() - self._checkpointed_at >= self.settings.checkpoint_seconds
        records = output.records
        if checkpoint and (self.dirty or output.states):
            records = records + state_records(
                self.dirty | output.states.keys(), output.states, self.states
            )
        else:
            checkpoint = False
        try:
            offsets = await self.writer.commit(records, self._last_events if checkpoint else None)
        except Fenced:
            self.lost = True
            self._stopping = True
            log.warning("fenced: another processor owns the partition now", extra=self._extra)
            return 0
        except WriteFailed as exc:
            self._failed_batch("commit", exc)
            return 0
        self.states.update(output.states)
        if self.timers is not None:
            self.timers.committed(output.states, output.replies)
        self._checkpointed(checkpoint, output.states.keys())
        if offsets:
            self._last_events = offsets[-1]
        self.position = output.next_offset
        self.committed_batches += 1
        if output.blocked is None:
            self.failing_since = None
        for reply in output.replies:
            try:
                await self.send_reply(reply)
            except Exception as exc:  # the visitor retries: idempotent by seq
                log.warning("reply not sent: %r", exc, extra=self._extra)
        return output.decided

    def _checkpointed(self, done: bool, changed: Iterable[bytes]) -> None:
        if done:
            self.dirty.clear()
            self._checkpointed_at = self.clock()
            self.checkpoints += 1
        else:
            self.dirty.update(changed)

    async def _final_checkpoint(self) -> None:
        """On a graceful stop or revoke: the changed states, so that the next owner
        has nothing to catch up. Best effort: the catch-up covers a failure."""
        if self.recovering or self.lost or self.failed is not None or not self.dirty:
            return
        records = state_records(self.dirty, {}, self.states)
        try:
            await self.writer.commit(records, self._last_events)
        except (Fenced, WriteFailed) as exc:
            log.info("no checkpoint at stop: %s", type(exc).__name__, extra=self._extra)
            return
        self._checkpointed(True, ())

    def _failing(self) -> None:
        """A spell of failures starts (if none is on): the stall watch counts it
        until a batch commits again."""
        if self.failing_since is None:
            self.failing_since = self.clock()

    def _failed_batch(self, step: str, exc: Exception) -> None:
        self._failing()
        self.metrics.rejected.labels(f"batch_{step}_failed").inc()
        log.warning(
            "batch not %s, retrying: %s",
            "decided" if step == "decide" else "committed",
            type(exc).__name__,
            extra={**self._extra, "detail": str(exc)[:200]},
        )

    async def _pause(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop_requested(), self.settings.retry_seconds)

    async def _stop_requested(self) -> None:
        while not self._stopping:
            self._wake.clear()
            await self._wake.wait()

    @property
    def _extra(self) -> dict[str, object]:
        return {"partition": self.partition}
