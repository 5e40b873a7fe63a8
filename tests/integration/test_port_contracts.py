"""One contract suite per port, run against the in-memory fake and the SQLite adapter."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from schemas.commands import PressButton
from schemas.events import ButtonPressed, Event, event_id
from services.distributed.redis_keystore import RedisKeyStore
from services.embedded.sqlite_eventlog import SqliteEventLog
from services.embedded.sqlite_keystore import SqliteKeyStore
from services.fakes import InMemoryEventLog, InMemoryKeyStore
from services.ports import EventLog, KeyStore


def pressed(cid: str, seq: int) -> Event:
    return ButtonPressed(
        conversation_id=cid,
        seq=seq,
        id=event_id(cid, seq),
        at=float(seq),
        command_seq=seq,
        node_id="q",
        button_id=f"b{seq}",
    )


@pytest.fixture(params=["memory", "sqlite"])
async def event_log(request: Any, tmp_path: Path) -> AsyncIterator[EventLog]:
    if request.param == "memory":
        yield InMemoryEventLog()
        return
    log = SqliteEventLog(tmp_path / "events.db")
    log.start()
    yield log
    log.close()


@pytest.fixture(params=["memory", "sqlite", "redis"])
async def key_store(request: Any, tmp_path: Path) -> AsyncIterator[KeyStore]:
    if request.param == "memory":
        yield InMemoryKeyStore()
        return
    if request.param == "redis":
        client = Redis.from_url(request.getfixturevalue("session_redis_url"))
        yield RedisKeyStore(client, prefix=f"test-{tmp_path.name}:")
        await client.aclose()
        return
    keys = SqliteKeyStore(tmp_path / "keys.db")
    keys.start()
    yield keys
    keys.close()


async def test_appended_events_read_back_per_conversation_in_seq_order(event_log: EventLog) -> None:
    """Events come back per conversation, in seq order, equal to what was appended."""
    a = [pressed("a", s) for s in (1, 2, 3)]
    b = [pressed("b", s) for s in (1, 2)]
    await event_log.append(a[:2])
    await event_log.append(b)
    await event_log.append(a[2:])
    assert await event_log.read_conversation("a") == a
    assert await event_log.read_conversation("b") == b
    assert await event_log.read_conversation("nobody") == []


async def test_appending_the_same_event_twice_is_a_no_op(event_log: EventLog) -> None:
    """At-least-once writers may append an event again; the log keeps one copy."""
    events = [pressed("a", 1), pressed("a", 2)]
    await event_log.append(events)
    await event_log.append(events)
    await event_log.append(events[1:])
    assert await event_log.read_conversation("a") == events


async def test_read_after_pages_through_the_log_in_append_order(event_log: EventLog) -> None:
    """read_after returns increasing positions; paging with the last one sees every event once."""
    appended = [pressed(cid, s) for s in (1, 2, 3) for cid in ("a", "b", "c")]
    for event in appended:
        await event_log.append([event])
    seen: list[Event] = []
    position = 0
    while batch := await event_log.read_after(position, 4):
        assert [x.position for x in batch] == sorted(x.position for x in batch)
        assert all(x.position > position for x in batch)
        seen.extend(x.event for x in batch)
        position = batch[-1].position
    assert seen == appended


async def test_concurrent_appends_are_all_durable(event_log: EventLog) -> None:
    """Appends issued concurrently (grouped into one commit by SQLite) all land."""
    import asyncio

    await asyncio.gather(*(event_log.append([pressed(f"c{i}", 1)]) for i in range(200)))
    for i in range(200):
        assert len(await event_log.read_conversation(f"c{i}")) == 1


def press(cid: str, seq: int) -> PressButton:
    return PressButton(conversation_id=cid, seq=seq, at=float(seq), node_id="q", button_id="b")


async def test_commands_are_journaled_once_with_their_events(event_log: EventLog) -> None:
    """The journal keeps the command of every append that had events, once per
    (conversation, first event seq), in append order; an append without a command
    or without events journals nothing."""
    await event_log.append([pressed("a", 1), pressed("a", 2)], press("a", 1))
    await event_log.append([pressed("b", 1)], press("b", 1))
    await event_log.append([pressed("a", 1), pressed("a", 2)], press("a", 1))  # a retry
    await event_log.append([], press("a", 2))  # a duplicate: nothing happened
    await event_log.append([pressed("c", 1)])  # no command given
    await event_log.append([pressed("a", 3)], press("a", 2))
    journal = await event_log.read_commands_after(0, 100)
    assert [(c.command.conversation_id, c.command.seq) for c in journal] == [
        ("a", 1),
        ("b", 1),
        ("a", 2),
    ]
    assert journal[0].command == press("a", 1)
    assert [c.position for c in journal] == sorted(c.position for c in journal)
    page = await event_log.read_commands_after(journal[0].position, 1)
    assert page == [journal[1]]


async def test_a_command_seq_may_be_journaled_again_with_later_events(
    event_log: EventLog,
) -> None:
    """An out-of-order command is logged as rejected without using its seq and may
    come back later with the same seq: both are journaled (keyed by event seq)."""
    await event_log.append([pressed("a", 1)], press("a", 3))
    await event_log.append([pressed("a", 2)], press("a", 2))
    await event_log.append([pressed("a", 3)], press("a", 3))
    journal = await event_log.read_commands_after(0, 100)
    assert [c.command.seq for c in journal] == [3, 2, 3]


async def test_key_is_created_once_and_stable(key_store: KeyStore) -> None:
    """get_or_create returns the same 32-byte key every time for a conversation."""
    first = await key_store.get_or_create("c1")
    assert len(first) == 32
    assert await key_store.get_or_create("c1") == first
    assert await key_store.get("c1") == first
    assert await key_store.get_or_create("c2") != first


async def test_deleted_key_is_gone_for_good(key_store: KeyStore) -> None:
    """Deleting a key erases it; deleting again reports nothing was there."""
    await key_store.get_or_create("c1")
    assert await key_store.delete("c1") is True
    assert await key_store.get("c1") is None
    assert await key_store.delete("c1") is False


async def test_get_many_returns_the_keys_that_exist_in_one_call(key_store: KeyStore) -> None:
    """A page of leads reads its keys at once: missing and erased ids are left
    out, duplicates are fine, and more ids than one round trip's chunk work."""
    ids = [f"c{i}" for i in range(1200)]
    created = {cid: await key_store.get_or_create(cid) for cid in ids[::2]}
    await key_store.delete("c0")
    del created["c0"]
    assert await key_store.get_many([*ids, "c2", "never"]) == created
    assert await key_store.get_many([]) == {}
