"""A delivery worker: the log intake, the dispatcher and their housekeeping.

``run`` follows the event log into the store (:class:`LogIntake`) and, side by
side, sends what is due (:class:`Dispatcher`); every ``refresh_seconds`` it
refreshes the gauges from the store (pending, oldest pending age, dead
letters, disabled destinations) and forgets the states of conversations
abandoned for ``forget_after`` seconds. Both modes run this one class: the
embedded mode on the SQLite log and store, the distributed mode on a Kafka
consumer group and Redis (several workers share the partitions and the due
set).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from services.delivery.dispatcher import Dispatcher
from services.delivery.log_intake import LogIntake
from services.delivery.metrics import DeliveryMetrics
from services.delivery.store import DeliveryStore
from services.log_follow import follow
from services.log_follower import LogFollower

log = logging.getLogger("leadflow.delivery")


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    refresh_seconds: float = 5.0
    forget_after: float = 8 * 86400.0  # a conversation untouched this long is abandoned
    poll_wait: float = 0.1
    retry_seconds: float = 1.0
    drain_seconds: float = 5.0


class DeliveryWorker:
    def __init__(
        self,
        follower: LogFollower,
        intake: LogIntake,
        dispatcher: Dispatcher,
        store: DeliveryStore,
        metrics: DeliveryMetrics,
        settings: WorkerSettings = WorkerSettings(),
        *,
        retry_on: tuple[type[BaseException], ...] = (OSError,),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.follower = follower
        self.intake = intake
        self.dispatcher = dispatcher
        self.store = store
        self.metrics = metrics
        self.settings = settings
        self.retry_on = retry_on
        self.clock = clock
        self.following = False
        self.stopping = asyncio.Event()
        intake.on_new = dispatcher.wake

    @property
    def failure(self) -> str | None:
        """Why the worker cannot go on (an unreadable record), None when it can."""
        return str(self.intake.failed) if self.intake.failed is not None else None

    async def run(self) -> None:
        """Until :meth:`stop`. The intake stopping at an unreadable record does
        not stop the dispatcher: leads already taken in are still sent."""
        tasks = [
            asyncio.create_task(self._follow(), name="delivery-intake"),
            asyncio.create_task(self.dispatcher.run(), name="delivery-dispatch"),
            asyncio.create_task(self._housekeeping(), name="delivery-housekeeping"),
        ]
        try:
            await self.stopping.wait()
        finally:
            await self.dispatcher.stop(self.settings.drain_seconds)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def stop(self) -> None:
        self.stopping.set()

    async def _follow(self) -> None:
        self.following = True
        try:
            await follow(
                self.follower,
                self.intake.handle,
                self.intake.positions,
                stopping=self.stopping,
                retry_on=self.retry_on,
                retry_seconds=self.settings.retry_seconds,
                wait=self.settings.poll_wait,
            )
        except asyncio.CancelledError:
            raise
        except Exception:
            if self.intake.failed is None:
                log.exception("the delivery intake stopped")
        finally:
            self.following = False

    async def _housekeeping(self) -> None:
        last_forget = 0.0
        while True:
            with contextlib.suppress(Exception):
                await self.refresh()
                now = self.clock()
                if now - last_forget >= 3600.0:
                    forgot = await self.store.forget_states_before(now - self.settings.forget_after)
                    last_forget = now
                    if forgot:
                        log.info("forgot %d abandoned conversations", forgot)
            await asyncio.sleep(self.settings.refresh_seconds)

    async def refresh(self) -> None:
        """The gauges, from the store."""
        summary = await self.store.summary()
        now = self.clock()
        oldest = summary.oldest_pending_at
        self.metrics.oldest_pending.set(0.0 if oldest is None else max(0.0, now - oldest))
        self.metrics.pending.set(summary.counts.get("pending", 0))
        self.metrics.dead_letters.set(summary.counts.get("dead", 0))
        self.metrics.disabled.clear()
        for site, dest in await self.store.disabled():
            self.metrics.disabled.labels(site, dest).set(1)
        self.metrics.circuit_open.set(
            sum(
                1
                for key in self.dispatcher.breakers.circuits
                if self.dispatcher.breakers.is_open(key, now)
            )
        )
