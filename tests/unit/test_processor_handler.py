"""The processor's command handler, without faust or Kafka: fakes for the topics."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from policy.uniform import UniformPolicy
from schemas.batches import EventBatch, decode_batch
from schemas.codec import encode
from schemas.commands import Command, PressButton, StartConversation
from schemas.replies import Reply, decode_reply
from services.catalog import FlowCatalog
from services.conversation.state_codec import decode_state
from services.fakes import InMemoryKeyStore
from services.processor.handler import CommandHandler, marker_key
from services.tracing import Headers
from tests.unit.flows import quiz


class FakeTopics:
    """events and replies topics: records kept in order; delivery is held until released."""

    def __init__(self) -> None:
        self.events: dict[int, list[tuple[bytes, bytes]]] = {}
        self.replies: list[tuple[int, Reply]] = []
        self.event_headers: list[Headers] = []  # trace context of each record, in order
        self.reply_headers: list[Headers] = []
        self.gate = asyncio.Event()
        self.gate.set()

    async def send_events(
        self, key: bytes, value: bytes, partition: int, headers: Headers = ()
    ) -> Awaitable[int]:
        log = self.events.setdefault(partition, [])
        log.append((key, value))
        self.event_headers.append(headers)
        offset = len(log) - 1

        async def delivered() -> int:
            await self.gate.wait()
            return offset

        return delivered()

    async def send_reply(
        self, key: bytes, value: bytes, partition: int, headers: Headers = ()
    ) -> None:
        self.replies.append((partition, decode_reply(value)))
        self.reply_headers.append(headers)

    async def read_after(self, partition: int, offset: int) -> list[tuple[int, EventBatch]]:
        log = self.events.get(partition, [])
        return [(i, decode_batch(v)) for i, (_, v) in enumerate(log) if i > offset]


def run_now(write: Callable[[], None]) -> None:
    write()


def make(topics: FakeTopics, table: dict[bytes, bytes] | None = None) -> CommandHandler:
    return CommandHandler(
        table={} if table is None else table,
        catalog=FlowCatalog([quiz()]),
        policy=UniformPolicy(),
        keys=InMemoryKeyStore(),
        send_events=topics.send_events,
        send_reply=topics.send_reply,
        read_events_after=topics.read_after,
    )


def start(cid: str) -> Command:
    return StartConversation(
        conversation_id=cid,
        seq=1,
        at=1.0,
        flow_id="quiz",
        site_id="s",
        reply_to="2",
        request_id=f"{cid}-1",
    )


def press(cid: str, seq: int, node: str, button: str) -> Command:
    return PressButton(
        conversation_id=cid,
        seq=seq,
        at=2.0,
        node_id=node,
        button_id=button,
        reply_to="2",
        request_id=f"{cid}-{seq}",
    )


async def submit_all(handler: CommandHandler, commands: list[Command], acks: list[int]) -> None:
    for i, command in enumerate(commands):
        await handler.submit(0, encode(command), lambda i=i: acks.append(i), run_now)  # type: ignore[misc]


async def test_replies_wait_for_the_events_and_keep_the_order() -> None:
    """No reply (and no offset ack) leaves before Kafka has the command's events, and
    completions happen in the commands' order."""
    topics = FakeTopics()
    topics.gate.clear()
    handler = make(topics)
    acks: list[int] = []
    await submit_all(handler, [start("a"), start("b"), press("a", 2, "size", "small")], acks)
    await asyncio.sleep(0)
    assert topics.replies == [] and acks == []
    assert len(topics.events[0]) == 3, "events are produced at once, before any delivery"
    topics.gate.set()
    await handler.drained(0)
    assert acks == [0, 1, 2]
    assert [r.request_id for _, r in topics.replies] == ["a-1", "b-1", "a-2"]
    assert all(partition == 2 for partition, _ in topics.replies)


async def test_later_commands_see_the_state_of_earlier_in_flight_ones() -> None:
    """A press decided while its start is still in flight applies on the start's state."""
    topics = FakeTopics()
    topics.gate.clear()
    handler = make(topics)
    await submit_all(handler, [start("a"), press("a", 2, "size", "small")], [])
    topics.gate.set()
    await handler.drained(0)
    press_reply = topics.replies[1][1]
    assert press_reply.error is None and press_reply.ack == 2
    state = decode_state(handler.table[b"a"])
    assert state.last_command_seq == 2
    assert handler.table[marker_key(0)] == b"1"


async def test_catch_up_folds_what_reached_the_log_but_not_the_table() -> None:
    """After a crash between producing events and updating the table, catch-up folds
    the log into the table, so the reprocessed command produces nothing again."""
    topics = FakeTopics()
    first = make(topics)
    await submit_all(first, [start("a")], [])
    await first.drained(0)
    lost_table: dict[bytes, bytes] = dict(first.table)
    await submit_all(first, [press("a", 2, "size", "small")], [])
    await first.drained(0)  # the press's events are in the log ...
    restarted = make(topics, table=lost_table)  # ... but the table lost its update
    assert await restarted.catch_up(0) == 1
    await submit_all(restarted, [press("a", 2, "size", "small")], [])
    await restarted.drained(0)
    assert len(topics.events[0]) == 2, "the reprocessed press must not produce again"
    assert topics.replies[-1][1].messages == topics.replies[1][1].messages


async def test_catch_up_skips_records_the_table_already_has() -> None:
    """Catch-up from an older marker does not fold an event twice."""
    topics = FakeTopics()
    handler = make(topics)
    await submit_all(handler, [start("a"), press("a", 2, "size", "small")], [])
    await handler.drained(0)
    before = handler.table[b"a"]
    handler.table[marker_key(0)] = b"-1"
    assert await handler.catch_up(0) == 0
    assert handler.table[b"a"] == before


async def test_unreadable_command_is_acked_and_skipped() -> None:
    """A record that is not a command cannot block its partition forever."""
    topics = FakeTopics()
    handler = make(topics)
    acks: list[int] = []
    await handler.submit(0, b"not json", lambda: acks.append(1), run_now)
    await handler.drained(0)
    assert acks == [1] and topics.replies == [] and topics.events == {}
