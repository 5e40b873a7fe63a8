"""The embedded server's durable timers (issue 19): a queue of the pending
timers of the conversations it serves, rebuilt from the SQLite log at start
(the conversations active within the longest declared timer of the log's
newest event), and a runner that fires due ones through the conversation
service and pushes their messages to the visitor's socket, if it is open."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from schemas.commands import FireTimer
from services.catalog import FlowCatalog
from services.conversation.service import ConversationService
from services.conversation.timer_runner import TimerRunner
from services.conversation.timers import Timer, TimerQueue, timer_horizon
from services.embedded.sqlite_eventlog import SqliteEventLog
from services.pushes import Pushes

log = logging.getLogger(__name__)


class EmbeddedTimers:
    def __init__(
        self,
        service: ConversationService,
        events: SqliteEventLog,
        catalog: FlowCatalog,
        pushes: Pushes,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.queue = TimerQueue()
        service.timers = self.queue
        self._service = service
        self._events = events
        self._catalog = catalog
        self._pushes = pushes
        self._clock = clock
        self.runner = TimerRunner(self.queue, self._fire, clock=clock)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="timers")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        horizon = timer_horizon(self._catalog.versions())
        if horizon > 0:
            started = time.monotonic()
            conversations = await self._events.conversations_active_within(horizon)
            scheduled = await self._service.schedule_timers(conversations)
            log.info(
                "timers recovered from the log",
                extra={
                    "conversations": scheduled,
                    "looked_at": len(conversations),
                    "seconds": round(time.monotonic() - started, 3),
                },
            )
        await self.runner.run()

    async def _fire(self, timer: Timer, reply_to: str) -> bool:
        command = FireTimer(
            conversation_id=timer.conversation_id,
            at=self._clock(),
            timer=timer.timer,
            for_seq=timer.for_seq,
            reply_to=reply_to,
        )
        reply = await self._service.handle(command)
        if reply.error is not None and reply.error.retryable:
            return False  # the log is away: tried again later
        self._pushes.push(reply)
        return True
