"""The delivery worker's reading half: follow the event log into the store.

A :class:`LogIntake` is the handler of :func:`services.log_follow.follow`:
each poll's records are decoded (``decode`` turns a record into its events:
one event per SQLite row, an event batch per Kafka record), folded with the
stored states of their conversations (:func:`services.delivery.intake.take_in`),
each new lead framed by ``framing`` (the payload's non-personal inputs, fixed
at intake), and written back with the new deliveries and the positions after
the records, in one atomic :meth:`~services.delivery.store.DeliveryStore.take_in`. A
restart reads on from those positions; reading a stretch twice creates
nothing twice.

Given ``history`` (a log that can be read by conversation: the embedded mode's
events.db), the intake keeps no states: a lead's conversation is read from the
log when the lead arrives (:func:`~services.delivery.intake.leads_in`), and a
stretch without new deliveries only moves the positions, stored at most every
``position_seconds`` (a restart may then read up to that much again, which
creates nothing twice). At human pace this leaves deliveries.db untouched by
the commands that capture no lead, rather than rewriting a state per command.

A record this version cannot read stops the intake (raised out of ``follow``):
skipping it could skip a lead. The worker reports itself unready with the
record's place, and an upgraded worker reads on from there.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence

from schemas.events import Event
from services.delivery.config import Destination
from services.delivery.intake import Framing, leads_in, take_in, wanted_histories
from services.delivery.metrics import DeliveryMetrics
from services.delivery.model import Delivery
from services.delivery.store import DeliveryStore
from services.log_follow import next_positions
from services.log_follower import LogRecord, UnreadableLog

log = logging.getLogger("leadflow.delivery")

DecodeRecord = Callable[[LogRecord], Sequence[Event]]
ReadConversation = Callable[[str], Awaitable[Sequence[Event]]]


class LogIntake:
    def __init__(
        self,
        store: DeliveryStore,
        decode: DecodeRecord,
        destinations: Mapping[tuple[str, str], Destination],
        metrics: DeliveryMetrics,
        *,
        framing: Framing,
        clock: Callable[[], float] = time.time,
        on_new: Callable[[], None] | None = None,
        history: ReadConversation | None = None,
        position_seconds: float = 1.0,
    ) -> None:
        self.store = store
        self.decode = decode
        self.by_site: dict[str, list[Destination]] = {}
        for dest in destinations.values():
            self.by_site.setdefault(dest.site_id, []).append(dest)
        self.metrics = metrics
        self.framing = framing
        self.clock = clock
        self.on_new = on_new
        self.history = history
        self.position_seconds = position_seconds
        self._unsaved: dict[int, int] = {}  # positions read past, not stored yet
        self._saved_at = float("-inf")
        self.since: float | None = None
        self.failed: UnreadableLog | None = None
        self.records = 0
        self.caught_up = asyncio.Event()  # a poll came back empty: the log's end was reached

    async def positions(self, partitions: list[int]) -> dict[int, int | None]:
        """Where to read from; the first call ever also fixes when the store began
        delivering (before anything is read, so a lead captured after the start
        is never taken for history)."""
        if self.since is None:
            self.since = await self.store.deliver_since(self.clock())
        stored = await self.store.positions()
        return {p: stored.get(p) for p in partitions}

    async def handle(self, records: list[LogRecord]) -> None:
        if not records:
            self.caught_up.set()
            if self._unsaved and self.clock() - self._saved_at >= self.position_seconds:
                await self._save([])  # the log went quiet: store where it ended
            return
        if self.since is None:
            self.since = await self.store.deliver_since(self.clock())
        events: list[Event] = []
        for record in records:
            if record.value is None:
                continue  # a tombstone: nothing happened
            try:
                events.extend(self.decode(record))
            except UnreadableLog as exc:
                self.failed = exc
                self.metrics.log_errors.inc()
                log.error("delivery stopped at an unreadable record: %s", exc)
                raise
        if self.history is None:
            new = await self._take_in_states(events, records)
        else:
            new = await self._take_in_leads(events, records, self.history)
        self.records += len(records)
        if new:
            self.metrics.created.inc(new)
            if self.on_new is not None:
                self.on_new()

    async def _take_in_states(self, events: list[Event], records: list[LogRecord]) -> int:
        assert self.since is not None
        cids = list(dict.fromkeys(e.conversation_id for e in events))
        known = await self.store.states(cids)
        intake = take_in(events, known, self.by_site, self.since, self.clock(), self.framing)
        return await self.store.take_in(intake.states, intake.deliveries, next_positions(records))

    async def _take_in_leads(
        self, events: list[Event], records: list[LogRecord], history: ReadConversation
    ) -> int:
        assert self.since is not None
        histories = {
            cid: await history(cid) for cid in wanted_histories(events, self.by_site, self.since)
        }
        now = self.clock()
        deliveries = leads_in(events, histories, self.by_site, self.since, now, self.framing)
        self._unsaved.update(next_positions(records))
        if not deliveries and now - self._saved_at < self.position_seconds:
            return 0
        return await self._save(deliveries)

    async def _save(self, deliveries: list[Delivery]) -> int:
        new = await self.store.take_in({}, deliveries, self._unsaved)
        self._unsaved = {}
        self._saved_at = self.clock()
        return new
