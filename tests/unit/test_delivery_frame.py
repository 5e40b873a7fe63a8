"""A delivery's body is the same bytes on every attempt, across restarts.

The payload's non-personal inputs (the transcript link's public URL, the
flow's texts) are fixed in the delivery's frame when the intake creates it; a
worker restarted on another public URL, or one whose catalog lacks the flow
version, re-sends the very body it sent before under the same ``webhook-id``.
The contact details stay sealed: opened at send time, and an erased key still
ends the delivery ``erased``. Everything here is in memory.
"""

from __future__ import annotations

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
from services.delivery.dispatcher import Dispatcher
from services.delivery.log_intake import LogIntake
from services.delivery.memory_store import MemoryDeliveryStore
from services.delivery.metrics import DeliveryMetrics
from services.delivery.model import Delivery, decode_delivery, encode_delivery
from services.delivery.payload import framing
from services.delivery.schedule import Result
from services.fakes import InMemoryEventLog, InMemoryKeyStore
from services.log_follower import LogRecord
from tests.unit.flows import quiz
from tests.unit.test_service import script

HOOK = Destination("site", "crm", "webhook", url="https://crm.example/hook")
FIRST_URL = "http://127.0.0.1:41001"
SEALED_FIELDS = ("Ann", "ann@example.com")


class Recorder:
    """Answers ``retry`` once, then ``delivered``; keeps every body it was given."""

    def __init__(self) -> None:
        self.bodies: list[tuple[str, bytes]] = []

    async def send(
        self,
        destination: Destination,
        delivery: Delivery,
        payload: Mapping[str, Any],
        body: bytes,
        now: float,
    ) -> Result:
        self.bodies.append((delivery.id, body))
        if len(self.bodies) == 1:
            return Result("retry", 503, "busy")
        return Result("delivered", 200)

    async def close(self) -> None:
        return None


class World:
    """One captured lead taken in by a worker whose public URL is ``FIRST_URL``."""

    def __init__(self) -> None:
        self.now = 10.0
        self.keys = InMemoryKeyStore()
        self.log = InMemoryEventLog()
        self.store = MemoryDeliveryStore()
        self.sender = Recorder()
        self.service = ConversationService(
            self.log, self.keys, FlowCatalog([quiz()]), UniformPolicy()
        )

    def clock(self) -> float:
        return self.now

    async def capture(self, cid: str) -> None:
        for command in script(cid):
            await self.service.handle(command)
        records = [
            LogRecord(0, i, encode(e), e.conversation_id.encode(), e.at)
            for i, e in enumerate(self.log._events)
        ]
        intake = LogIntake(
            self.store,
            _decode,
            {HOOK.key: HOOK},
            DeliveryMetrics(),
            framing=framing(FlowCatalog([quiz()]), FIRST_URL),
            clock=self.clock,
        )
        await intake.handle(records)

    def worker(self, public_url: str, catalog: FlowCatalog) -> Dispatcher:
        """A (re)started worker: its own public URL and catalog, the same store."""
        return Dispatcher(
            self.store,
            {HOOK.key: HOOK},
            {"webhook": self.sender},
            self.keys,
            catalog,
            public_url,
            DeliveryMetrics(),
            clock=self.clock,
            rng=random.Random(1),
        )

    async def attempt(self, dispatcher: Dispatcher) -> None:
        self.now += 3600.0  # past any retry delay
        assert await dispatcher.dispatch_once() == 1
        for task in list(dispatcher.tasks):
            await task


def _decode(record: LogRecord) -> list[Event]:
    assert record.value is not None
    return [decode_event(record.value)]


def _transcript_url(body: bytes) -> str:
    url: str = orjson.loads(body)["data"]["transcript_url"]
    return url


async def test_a_retry_after_a_restart_on_another_port_sends_the_same_bytes() -> None:
    world = World()
    await world.capture("c1")
    await world.attempt(world.worker("http://127.0.0.1:41002", FlowCatalog([quiz()])))
    # restarted on another port, and without the flow version in its catalog
    await world.attempt(world.worker("http://127.0.0.1:41003", FlowCatalog()))
    (first_id, first), (second_id, second) = world.sender.bodies
    assert first_id == second_id and first == second
    assert _transcript_url(first) == f"{FIRST_URL}/api/v1/conversations/c1"
    assert orjson.loads(first)["data"]["flow"]["title"] == quiz().title
    (done,) = world.store.deliveries.values()
    assert done.status == "delivered"


async def test_the_frame_holds_no_contact_details_and_an_erased_lead_is_not_sent() -> None:
    world = World()
    await world.capture("c1")
    (stored,) = world.store.deliveries.values()
    assert stored.frame is not None
    record = encode_delivery(stored)
    assert not any(value.encode() in record for value in SEALED_FIELDS)
    assert decode_delivery(record) == stored  # the frame round-trips
    await world.keys.delete("c1")
    await world.attempt(world.worker(FIRST_URL, FlowCatalog([quiz()])))
    assert world.sender.bodies == []
    assert world.store.deliveries[stored.id].status == "erased"


async def test_a_delivery_stored_without_a_frame_is_framed_at_send_time() -> None:
    world = World()
    await world.capture("c1")
    (stored,) = world.store.deliveries.values()
    record: dict[str, Any] = orjson.loads(encode_delivery(stored))
    del record["delivery"]["frame"]  # as written before frames existed
    world.store.deliveries[stored.id] = old = decode_delivery(orjson.dumps(record))
    assert old.frame is None and old == replace(stored, frame=None)
    await world.attempt(world.worker("https://leads.example", FlowCatalog([quiz()])))
    ((_, body),) = world.sender.bodies
    assert _transcript_url(body) == "https://leads.example/api/v1/conversations/c1"
