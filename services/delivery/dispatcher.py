"""The delivery worker's sending half: claim due deliveries and try them.

Every ``tick`` (or at once when the intake created deliveries) the
dispatcher claims the deliveries that are due from the store, as many as it
has free slots, and starts one attempt task each. Before an attempt:

- a destination disabled by a ``410 Gone`` (or removed from the sites file)
  makes the delivery a dead letter that names why (``leadflow deliveries
  retry`` sends it again once the destination is back);
- a destination already at its ``concurrency`` limit keeps the delivery
  *held* in this worker (still claimed) and starts it when a slot frees; an
  open circuit puts it off in the store until the circuit half-opens. Either
  way no attempt is made, so one slow or dead endpoint holds at most its own
  slots and never another destination's. A worker claims no more than it has
  room for (``max_in_flight`` less what it runs and holds).

An attempt opens the contact details with the conversation's key in memory
only (an erased key: the lead is never sent, the delivery ends ``erased``),
builds the payload from the lead, its frame (fixed at intake: the same bytes
on every attempt; a delivery stored without one is framed with this worker's
catalog and ``public_url``) and those details, hands it to the destination
type's sender, and stores what came of it (:func:`services.delivery.schedule.after_attempt`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import orjson

from services.catalog import FlowCatalog
from services.conversation.sealing import AesGcmSealer, Unsealable
from services.delivery.breaker import Breakers
from services.delivery.config import Destination
from services.delivery.metrics import DeliveryMetrics
from services.delivery.model import Delivery
from services.delivery.payload import framed_payload, framing, payload_bytes
from services.delivery.schedule import Result, RetrySchedule, after_attempt, deferred
from services.delivery.senders import ATTEMPT_TIMEOUT_SECONDS, Sender
from services.delivery.store import DeliveryStore
from services.ports import KeyStore

log = logging.getLogger("leadflow.delivery")


@dataclass(frozen=True, slots=True)
class DispatchSettings:
    max_in_flight: int = 200  # attempts at once, all destinations
    tick_seconds: float = 0.25  # how often due deliveries are looked for
    lease_seconds: float = 2 * ATTEMPT_TIMEOUT_SECONDS + 5.0  # a claim outlives an attempt
    hold_seconds: float = ATTEMPT_TIMEOUT_SECONDS  # a claimed delivery waits for a slot, at most
    circuit_threshold: int = 5  # failures in a row that open a destination's circuit
    circuit_open_seconds: float = 30.0  # the first open spell; doubles, up to 20 times that
    schedule: RetrySchedule = field(default_factory=RetrySchedule)


class Dispatcher:
    def __init__(
        self,
        store: DeliveryStore,
        destinations: Mapping[tuple[str, str], Destination],
        senders: Mapping[str, Sender],
        keys: KeyStore,
        catalog: FlowCatalog,
        public_url: str,
        metrics: DeliveryMetrics,
        settings: DispatchSettings = DispatchSettings(),
        *,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.store = store
        self.destinations = destinations
        self.senders = senders
        self.keys = keys
        self.catalog = catalog
        self.public_url = public_url
        self.metrics = metrics
        self.settings = settings
        self.clock = clock
        self.rng = rng or random.Random()
        self.breakers = Breakers(
            settings.circuit_threshold,
            settings.circuit_open_seconds,
            settings.circuit_open_seconds * 20,
        )
        self.in_flight: dict[tuple[str, str], int] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        # claimed, waiting for a slot of their destination (the claim keeps others off)
        self.held: dict[tuple[str, str], deque[tuple[Delivery, float]]] = {}
        self.off: dict[tuple[str, str], str] = {}
        self._wake = asyncio.Event()
        self._stopping = False

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        """Until :meth:`stop`: claim what is due and try it."""
        while not self._stopping:
            self._wake.clear()  # before the round: a wake during it is not lost
            try:
                await self.dispatch_once()
            except Exception as exc:  # the store is away: try again next tick
                log.warning("claiming due deliveries failed: %r", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.settings.tick_seconds)

    async def stop(self, drain_seconds: float = 5.0) -> None:
        """Stop claiming; hand back what is held (its claims are cleared) and give
        the attempts in flight ``drain_seconds`` (an abandoned one is tried again
        when its claim expires)."""
        self._stopping = True
        self._wake.set()
        for queue in self.held.values():
            while queue:
                delivery, _ = queue.popleft()
                with contextlib.suppress(Exception):
                    await self.store.save(delivery)
        if self.tasks:
            _, pending = await asyncio.wait(set(self.tasks), timeout=drain_seconds)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    def held_count(self) -> int:
        return sum(len(queue) for queue in self.held.values())

    async def dispatch_once(self) -> int:
        """Start what this worker holds where a slot freed, then claim what is due
        (no more than it has room for); returns how many attempts started."""
        now = self.clock()
        started = await self._start_held(now)
        room = self.settings.max_in_flight - len(self.tasks) - self.held_count()
        if room <= 0:
            return started
        self.off = await self.store.disabled()
        claimed = await self.store.claim_due(now, room, self.settings.lease_seconds)
        for delivery in claimed:
            if await self._admit(delivery, now):
                started += 1
        return started

    async def _admit(self, delivery: Delivery, now: float) -> bool:
        """A claimed delivery: dead letter, put off, held for a slot, or started."""
        key = (delivery.site_id, delivery.destination)
        dest = self.destinations.get(key)
        if dest is None or key in self.off:
            reason = "destination_removed" if dest is None else "destination_disabled"
            await self.store.save(replace(delivery, status="dead", reason=reason))
            self.metrics.dead.labels(delivery.kind, reason).inc()
            return False
        if self.in_flight.get(key, 0) >= dest.concurrency or self.held.get(key):
            # the destination is busy: keep the claim and start it when a slot frees
            self.held.setdefault(key, deque()).append((delivery, now))
            self.metrics.deferred.labels(dest.kind, "busy").inc()
            return False
        return await self._start(dest, delivery, now)

    async def _start(self, dest: Destination, delivery: Delivery, now: float) -> bool:
        wait_until = self.breakers.allows(dest.key, now)
        if wait_until is not None:
            self.metrics.deferred.labels(dest.kind, "circuit_open").inc()
            await self.store.save(deferred(delivery, wait_until))
            return False
        self.in_flight[dest.key] = self.in_flight.get(dest.key, 0) + 1
        task = asyncio.create_task(self._attempt(dest, delivery), name=f"deliver-{delivery.id}")
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return True

    async def _start_held(self, now: float) -> int:
        """Held deliveries whose destination has a free slot start, oldest first; one
        held past ``hold_seconds`` goes back to the store (its claim would run out
        before its attempt ended)."""
        started = 0
        for key in list(self.held):
            queue = self.held[key]
            dest = self.destinations.get(key)
            while queue and (dest is None or self.in_flight.get(key, 0) < dest.concurrency):
                delivery, held_since = queue.popleft()
                if dest is None or now - held_since > self.settings.hold_seconds:
                    await self.store.save(delivery)  # due again, unclaimed
                elif await self._start(dest, delivery, now):
                    started += 1
            while queue and now - queue[0][1] > self.settings.hold_seconds:
                await self.store.save(queue.popleft()[0])  # oldest first: held in order
            if not self.held[key]:
                del self.held[key]
        return started

    async def _attempt(self, dest: Destination, delivery: Delivery) -> None:
        key = dest.key
        started = self.clock()
        try:
            result = await self._try(dest, delivery, started)
            seconds = max(0.0, self.clock() - started)
            done = after_attempt(
                delivery, result, started, seconds, self.settings.schedule, self.rng
            )
            await self._record(dest, done, result, seconds)
        except Exception:
            self.breakers.settled(key)  # a trial that ended nowhere is no verdict
            log.exception("delivery attempt failed", extra={"delivery_id": delivery.id})
        finally:
            self.in_flight[key] -= 1
            if not self.in_flight[key]:
                del self.in_flight[key]
            self._wake.set()  # a slot is free

    async def _try(self, dest: Destination, delivery: Delivery, now: float) -> Result:
        contact = await self._open(delivery)
        if contact is None:
            return Result("erased", None, "the lead was erased before it was delivered")
        lead = delivery.lead
        framed = delivery.frame
        if framed is None:  # stored before frames: framed now, as it always was then
            framed = framing(self.catalog, self.public_url)(lead)
        payload: dict[str, Any] = framed_payload(lead, framed, contact)
        sender = self.senders[dest.kind]
        return await sender.send(dest, delivery, payload, payload_bytes(payload), now)

    async def _open(self, delivery: Delivery) -> dict[str, str] | None:
        """The contact details, in memory only; None when the key was erased."""
        lead = delivery.lead
        key = await self.keys.get(lead.conversation_id)
        if key is None:
            return None
        try:
            opened = orjson.loads(AesGcmSealer(key).open(lead.sealed, lead.event_id))
        except Unsealable:
            return None
        return {str(k): str(v) for k, v in opened.items()}

    async def _record(
        self, dest: Destination, done: Delivery, result: Result, seconds: float
    ) -> None:
        now = self.clock()
        self.metrics.attempts.labels(dest.kind, result.outcome).inc()
        self.metrics.attempt_seconds.labels(dest.kind).observe(seconds)
        if result.outcome == "delivered":
            self.breakers.succeeded(dest.key)
            self.metrics.latency.labels(dest.kind).observe(max(0.0, now - done.lead.captured_at))
        elif result.outcome in ("retry", "gone"):
            self.breakers.failed(dest.key, now)
        else:  # erased: says nothing of the receiver
            self.breakers.settled(dest.key)
        if result.outcome == "gone":
            await self.store.disable(dest.site_id, dest.name, result.detail, now)
            log.warning(
                "destination disabled: the receiver answered 410 Gone",
                extra={"site_id": dest.site_id, "destination": dest.name},
            )
        if done.status == "dead":
            self.metrics.dead.labels(dest.kind, done.reason).inc()
        await self.store.save(done)
