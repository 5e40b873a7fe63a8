"""The DeliveryStore contract (tests/support/delivery_store_contract.py) on the
SQLite and Redis adapters, and what only they can get wrong: SQLite state
survives a reopen and refuses a newer schema; Redis take_ins racing from two
workers create each delivery once."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from redis.asyncio import Redis

from services.conversation.state_codec import encode_state
from services.delivery.store import DeliveryStore
from services.distributed.redis_client import redis_client
from services.distributed.redis_deliveries import RedisDeliveryStore
from services.embedded.sqlite_deliveries import NewerSchema, SqliteDeliveryStore
from tests.support.delivery_store_contract import (
    T0,
    DeliveryStoreContract,
    attempted,
    delivery,
    state,
)

Opener = Callable[[], Awaitable[DeliveryStore]]


class TestSqliteDeliveryStore(DeliveryStoreContract):
    @pytest.fixture
    async def opener(self, tmp_path: Path) -> AsyncIterator[Opener]:
        opened: list[SqliteDeliveryStore] = []

        async def open_store() -> DeliveryStore:
            store = SqliteDeliveryStore(tmp_path / "deliveries.db")
            await store.start()
            opened.append(store)
            return store

        yield open_store
        for store in opened:
            await store.close()


class TestRedisDeliveryStore(DeliveryStoreContract):
    @pytest.fixture
    async def opener(self, session_redis_url: str) -> AsyncIterator[Opener]:
        """Each handle has a client of its own, as separate workers do."""
        prefix = f"ds-{uuid.uuid4().hex[:8]}:"
        clients: list[Redis] = []

        async def open_store() -> DeliveryStore:
            client = redis_client(session_redis_url)
            clients.append(client)
            store = RedisDeliveryStore(client, prefix)
            await store.start()
            return store

        yield open_store
        for client in clients:
            await client.aclose()


async def test_sqlite_state_survives_closing_and_reopening_the_file(tmp_path: Path) -> None:
    path = tmp_path / "deliveries.db"
    store = SqliteDeliveryStore(path, synchronous="FULL")
    await store.start()
    since = await store.deliver_since(T0)
    await store.take_in({"c1": state("c1", T0)}, [delivery(1), delivery(2)], {0: 7, 3: 2})
    done = attempted(delivery(1), T0 + 1, "delivered")
    await store.save(done)
    await store.claim_due(T0 + 100, 10, lease=1_000)
    await store.disable("a", "hook", "410 Gone", T0)
    await store.close()

    again = SqliteDeliveryStore(path)
    await again.start()
    try:
        assert await again.deliver_since(T0 + 50) == since
        assert await again.positions() == {0: 7, 3: 2}
        assert await again.states(["c1"]) == {"c1": state("c1", T0)}
        assert await again.get(done.id) == done
        assert await again.claim_due(T0 + 500, 10, lease=10) == []  # the claim held
        assert await again.claim_due(T0 + 1_100, 10, lease=10) == [delivery(2)]
        assert await again.disabled() == {("a", "hook"): "410 Gone"}
        assert [d.id for d in (await again.page(None, None, 10)).deliveries] == [
            delivery(2).id,
            done.id,
        ]
    finally:
        await again.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_sqlite_states_are_stored_deflated_and_plain_ones_still_read(
    tmp_path: Path,
) -> None:
    """States are deflated on disk (they fit a page instead of an overflow chain);
    one stored as plain JSON by an earlier version reads the same."""
    path = tmp_path / "deliveries.db"
    store = SqliteDeliveryStore(path)
    await store.start()
    try:
        await store.take_in({"c1": state("c1", T0), "c2": state("c2", T0)}, [], {0: 1})
        with sqlite3.connect(path) as conn:
            bodies = dict(conn.execute("SELECT conversation_id, body FROM conversation_states"))
            assert all(zlib.decompress(body)[:1] == b"{" for body in bodies.values())
            conn.execute(
                "UPDATE conversation_states SET body = ? WHERE conversation_id = 'c2'",
                (encode_state(state("c2", T0 + 1)),),
            )
        assert await store.states(["c1", "c2"]) == {
            "c1": state("c1", T0),
            "c2": state("c2", T0 + 1),
        }
    finally:
        await store.close()


async def test_sqlite_refuses_a_file_of_a_newer_schema(tmp_path: Path) -> None:
    """A downgrade must not misread (or rewrite) what a newer Leadflow wrote."""
    path = tmp_path / "deliveries.db"
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version = 99")
    store = SqliteDeliveryStore(path)
    with pytest.raises(NewerSchema, match=r"deliveries\.db.*version 99 is newer.*\(1\)"):
        await store.start()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 99
        assert conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0


async def test_two_sqlite_handles_on_one_file_never_claim_the_same_delivery(
    tmp_path: Path,
) -> None:
    """Two processes on one deliveries.db (a restart overlapping the old worker)."""
    first, second = (SqliteDeliveryStore(tmp_path / "deliveries.db") for _ in range(2))
    await first.start()
    await second.start()
    try:
        await first.take_in({}, [delivery(n, next_at=T0) for n in range(30)], {0: 1})
        got = await asyncio.gather(*(s.claim_due(T0, 2, lease=60) for s in [first, second] * 10))
        claimed = [d.id for batch in got for d in batch]
        assert len(claimed) == len(set(claimed)) == 30
    finally:
        await first.close()
        await second.close()


async def test_redis_take_ins_racing_from_two_workers_create_each_delivery_once(
    session_redis_url: str,
) -> None:
    """Two workers taking in the same stretch of the log (a rebalance overlap)."""
    prefix = f"ds-{uuid.uuid4().hex[:8]}:"
    clients = [redis_client(session_redis_url) for _ in range(2)]
    stores = [RedisDeliveryStore(c, prefix) for c in clients]
    try:
        batches = [
            [delivery(n, site="ab"[n % 2]) for n in range(i, i + 20)] for i in range(0, 200, 20)
        ]
        new = await asyncio.gather(
            *(s.take_in({}, batch, {0: i}) for i, batch in enumerate(batches) for s in stores)
        )
        assert sum(new) == 200
        summary = await stores[0].summary()
        assert dict(summary.counts) == {"pending": 200}
        assert len(await stores[1].claim_due(T0 + 1_000, 500, lease=5)) == 200
        walked: list[str] = []
        cursor = None
        while True:
            page = await stores[1].page(None, None, 33, cursor)
            walked.extend(d.id for d in page.deliveries)
            if (cursor := page.next_cursor) is None:
                break
        assert sorted(walked) == sorted(d.id for batch in batches for d in batch)
        assert len(walked) == 200
        per_site = [await stores[0].summary(site) for site in "ab"]
        assert [dict(s.counts) for s in per_site] == [{"pending": 100}, {"pending": 100}]
    finally:
        for client in clients:
            await client.aclose()


async def test_a_failed_sqlite_take_in_leaves_nothing_behind(tmp_path: Path) -> None:
    """States, deliveries and positions commit together or not at all."""
    store = SqliteDeliveryStore(tmp_path / "deliveries.db")
    await store.start()
    try:
        await store.take_in({}, [], {0: 1})
        with pytest.raises(OverflowError):  # the last write of the job fails
            await store.take_in({"c1": state("c1", T0)}, [delivery(1)], {0: 2**70})
        assert await store.states(["c1"]) == {}
        assert await store.get(delivery(1).id) is None
        assert await store.positions() == {0: 1}
        assert await store.take_in({"c1": state("c1", T0)}, [delivery(1)], {0: 2}) == 1
    finally:
        await store.close()


async def test_redis_states_expire_after_their_ttl_and_take_in_renews_it(
    session_redis_url: str,
) -> None:
    """An abandoned conversation's state goes away by itself (8 days by default)."""
    prefix = f"ds-{uuid.uuid4().hex[:8]}:"
    client = redis_client(session_redis_url)
    try:
        store = RedisDeliveryStore(client, prefix, states_ttl_seconds=600)
        await store.take_in({"c1": state("c1", T0)}, [], {0: 1})
        key = f"{prefix}delivery:state:c1"
        assert 590 <= await client.ttl(key) <= 600
        await client.expire(key, 5)
        await store.take_in({"c1": state("c1", T0 + 1)}, [], {0: 2})
        assert 590 <= await client.ttl(key) <= 600
        default = RedisDeliveryStore(client, prefix)
        await default.take_in({"c2": state("c2", T0)}, [], {0: 3})
        assert await client.ttl(f"{prefix}delivery:state:c2") > 8 * 24 * 3600 - 10
        await client.delete(key)  # as if it had expired
        assert await store.states(["c1", "c2"]) == {"c2": state("c2", T0)}
        assert await store.forget_states_before(T0 + 5) == 1  # c2; c1 was gone already
    finally:
        await client.aclose()
