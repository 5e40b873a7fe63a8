"""The embedded mode's feed of the reward ledger: the log's history, then live events.

The distributed mode's policy service reads the ``events`` topic instead
(:mod:`app.policy`); both feed the same :class:`~policy.rewards.RewardLedger`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence

from policy.rewards import RewardLedger
from schemas.events import Event
from services.ports import LoggedEvent

log = logging.getLogger("leadflow.policy.log_feed")

ReadAfter = Callable[[int, int], Awaitable[list[LoggedEvent]]]


async def last_position(read_after: ReadAfter) -> int:
    """The log's last position (0 when empty), by bisection over ``read_after(p, 1)``
    (empty exactly when ``p`` is at or past the end): a few dozen indexed reads."""
    if not await read_after(0, 1):
        return 0
    low, high = 0, 1  # read_after(low) has events, read_after(high) maybe not
    while await read_after(high, 1):
        low, high = high, high * 2
    while high - low > 1:
        middle = (low + high) // 2
        if await read_after(middle, 1):
            low = middle
        else:
            high = middle
    return high


class LogFeed:
    """Feeds a ledger from the log's history up to ``end`` (read in pages, in the
    background) and from the conversation service's ``on_events`` listener: what
    the listener hands over while the history is read waits in a buffer, so that
    every conversation's events reach the ledger once and in order."""

    def __init__(self, ledger: RewardLedger, page: int = 5_000) -> None:
        self.ledger = ledger
        self.page = page
        self.loaded = asyncio.Event()
        self.events = 0
        self._buffer: list[Event] = []

    def on_events(self, events: Sequence[Event]) -> None:
        if self.loaded.is_set():
            self.ledger.observe(events)
            self.events += len(events)
        else:
            self._buffer.extend(events)

    async def load(self, read_after: ReadAfter, end: int) -> None:
        """Fold the log's positions 1..``end`` (what was there before serving began)."""
        started = time.monotonic()
        position = 0
        while position < end:
            logged = await read_after(position, self.page)
            if not logged:
                break
            self.ledger.observe(e.event for e in logged if e.position <= end)
            self.events += len(logged)
            position = logged[-1].position
            self.ledger.expire()  # by the log's own time: it is read in order
            await asyncio.sleep(0)  # serving goes on meanwhile
        buffered, self._buffer = self._buffer, []
        self.ledger.observe(buffered)
        self.events += len(buffered)
        self.loaded.set()
        log.info(
            "policy ledger loaded from the event log",
            extra={
                "events": self.events,
                "seconds": round(time.monotonic() - started, 2),
                "open_conversations": self.ledger.open_conversations(),
                "outcomes": {
                    f"{k.flow_id}@{k.flow_version}": c.trials()
                    for k, c in self.ledger.flows.items()
                },
            },
        )
