"""Durable timers of one commands partition (issue 19, item 3).

The partition's worker holds every conversation state of its partition; this
keeps their pending timers (:class:`~services.conversation.timers.TimerQueue`),
rebuilt from the recovered states when the partition is assigned (after a
kill -9 or a rebalance: the queue itself is never stored), updated from each
committed batch's states. A due timer is fired by writing a
:class:`~schemas.commands.FireTimer` command to the partition's own commands
partition with the worker's fenced writer: it is then decided in order with
the visitor's commands, by whoever owns the partition, and a zombie can fire
nothing. Firing twice (a crash between the write and the decision, two owners
in a rebalance) changes nothing the second time: the decider fires a timer
only for the state it was scheduled for.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Mapping

from schemas.codec import encode
from schemas.commands import FireTimer
from services.catalog import FlowCatalog
from services.conversation.state import ConversationState
from services.conversation.timer_runner import TimerRunner
from services.conversation.timers import Timer, TimerQueue, pending_timers
from services.processor.batch import Out, ReplyOut
from services.processor.writer import Fenced, PartitionWriter, WriteFailed

log = logging.getLogger(__name__)


class PartitionTimers:
    def __init__(
        self,
        catalog: FlowCatalog,
        writer: PartitionWriter,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._catalog = catalog
        self._writer = writer
        self._clock = clock
        self.queue = TimerQueue()
        self.runner = TimerRunner(self.queue, self._fire, clock=clock)
        self._task: asyncio.Task[None] | None = None

    def recovered(self, states: Iterable[ConversationState]) -> int:
        """Schedule the timers of a partition's recovered states; how many have some."""
        for state in states:
            self._schedule(state, "")
        return len(self.queue)

    def committed(
        self, states: Mapping[bytes, ConversationState], replies: Iterable[ReplyOut]
    ) -> None:
        """A batch committed: its changed states' timers replace their old ones."""
        reply_to = {reply.key: str(reply.partition) for reply in replies}
        for key, state in states.items():
            self._schedule(state, reply_to.get(key, ""))

    def _schedule(self, state: ConversationState, reply_to: str) -> None:
        if state.status != "active":
            self.queue.discard(state.conversation_id)
            return
        flow = self._catalog.get(state.flow_id, state.flow_version)
        if flow is not None and flow.timers.any:
            self.queue.set(state.conversation_id, pending_timers(state, flow), reply_to)

    def start(self) -> None:
        self._task = asyncio.create_task(self.runner.run(), name="partition-timers")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _fire(self, timer: Timer, reply_to: str) -> bool:
        command = FireTimer(
            conversation_id=timer.conversation_id,
            at=self._clock(),
            timer=timer.timer,
            for_seq=timer.for_seq,
            reply_to=reply_to,
        )
        key = timer.conversation_id.encode()
        try:
            await self._writer.commit([Out("command", key, encode(command))])
        except Fenced:
            return True  # not ours any more: the new owner schedules it again
        except WriteFailed as exc:
            log.info(
                "timer not written, retrying: %s", exc, extra={"partition": self._writer.partition}
            )
            return False
        return True
