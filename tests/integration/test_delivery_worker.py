"""The delivery worker over in-memory fakes: the log intake creates one delivery
per lead and destination, the dispatcher sends, retries, disables, defers and
never sends an erased lead."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import orjson

from policy.uniform import UniformPolicy
from schemas.codec import encode
from schemas.events import Event, decode_event
from services.catalog import FlowCatalog
from services.conversation.service import ConversationService
from services.delivery.config import Destination
from services.delivery.dispatcher import Dispatcher, DispatchSettings
from services.delivery.log_intake import LogIntake
from services.delivery.memory_store import MemoryDeliveryStore
from services.delivery.metrics import DeliveryMetrics
from services.delivery.model import Delivery
from services.delivery.payload import framing
from services.delivery.schedule import Result, deferred
from services.fakes import InMemoryEventLog, InMemoryKeyStore
from services.log_follower import LogRecord
from tests.unit.flows import quiz
from tests.unit.test_service import script

HOOK = Destination("site", "crm", "webhook", url="https://crm.example/hook", concurrency=2)
SLACK = Destination("site", "team", "slack", url="https://hooks.slack.example/x")
OTHER = Destination("other", "crm", "webhook", url="https://other.example/hook")
DESTINATIONS = {d.key: d for d in (HOOK, SLACK, OTHER)}
DELIVERED = Result("delivered", 200)


class Clock:
    def __init__(self, now: float = 5.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class ScriptedSender:
    """Answers with the queued results (then ``default``); records every call."""

    def __init__(self, default: Result = DELIVERED) -> None:
        self.default = default
        self.queue: list[Result] = []
        self.calls: list[tuple[str, dict[str, Any], bytes]] = []
        self.gate: asyncio.Event | None = None

    async def send(
        self,
        destination: Destination,
        delivery: Delivery,
        payload: Mapping[str, Any],
        body: bytes,
        now: float,
    ) -> Result:
        self.calls.append((delivery.id, dict(payload), body))
        if self.gate is not None:
            await self.gate.wait()
        return self.queue.pop(0) if self.queue else self.default

    async def close(self) -> None:
        return None


class Rig:
    """``history``: the intake reads a lead's conversation from the log (as in
    the embedded mode) instead of keeping every conversation's state."""

    def __init__(
        self,
        destinations: Mapping[tuple[str, str], Destination] = DESTINATIONS,
        history: bool = False,
    ) -> None:
        self.clock = Clock()
        self.keys = InMemoryKeyStore()
        self.log = InMemoryEventLog()
        self.catalog = FlowCatalog([quiz()])
        self.service = ConversationService(self.log, self.keys, self.catalog, UniformPolicy())
        self.store = MemoryDeliveryStore()
        self.metrics = DeliveryMetrics()
        self.hook, self.slack = ScriptedSender(), ScriptedSender()
        self.intake = LogIntake(
            self.store,
            self._decode,
            destinations,
            self.metrics,
            framing=framing(self.catalog, "https://leads.example"),
            clock=self.clock,
            history=self.log.read_conversation if history else None,
        )
        self.dispatcher = Dispatcher(
            self.store,
            destinations,
            {"webhook": self.hook, "slack": self.slack},
            self.keys,
            self.catalog,
            "https://leads.example",
            self.metrics,
            DispatchSettings(max_in_flight=10),
            clock=self.clock,
            rng=random.Random(1),
        )
        self.offset = 0

    @staticmethod
    def _decode(record: LogRecord) -> list[Event]:
        assert record.value is not None
        return [decode_event(record.value)]

    async def converse(self, cid: str) -> None:
        for command in script(cid):
            await self.service.handle(command)

    def records(self, start: int = 0) -> list[LogRecord]:
        events = self.log._events[start:]
        return [
            LogRecord(0, start + i, encode(e), e.conversation_id.encode(), e.at)
            for i, e in enumerate(events)
        ]

    async def take_in_log(self) -> None:
        records = self.records(self.offset)
        self.offset += len(records)
        await self.intake.handle(records)

    async def settle(self) -> None:
        await self.dispatcher.dispatch_once()
        while self.dispatcher.tasks:
            await asyncio.gather(*self.dispatcher.tasks)


async def test_a_lead_becomes_one_delivery_per_destination_of_its_site_and_is_sent() -> None:
    rig = Rig()
    await rig.converse("c1")
    await rig.take_in_log()
    assert sorted(d.destination for d in rig.store.deliveries.values()) == ["crm", "team"]
    assert all(d.site_id == "site" for d in rig.store.deliveries.values())
    await rig.settle()
    assert {d.status for d in rig.store.deliveries.values()} == {"delivered"}
    (call,) = rig.hook.calls
    payload = call[1]
    assert payload["data"]["contact"] == {"email": "ann@example.com", "name": "Ann"}
    assert payload["data"]["consent"]["given"] is True
    assert payload["data"]["consent"]["text"] == "I agree"
    assert [a["answer_id"] for a in payload["data"]["answers"]] == ["small", "red"]
    assert payload["data"]["transcript_url"] == "https://leads.example/api/v1/conversations/c1"
    assert orjson.loads(call[2]) == payload
    assert len(rig.slack.calls) == 1


async def test_reading_the_log_again_creates_nothing_twice_and_completed_states_are_forgotten() -> (
    None
):
    rig = Rig()
    await rig.converse("c1")
    await rig.intake.handle(rig.records())
    await rig.intake.handle(rig.records())
    assert len(rig.store.deliveries) == 2
    assert "c1" not in rig.store.kept  # the conversation completed
    assert rig.store.offsets == {0: len(rig.log._events)}


def unsealed(deliveries: Mapping[str, Delivery]) -> dict[str, Delivery]:
    """Without the sealed contact details (each rig seals with keys of its own)."""
    return {
        k: replace(d, lead=replace(d.lead, sealed=d.lead.sealed[:0])) for k, d in deliveries.items()
    }


async def test_an_intake_reading_histories_creates_the_same_deliveries_and_keeps_no_state() -> None:
    keeping, reading = Rig(), Rig(history=True)
    for rig in (keeping, reading):
        for cid in ("c1", "c2", "c3"):
            await rig.converse(cid)
        for command in script("open")[:2]:  # started, one answer, no lead yet
            await rig.service.handle(command)
        for record in rig.records():  # one at a time: a lead's start is long taken in
            await rig.intake.handle([record])
    assert len(reading.store.deliveries) == 6  # 3 leads x 2 destinations of "site"
    assert unsealed(reading.store.deliveries) == unsealed(keeping.store.deliveries)
    assert all(d.lead.answers for d in reading.store.deliveries.values())
    assert list(keeping.store.kept) == ["open"]
    assert reading.store.kept == {}


async def test_reading_history_positions_are_stored_with_new_deliveries_or_every_second() -> None:
    rig = Rig(history=True)
    await rig.converse("c1")
    records = rig.records()
    lead_at = next(i for i, r in enumerate(records) if r.value and b"LeadCaptured" in r.value)
    await rig.intake.handle(records[:1])
    assert rig.store.offsets == {0: 1}  # the first stretch is stored at once
    rig.clock.now += 0.5
    await rig.intake.handle(records[1:lead_at])
    assert rig.store.offsets == {0: 1}  # nothing new, and stored 0.5 s ago
    await rig.intake.handle(records[lead_at : lead_at + 1])
    assert rig.store.offsets == {0: lead_at + 1} and len(rig.store.deliveries) == 2
    await rig.intake.handle(records[lead_at + 1 :])
    await rig.intake.handle([])  # a quiet log within the second stores nothing
    assert rig.store.offsets == {0: lead_at + 1}
    rig.clock.now += 1.0
    await rig.intake.handle([])  # quiet for a second: where the log ended is stored
    assert rig.store.offsets == {0: len(records)}
    await rig.intake.handle(records)  # read again after a restart: nothing twice
    assert len(rig.store.deliveries) == 2


async def test_leads_captured_before_the_store_began_delivering_are_not_sent() -> None:
    rig = Rig()
    await rig.converse("old")
    rig.store.since = 10**12  # the store began delivering long after
    await rig.take_in_log()
    assert rig.store.deliveries == {}


async def test_a_failed_attempt_is_retried_later_with_the_same_body() -> None:
    rig = Rig({HOOK.key: HOOK})
    rig.hook.queue = [Result("retry", 503, "HTTP 503")]
    await rig.converse("c1")
    await rig.take_in_log()
    await rig.settle()
    (delivery,) = rig.store.deliveries.values()
    assert delivery.status == "pending" and delivery.next_at > rig.clock.now
    await rig.settle()
    assert len(rig.hook.calls) == 1  # not due yet
    rig.clock.now = delivery.next_at
    await rig.settle()
    assert [c[2] for c in rig.hook.calls] == [rig.hook.calls[0][2]] * 2
    (delivery,) = rig.store.deliveries.values()
    assert delivery.status == "delivered"
    assert [a.outcome for a in delivery.attempts] == ["retry", "delivered"]


async def test_410_gone_kills_the_delivery_and_disables_the_destination() -> None:
    rig = Rig({HOOK.key: HOOK})
    rig.hook.queue = [Result("gone", 410, "410 Gone")]
    await rig.converse("c1")
    await rig.converse("c2")
    await rig.take_in_log()
    rig.hook.gate = asyncio.Event()
    await rig.dispatcher.dispatch_once()  # both start (concurrency 2)
    rig.hook.gate.set()
    await asyncio.gather(*rig.dispatcher.tasks)
    assert await rig.store.disabled() == {("site", "crm"): "410 Gone"}
    statuses = sorted((d.status, d.reason) for d in rig.store.deliveries.values())
    assert statuses[0] == ("dead", "destination_gone")


async def test_a_disabled_destination_dead_letters_its_due_deliveries_without_an_attempt() -> None:
    rig = Rig({HOOK.key: HOOK})
    await rig.store.disable("site", "crm", "410 Gone", 0.0)
    await rig.converse("c1")
    await rig.take_in_log()
    await rig.settle()
    assert rig.hook.calls == []
    (delivery,) = rig.store.deliveries.values()
    assert (delivery.status, delivery.reason) == ("dead", "destination_disabled")


async def test_an_erased_lead_is_never_sent() -> None:
    rig = Rig({HOOK.key: HOOK})
    await rig.converse("c1")
    await rig.take_in_log()
    await rig.keys.delete("c1")
    await rig.settle()
    assert rig.hook.calls == []
    (delivery,) = rig.store.deliveries.values()
    assert (delivery.status, delivery.reason) == ("erased", "lead_erased")


async def test_a_destination_at_its_concurrency_limit_holds_the_rest_claimed() -> None:
    rig = Rig({HOOK.key: HOOK})  # concurrency 2
    for i in range(3):
        await rig.converse(f"c{i}")
    await rig.take_in_log()
    rig.hook.gate = asyncio.Event()
    started = await rig.dispatcher.dispatch_once()
    assert started == 2
    assert rig.dispatcher.held_count() == 1  # kept, not tried and not written back
    assert await rig.store.claim_due(rig.clock.now, 10, 60.0) == []  # no one else takes it
    rig.hook.gate.set()
    await asyncio.gather(*rig.dispatcher.tasks)
    await rig.settle()  # the freed slot starts the held one
    assert rig.dispatcher.held_count() == 0
    assert {d.status for d in rig.store.deliveries.values()} == {"delivered"}
    assert len(rig.hook.calls) == 3


async def test_a_worker_claims_no_more_than_it_has_room_for() -> None:
    rig = Rig({HOOK.key: HOOK})
    rig.dispatcher.settings = DispatchSettings(max_in_flight=3)
    for i in range(6):
        await rig.converse(f"c{i}")
    await rig.take_in_log()
    rig.hook.gate = asyncio.Event()
    await rig.dispatcher.dispatch_once()
    assert len(rig.dispatcher.tasks) + rig.dispatcher.held_count() == 3
    assert len(await rig.store.claim_due(rig.clock.now, 10, 60.0)) == 3  # left for others
    rig.hook.gate.set()
    await asyncio.gather(*rig.dispatcher.tasks)


async def test_a_held_delivery_goes_back_to_the_store_before_its_claim_runs_out() -> None:
    rig = Rig({HOOK.key: HOOK})
    for i in range(3):
        await rig.converse(f"c{i}")
    await rig.take_in_log()
    rig.hook.gate = asyncio.Event()
    await rig.dispatcher.dispatch_once()
    rig.clock.now += rig.dispatcher.settings.hold_seconds + 1.0  # the slots stay busy
    (queue,) = rig.dispatcher.held.values()
    ((delivery, _),) = queue
    await rig.dispatcher._start_held(rig.clock.now)
    assert rig.dispatcher.held_count() == 0
    assert rig.store.claims.get(delivery.id) is None  # handed back, claimable again
    await rig.dispatcher.dispatch_once()  # claimed afresh, held again
    (queue,) = rig.dispatcher.held.values()
    assert [since for _, since in queue] == [rig.clock.now]
    rig.hook.gate.set()
    await asyncio.gather(*rig.dispatcher.tasks)


async def test_an_open_circuit_holds_only_its_own_destination() -> None:
    rig = Rig({HOOK.key: HOOK, OTHER.key: OTHER})
    rig.hook.default = Result("retry", None, "connection refused")
    await rig.converse("c1")
    await rig.take_in_log()
    for _ in range(5):  # five failures in a row open the circuit
        (delivery,) = [d for d in rig.store.deliveries.values() if d.status == "pending"]
        rig.clock.now = max(rig.clock.now, delivery.next_at)
        await rig.settle()
    assert rig.dispatcher.breakers.is_open(HOOK.key, rig.clock.now)
    calls = len(rig.hook.calls)
    (delivery,) = rig.store.deliveries.values()
    await rig.store.save(deferred(delivery, rig.clock.now))  # due while the circuit is open
    await rig.settle()
    assert len(rig.hook.calls) == calls  # deferred without an attempt
    (delivery,) = rig.store.deliveries.values()
    circuit = rig.dispatcher.breakers.circuits[HOOK.key]
    assert delivery.next_at == circuit.open_until
    rig.clock.now = circuit.open_until  # half-open: one probe goes through
    rig.hook.default = Result("delivered", 200)
    await rig.settle()
    assert len(rig.hook.calls) == calls + 1
    assert not rig.dispatcher.breakers.is_open(HOOK.key, rig.clock.now)
    assert not rig.dispatcher.breakers.is_open(OTHER.key, rig.clock.now)


async def test_a_destination_removed_from_the_sites_file_dead_letters_with_a_reason() -> None:
    rig = Rig({HOOK.key: HOOK})
    await rig.converse("c1")
    await rig.take_in_log()
    rig.dispatcher.destinations = {}
    await rig.settle()
    (delivery,) = rig.store.deliveries.values()
    assert (delivery.status, delivery.reason) == ("dead", "destination_removed")


async def test_an_erased_lead_as_the_half_open_probe_does_not_wedge_the_circuit() -> None:
    rig = Rig({HOOK.key: HOOK})
    rig.hook.default = Result("retry", None, "connection refused")
    for i in range(6):
        await rig.converse(f"c{i}")
    await rig.take_in_log()
    breakers = rig.dispatcher.breakers
    for _ in range(5):
        breakers.failed(HOOK.key, rig.clock.now)
    assert breakers.is_open(HOOK.key, rig.clock.now)
    rig.clock.now = breakers.circuits[HOOK.key].open_until
    for cid in (f"c{i}" for i in range(6)):
        await rig.keys.delete(cid)  # the probe will be an erased lead
    await rig.settle()
    assert not breakers.circuits[HOOK.key].probing  # the erased probe settled it
    assert breakers.allows(HOOK.key, rig.clock.now) is None  # the next one may probe


def test_failures_in_flight_when_the_circuit_opens_do_not_lengthen_its_rest() -> None:
    from services.delivery.breaker import Breakers

    breakers = Breakers(threshold=5, open_seconds=30.0, max_open_seconds=600.0)
    for _ in range(8):  # three more were in flight when the fifth opened it
        breakers.failed(("s", "d"), 100.0)
    assert breakers.circuits[("s", "d")].open_until == 130.0
    assert breakers.allows(("s", "d"), 130.0) is None  # the probe
    breakers.failed(("s", "d"), 131.0)  # a failed probe doubles the rest
    assert breakers.circuits[("s", "d")].open_until == 191.0
    assert breakers.allows(("s", "d"), 191.0) is None
    breakers.succeeded(("s", "d"))
    assert not breakers.is_open(("s", "d"), 191.0)
