"""The embedded projector: follows the SQLite event log into the read models.

It is notified after each append but never relies on the notification: it
reads the log from its stored position, so after a crash it catches up on
whatever was appended but not yet projected.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from projector.sqlite_store import SqliteReadModel
from services.ports import EventLog

log = logging.getLogger(__name__)
BATCH = 500


class EmbeddedProjector:
    def __init__(self, events: EventLog, store: SqliteReadModel, idle_poll: float = 1.0) -> None:
        self._events = events
        self._store = store
        self._idle_poll = idle_poll
        self._wakeup = asyncio.Event()
        self._stopping = False
        self.position = 0

    def notify(self) -> None:
        self._wakeup.set()

    def stop(self) -> None:
        self._stopping = True
        self._wakeup.set()

    async def catch_up(self) -> int:
        """Project everything appended so far; returns how many events were applied."""
        applied = 0
        while True:
            batch = await self._events.read_after(self.position, BATCH)
            if not batch:
                return applied
            await self._store.apply(batch)
            self.position = batch[-1].position
            applied += len(batch)

    async def run(self) -> None:
        self.position = await self._store.position()
        while not self._stopping:
            self._wakeup.clear()
            try:
                await self.catch_up()
            except Exception:
                log.exception("projection failed; retrying")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), self._idle_poll)
        await self.catch_up()
