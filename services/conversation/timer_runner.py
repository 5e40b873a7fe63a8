"""The imperative shell of durable timers: fire what a :class:`TimerQueue` has due.

One runner per process that holds conversation states (the embedded server;
each partition of a processor). It sleeps until the soonest timer (at most
``max_sleep``, so timers added meanwhile are not late by more), then hands the
due ones to ``fire`` a few at a time. Firing goes through the decider like
any command (:class:`~schemas.commands.FireTimer`), which is what makes the
whole thing at least once and idempotent: a timer whose firing failed is put
back and tried again ``retry_seconds`` later; one fired twice changes nothing
the second time.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from services.conversation.timers import Timer, TimerQueue

log = logging.getLogger(__name__)
Fire = Callable[[Timer, str], Awaitable[bool]]
"""Fire one timer (with the gateway that last served its visitor, if known);
False when it was not fired and must be tried again."""


class TimerRunner:
    def __init__(
        self,
        queue: TimerQueue,
        fire: Fire,
        *,
        clock: Callable[[], float] = time.time,
        max_sleep: float = 1.0,
        retry_seconds: float = 5.0,
        concurrency: int = 32,
    ) -> None:
        self.queue = queue
        self._fire = fire
        self._clock = clock
        self._max_sleep = max_sleep
        self._retry = retry_seconds
        self._concurrency = concurrency
        self.fired = 0
        self.retried = 0

    async def run(self) -> None:
        """Until cancelled."""
        while True:
            await self.fire_due()
            now = self._clock()
            soonest = self.queue.next_due()
            delay = self._max_sleep if soonest is None else soonest - now
            await asyncio.sleep(min(max(delay, 0.005), self._max_sleep))

    async def fire_due(self) -> int:
        """Fire every timer due now; how many were fired."""
        fired = 0
        while True:
            due = self.queue.pop_due(self._clock(), limit=self._concurrency)
            if not due:
                return fired
            results = await asyncio.gather(*(self._one(timer) for timer in due))
            fired += sum(results)

    async def _one(self, timer: Timer) -> bool:
        reply_to = self.queue.reply_to(timer.conversation_id)
        try:
            done = await self._fire(timer, reply_to)
        except Exception:
            log.exception("timer not fired", extra={"conversation_id": timer.conversation_id})
            done = False
        if done:
            self.fired += 1
            return True
        self.retried += 1
        retry = Timer(
            self._clock() + self._retry, timer.conversation_id, timer.timer, timer.for_seq
        )
        self.queue.retry(retry)
        return False
