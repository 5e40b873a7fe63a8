"""The conversation service shell over in-memory fakes: persistence, restarts, caching."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import orjson
import pytest

from policy.uniform import UniformPolicy
from schemas.commands import Command, PressButton, Resume, StartConversation, SubmitLead
from schemas.events import ConversationCompleted, Event, LeadCaptured, event_id
from schemas.replies import Reply
from services.catalog import FlowCatalog
from services.conversation.sealing import AesGcmSealer
from services.conversation.service import (
    ConversationService,
    InProcessCommandBus,
    KeyedLocks,
    StateCache,
)
from services.conversation.state import ConversationState, fold
from services.fakes import InMemoryEventLog, InMemoryKeyStore
from services.ports import LoggedEvent
from tests.unit.flows import quiz

LEAD = {"name": "Ann", "email": "ann@example.com", "consent": "true"}


def start(cid: str, seq: int = 1, flow_id: str = "quiz") -> StartConversation:
    return StartConversation(
        conversation_id=cid, seq=seq, at=10.0, flow_id=flow_id, site_id="site", reply_to="gw"
    )


def press(cid: str, seq: int, node: str, button: str) -> PressButton:
    return PressButton(conversation_id=cid, seq=seq, at=10.0 + seq, node_id=node, button_id=button)


def lead(cid: str, seq: int) -> SubmitLead:
    return SubmitLead(conversation_id=cid, seq=seq, at=10.0 + seq, node_id="contact", fields=LEAD)


def script(cid: str) -> list[Command]:
    """A whole conversation: start, small, red, a valid lead (ends at end_lead)."""
    return [
        start(cid),
        press(cid, 2, "size", "small"),
        press(cid, 3, "colour", "red"),
        lead(cid, 4),
    ]


class FlakyLog(InMemoryEventLog):
    """An in-memory log whose appends fail while ``down`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False

    async def append(self, events: Sequence[Event], command: Command | None = None) -> None:
        if self.down:
            raise OSError("disk on fire")
        await super().append(events, command)


class World:
    """A log, a key store and a catalog shared by the services of one test."""

    def __init__(self) -> None:
        self.log = FlakyLog()
        self.keys = InMemoryKeyStore()
        self.catalog = FlowCatalog([quiz()])
        self.notified: list[list[Event]] = []

    def service(self, cache_size: int = 100) -> ConversationService:
        return ConversationService(
            self.log,
            self.keys,
            self.catalog,
            UniformPolicy(),
            cache_size=cache_size,
            on_events=lambda events: self.notified.append(list(events)),
        )

    async def events(self, cid: str) -> list[Event]:
        return await self.log.read_conversation(cid)


async def run_all(service: ConversationService, commands: Sequence[Command]) -> list[Reply]:
    return [await service.handle(command) for command in commands]


async def test_whole_conversation_runs_to_the_end_and_is_logged() -> None:
    """Start to end through the service must log a complete, contiguous conversation."""
    world = World()
    replies = await run_all(world.service(), script("c1"))
    assert [r.error for r in replies] == [None] * 4
    assert [r.ack for r in replies] == [1, 2, 3, 4]
    assert replies[-1].messages[-1].node_id == "end_lead"
    assert replies[-1].messages[-1].done
    events = await world.events("c1")
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    completed = events[-1]
    assert isinstance(completed, ConversationCompleted)
    assert completed.lead_captured


async def test_lead_is_sealed_with_the_key_from_the_key_store() -> None:
    """The logged lead must open with the conversation's stored key and no other."""
    world = World()
    await run_all(world.service(), script("c1"))
    (captured,) = [e for e in await world.events("c1") if isinstance(e, LeadCaptured)]
    key = await world.keys.get("c1")
    assert key is not None
    opened = orjson.loads(AesGcmSealer(key).open(captured.sealed, captured.id))
    assert opened == {"consent": "true", "email": "ann@example.com", "name": "Ann"}


async def test_duplicate_command_appends_nothing_and_replies_the_same() -> None:
    """A retried command must neither append events nor notify listeners again."""
    world = World()
    service = world.service()
    commands = script("c1")[:2]
    replies = await run_all(service, commands)
    logged = await world.events("c1")
    notified = len(world.notified)
    again = await service.handle(commands[1])
    assert again == replies[1]
    assert await world.events("c1") == logged
    assert len(world.notified) == notified


async def test_listener_receives_exactly_the_appended_events() -> None:
    """on_events must get each command's events, in log order, and nothing else."""
    world = World()
    await run_all(world.service(), script("c1"))
    flattened = [e for batch in world.notified for e in batch]
    assert flattened == await world.events("c1")
    assert len(world.notified) == 4


async def test_fresh_service_over_the_same_log_continues_after_restart() -> None:
    """A restarted process must rebuild state from the log and carry on at the next seq."""
    world = World()
    commands = script("c1")
    first = await run_all(world.service(), commands[:3])
    restarted = world.service()
    assert await restarted.handle(commands[2]) == first[2]  # the retry is still a duplicate
    reply = await restarted.handle(commands[3])
    assert (reply.error, reply.ack) == (None, 4)
    events = await world.events("c1")
    assert [e.id for e in events] == [event_id("c1", n) for n in range(1, len(events) + 1)]
    assert (await restarted.state("c1")).status == "completed"


async def test_started_conversation_keeps_its_flow_version() -> None:
    """Publishing v2 must not move a conversation started on v1; new ones get v2."""
    world = World()
    service = world.service()
    await service.handle(start("old"))
    world.catalog.add(quiz(2))
    reply = await service.handle(press("old", 2, "size", "small"))
    assert reply.messages[0].text == "Which colour (v1)?"
    await service.handle(start("new"))
    assert (await service.state("new")).flow_version == 2


async def test_start_of_unknown_flow_is_refused_and_logs_nothing() -> None:
    """A start for a flow not in the catalog must reply unknown_flow with an empty log."""
    world = World()
    reply = await world.service().handle(start("c1", flow_id="nope"))
    assert reply.error is not None
    assert reply.error.code == "unknown_flow"
    assert await world.events("c1") == []
    assert world.notified == []


async def test_failing_append_replies_unavailable_and_does_not_advance() -> None:
    """If the log is down the reply must be a retryable ``unavailable`` and state unchanged."""
    world = World()
    service = world.service()
    await service.handle(start("c1"))
    world.log.down = True
    reply = await service.handle(press("c1", 2, "size", "small"))
    assert reply.error is not None
    assert (reply.error.code, reply.error.retryable) == ("unavailable", True)
    assert reply.ack == 1
    assert (await service.state("c1")).last_command_seq == 1
    assert len(world.notified) == 1
    world.log.down = False
    retried = await service.handle(press("c1", 2, "size", "small"))
    assert (retried.error, retried.ack) == (None, 2)


async def test_state_is_refolded_from_the_log_after_cache_eviction() -> None:
    """With a one-entry cache, interleaved conversations must still see their own state."""
    world = World()
    service = world.service(cache_size=1)
    a, b = script("a"), script("b")
    for step in range(4):
        assert (await service.handle(a[step])).ack == step + 1
        assert (await service.handle(b[step])).ack == step + 1
    for cid in ("a", "b"):
        rebuilt = fold(ConversationState(cid), await world.events(cid))
        assert await service.state(cid) == rebuilt
        assert rebuilt.status == "completed"


async def test_resume_through_the_bus_re_sends_the_transcript() -> None:
    """The in-process bus must hand commands to the service; resume changes nothing."""
    world = World()
    bus = InProcessCommandBus(world.service())
    await bus.send(start("c1"))
    reply = await bus.send(Resume(conversation_id="c1", at=20.0, after_seq=0))
    assert [m.node_id for m in reply.messages] == ["welcome", "intro", "size"]
    assert len(await world.events("c1")) == 4


def test_state_cache_evicts_the_least_recently_used() -> None:
    """A full cache must drop the state used longest ago, not the one just read."""
    cache = StateCache(2)
    cache.put(ConversationState("a"))
    cache.put(ConversationState("b"))
    assert cache.get("a") is not None  # "a" is now the most recent
    cache.put(ConversationState("c"))
    assert len(cache) == 2
    assert cache.get("b") is None
    assert cache.get("a") == ConversationState("a")
    assert cache.get("c") is not None


def test_state_cache_put_replaces_an_existing_state() -> None:
    """Putting a newer state of a cached conversation must replace it, not grow the cache."""
    cache = StateCache(2)
    cache.put(ConversationState("a"))
    cache.put(ConversationState("a", seq=5))
    assert len(cache) == 1
    cached = cache.get("a")
    assert cached is not None
    assert cached.seq == 5


async def test_keyed_locks_serialise_one_key_and_drop_released_keys() -> None:
    """Commands of one conversation must run one at a time; idle keys must not leak."""
    locks = KeyedLocks()
    order: list[str] = []
    first_inside = asyncio.Event()
    release_first = asyncio.Event()

    async def first() -> None:
        async with locks.hold("k"):
            order.append("first-in")
            first_inside.set()
            await release_first.wait()
            order.append("first-out")

    async def second() -> None:
        await first_inside.wait()
        async with locks.hold("k"):
            order.append("second-in")

    tasks = [asyncio.create_task(first()), asyncio.create_task(second())]
    await first_inside.wait()
    for _ in range(3):
        await asyncio.sleep(0)
    assert order == ["first-in"]
    assert len(locks) == 1
    release_first.set()
    await asyncio.gather(*tasks)
    assert order == ["first-in", "first-out", "second-in"]
    assert len(locks) == 0


async def test_keyed_locks_do_not_block_other_keys_and_release_on_error() -> None:
    """Another conversation must not wait; an exception must still release the lock."""
    locks = KeyedLocks()
    async with locks.hold("a"):
        async with asyncio.timeout(1):
            async with locks.hold("b"):
                assert len(locks) == 2
    with pytest.raises(RuntimeError, match="boom"):
        async with locks.hold("a"):
            raise RuntimeError("boom")
    assert len(locks) == 0
    async with asyncio.timeout(1), locks.hold("a"):
        pass


async def test_in_memory_log_ignores_already_logged_event_ids() -> None:
    """Appending the same events twice (at-least-once writers) must not duplicate them."""
    world = World()
    await world.service().handle(start("c1"))
    events = await world.events("c1")
    await world.log.append(events)
    assert await world.events("c1") == events
    page = await world.log.read_after(0, 2)
    assert page == [LoggedEvent(1, events[0]), LoggedEvent(2, events[1])]


async def test_keys_are_created_only_for_submitted_leads() -> None:
    """A conversation without a lead submission leaves no key behind; a lead refused
    as invalid gets one, because the command journal seals its fields with it."""
    keys = InMemoryKeyStore()
    service = ConversationService(InMemoryEventLog(), keys, FlowCatalog([quiz()]), UniformPolicy())
    await run_all(service, script("c1")[:3])
    assert await keys.get("c1") is None
    bad = SubmitLead(
        conversation_id="c1",
        seq=4,
        at=14.0,
        node_id="contact",
        fields={"email": "nope", "consent": "true"},
    )
    reply = await service.handle(bad)
    assert reply.error is not None and reply.error.code == "invalid_lead"
    key = await keys.get("c1")
    assert key is not None
    await service.handle(lead("c1", 5))
    assert await keys.get("c1") == key


async def test_replies_echo_the_request_id_and_reply_to() -> None:
    """A gateway matches replies to requests by request_id, also for errors and duplicates."""
    service = ConversationService(
        InMemoryEventLog(), InMemoryKeyStore(), FlowCatalog([quiz()]), UniformPolicy()
    )
    first = await service.handle(
        StartConversation(
            conversation_id="c1",
            seq=1,
            at=1.0,
            flow_id="quiz",
            site_id="s",
            reply_to="3",
            request_id="r-1",
        )
    )
    again = await service.handle(
        StartConversation(
            conversation_id="c1",
            seq=1,
            at=1.0,
            flow_id="quiz",
            site_id="s",
            reply_to="3",
            request_id="r-2",
        )
    )
    bad = await service.handle(
        PressButton(
            conversation_id="c1", seq=2, at=2.0, node_id="size", button_id="nope", request_id="r-3"
        )
    )
    assert (first.request_id, first.reply_to) == ("r-1", "3")
    assert again.request_id == "r-2" and again.messages == first.messages
    assert bad.request_id == "r-3" and bad.error is not None


class CountingLog(FlakyLog):
    """Counts the conversations read back from the log."""

    def __init__(self) -> None:
        super().__init__()
        self.reads: list[str] = []

    async def read_conversation(self, conversation_id: str) -> list[Event]:
        self.reads.append(conversation_id)
        return await super().read_conversation(conversation_id)


async def test_a_fresh_start_is_not_read_from_the_log_and_any_other_start_is() -> None:
    """A start whose id the gateway just minted (``fresh``) cannot have events:
    its state is not read back. A start named by a ``start_id`` may be a retry of
    one already applied, so it is read, and answered with the first session."""
    world = World()
    world.log = CountingLog()
    service = world.service()
    fresh = StartConversation(
        conversation_id="minted", seq=1, at=10.0, flow_id="quiz", site_id="site", fresh=True
    )
    assert (await service.handle(fresh)).error is None
    assert world.log.reads == []
    retried = start("named")
    first = await service.handle(retried)
    assert world.log.reads == ["named"]
    again = await world.service().handle(retried)  # another service: an empty cache
    assert world.log.reads == ["named", "named"]
    assert again.messages == first.messages
    assert [e.type for e in await world.events("named")].count("ConversationStarted") == 1
