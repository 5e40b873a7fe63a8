"""The embedded mode's feed of the reward ledger: the log's history, then live events.

The history is read through a :class:`~services.log_follower.LogFollower` of
the SQLite log (``SqliteLogFollower``: events.db read-only, on a connection
of its own), bounded by the end the log had when serving began; live events
come from the conversation service's ``on_events`` listener, in process and
in order, so nothing polls the file while serving.

The distributed mode's policy service follows the ``events`` topic instead
(:mod:`policy.events_feed`); both feed the same
:class:`~policy.rewards.RewardLedger`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

from policy.rewards import RewardLedger
from schemas.events import Event, decode_event
from services.log_follower import (
    LogFollower,
    LogRecord,
    UnreadableLog,
    bounded_range,
    decode_record,
    read_bounded,
)

log = logging.getLogger("leadflow.policy.log_feed")


class LogFeed:
    """Feeds a ledger from the log's history (read in pages, in the background)
    and from the conversation service's ``on_events`` listener: what the
    listener hands over while the history is read waits in a buffer, so that
    every conversation's events reach the ledger once and in order.

    :meth:`begin` notes where the history ends (call it before serving:
    everything appended later reaches the listener); :meth:`load` reads it.
    An unreadable record of the history is skipped, logged with its position
    and counted in ``skipped``."""

    def __init__(self, ledger: RewardLedger, page: int = 5_000) -> None:
        self.ledger = ledger
        self.page = page
        self.loaded = asyncio.Event()
        self.events = 0
        self.skipped = 0
        self._buffer: list[Event] = []
        self._history: tuple[LogFollower, dict[int, int], dict[int, int]] | None = None

    def on_events(self, events: Sequence[Event]) -> None:
        if self.loaded.is_set():
            self.ledger.observe(events)
            self.events += len(events)
        else:
            self._buffer.extend(events)

    async def begin(self, follower: LogFollower) -> None:
        """Start ``follower`` (not started) and note the log's end now: the
        history :meth:`load` reads."""
        await follower.start()
        try:
            start, end = await bounded_range(follower)
        except BaseException:
            await follower.stop()
            raise
        self._history = (follower, start, end)

    async def load(self) -> None:
        """Fold the history, then the events the listener buffered meanwhile;
        stops the follower."""
        if self._history is None:
            raise RuntimeError("LogFeed.load before begin")
        follower, start, end = self._history
        started = time.monotonic()
        try:
            async for chunk in read_bounded(follower, start, end, self.page):
                self.ledger.observe(self._decoded(follower.name, chunk.records))
                self.ledger.expire()  # by the log's own time: it is read in order
                await asyncio.sleep(0)  # serving goes on meanwhile
        finally:
            await follower.stop()
        buffered, self._buffer = self._buffer, []
        self.ledger.observe(buffered)
        self.events += len(buffered)
        self.loaded.set()
        log.info(
            "policy ledger loaded from the event log",
            extra={
                "events": self.events,
                "skipped": self.skipped,
                "seconds": round(time.monotonic() - started, 2),
                "open_conversations": self.ledger.open_conversations(),
                "outcomes": {
                    f"{k.flow_id}@{k.flow_version}": c.trials()
                    for k, c in self.ledger.flows.items()
                },
            },
        )

    async def close(self) -> None:
        """Stop the history's follower, if a load was cut short (idempotent)."""
        if self._history is not None:
            await self._history[0].stop()

    def _decoded(self, name: str, records: Sequence[LogRecord]) -> list[Event]:
        events: list[Event] = []
        for record in records:
            try:
                events.append(decode_record(name, record, decode_event))
            except UnreadableLog as exc:
                self.skipped += 1
                log.warning("unreadable event skipped: %s", exc, extra={"offset": exc.offset})
        self.events += len(events)
        return events
