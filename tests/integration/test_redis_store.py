"""What only the Redis adapter of the read-model store can get wrong.

The contract suite (test_readmodel_contract.py) holds it to the fake; these
tests look at the keys themselves: replays leave every key byte-for-byte
as it was, a flushed script cache costs nothing, a moved write writes
nothing, and dropping a namespace deletes its keys and no other.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace

import orjson
import pytest
from redis.asyncio import Redis

from projector.engine import Projector
from projector.memory_store import InMemoryReadModel
from projector.plan import plan
from projector.redis_store import RedisReadModel
from projector.store import LeadsPage, Outcome, ReadModelStore
from projector.views import LeadView
from projector.write_set import Increment, WriteSet
from schemas.events import Event
from services.distributed.redis_keystore import RedisKeyStore
from tests.support.traffic import Traffic, simulate


@pytest.fixture(scope="module")
def traffic() -> Traffic:
    return asyncio.run(simulate(200, seed=5, spacing=300.0))


@pytest.fixture
async def client(session_redis_url: str) -> AsyncIterator[Redis]:
    redis = Redis.from_url(session_redis_url)
    yield redis
    await redis.aclose()


@pytest.fixture
def prefix() -> str:
    # glob characters in the prefix: SCAN MATCH must take it literally
    return f"rs-{uuid.uuid4().hex[:8]}[*?]:"


def glob_escape(text: str) -> str:
    return "".join("\\" + ch if ch in "*?[]\\" else ch for ch in text)


async def snapshot(client: Redis, pattern: str) -> dict[bytes, bytes]:
    """DUMP of every key matching ``pattern`` (a literal prefix, then ``*``)."""
    keys = sorted([k async for k in client.scan_iter(match=glob_escape(pattern) + "*", count=500)])
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.dump(key)
    return dict(zip(keys, await pipe.execute(), strict=True))


async def project(store: ReadModelStore, namespace: str, events: Sequence[Event], size: int) -> int:
    """Project ``events`` with a fresh (cold) projector; returns how many write sets applied."""
    projector = Projector(store, namespace, live=True)
    applied = 0
    for i in range(0, len(events), size):
        applied += (await projector.project(events[i : i + size])).applied
    return applied


def first_write_set(events: Sequence[Event], cid: str) -> WriteSet:
    _, write_set = plan(None, [e for e in events if e.conversation_id == cid][:3])
    assert write_set is not None
    return write_set


async def test_replays_leave_every_key_byte_for_byte_unchanged(
    client: Redis, prefix: str, traffic: Traffic
) -> None:
    store = RedisReadModel(client, prefix=prefix)
    ns = await store.current_namespace()
    assert await project(store, ns, traffic.events, 101) > 0
    before = await snapshot(client, prefix)
    assert any(b":transcript:" in k for k in before) and any(b":leads:" in k for k in before)
    events = traffic.events
    middle = events[len(events) // 3 : len(events) // 3 + len(events) // 4]
    assert await project(store, ns, events, 257) == 0  # the whole log again
    assert await project(store, ns, middle, 29) == 0  # a middle range, cold cache
    assert await project(store, ns, events[::-1][: len(events) // 5][::-1], 7) == 0  # the tail
    after = await snapshot(client, prefix)
    assert after.keys() == before.keys()
    assert after == before


async def test_a_flushed_script_cache_is_reloaded_transparently(
    client: Redis, prefix: str, traffic: Traffic
) -> None:
    """After a restart or SCRIPT FLUSH, EVALSHA answers NOSCRIPT: the adapter loads
    the script and sends the write sets again, each applied exactly once."""
    store = RedisReadModel(client, prefix=prefix)
    reference = InMemoryReadModel()
    ns, ref_ns = await store.current_namespace(), await reference.current_namespace()
    starts = [e.conversation_id for e in traffic.events if e.seq == 1][:4]
    sets = [first_write_set(traffic.events, cid) for cid in starts]
    assert await store.apply(ns, sets[:2], live=True) == [Outcome.APPLIED] * 2
    await client.script_flush()
    outcomes = await store.apply(ns, sets, live=True)
    assert outcomes == [Outcome.DUPLICATE, Outcome.DUPLICATE, Outcome.APPLIED, Outcome.APPLIED]
    await client.script_flush()
    assert await store.apply(ns, sets, live=True) == [Outcome.DUPLICATE] * 4
    await reference.apply(ref_ns, sets, live=True)
    for ws in sets:
        cid = ws.conversation_id
        assert await store.conversation(cid) == await reference.conversation(cid)
        assert await store.transcript(cid) == await reference.transcript(cid)
    for key in {inc.key for ws in sets for inc in ws.increments}:
        assert await store.counters(key) == await reference.counters(key)
    await client.script_flush()
    await store.set_frontier(ns, {"0": 3}, live=True)
    assert await store.frontier(ns) == {"0": 3}


async def test_a_live_write_into_a_replaced_namespace_writes_nothing(
    client: Redis, prefix: str, traffic: Traffic
) -> None:
    store = RedisReadModel(client, prefix=prefix)
    old = await store.current_namespace()
    cids = [e.conversation_id for e in traffic.events if e.seq == 1]
    assert await store.apply(old, [first_write_set(traffic.events, cids[0])], live=True) == [
        Outcome.APPLIED
    ]
    fresh = await store.new_namespace()
    assert await store.switch_to(fresh) == old
    before = await snapshot(client, prefix)
    later = [first_write_set(traffic.events, cid) for cid in cids[1:4]]
    assert await store.apply(old, later, live=True) == [Outcome.MOVED] * 3
    await store.set_frontier(old, {"0": 9}, live=True)
    assert await snapshot(client, prefix) == before
    # the same write sets, not live (a rebuild's own namespace), do land
    assert await store.apply(old, later, live=False) == [Outcome.APPLIED] * 3


async def test_dropping_a_namespace_deletes_its_keys_and_nothing_else(
    client: Redis, prefix: str, traffic: Traffic
) -> None:
    store = RedisReadModel(client, prefix=prefix)
    keys = RedisKeyStore(client, prefix=prefix)
    events = traffic.events[:400]
    for cid in {e.conversation_id for e in events}:
        await keys.get_or_create(cid)
    first = await store.current_namespace()
    assert await project(store, first, events, 50) > 0
    neighbour = first + "1"  # "n11" beside "n1": a pattern without the colon would match it
    await store.apply(neighbour, [first_write_set(events, events[0].conversation_id)], live=False)
    await store.set_frontier(first, {"0": 400})
    fresh = await store.new_namespace()
    await store.apply(fresh, [first_write_set(events, events[0].conversation_id)], live=False)
    with pytest.raises(ValueError, match="current"):
        await store.drop_namespace(first)
    await store.switch_to(fresh)

    everything = await snapshot(client, prefix)
    mine = {k for k in everything if k.startswith(f"{prefix}rm:{first}:".encode())}
    entries = {
        k for k in mine if k.split(b":")[3] in (b"conv", b"transcript", b"lead", b"c")
    }  # rs-…[*?] : rm : n1 : kind : …
    assert entries and len(entries) < len(mine)  # the leads zsets and the frontier too
    assert await store.drop_namespace(first) == len(entries)
    left = await snapshot(client, prefix)
    assert left == {k: v for k, v in everything.items() if k not in mine}
    assert sum(k.startswith(f"{prefix}key:".encode()) for k in left) == len(
        {e.conversation_id for e in events}
    )
    assert await store.drop_namespace(first) == 0
    assert await store.current_namespace() == fresh


def lead_set(cid: str, site: str, at: float, sealed: str) -> WriteSet:
    lead = LeadView(
        conversation_id=cid,
        site_id=site,
        flow_id="f",
        flow_version=1,
        event_id=f"e-{cid}",
        captured_at=at,
        sealed=sealed,
        fields_present=("email",),
        consent=True,
    )
    entry = orjson.dumps({"seq": 1, "at": at, "kind": "lead", "note": sealed})
    return WriteSet(
        conversation_id=cid,
        base_seq=0,
        new_seq=1,
        fields={"last_seq": "1", "odd": sealed},
        transcript=(entry,),
        lead=lead,
        increments=(Increment("funnel:f:1", "leads"), Increment(f"daily:site:{site}:x", "é")),
        site_id=site,
    )


async def walk(store: ReadModelStore, site: str, size: int) -> list[LeadsPage]:
    pages, cursor = [], None
    while True:
        page = await store.leads(site, cursor, size)
        pages.append(page)
        if page.next_cursor is None:
            return pages
        cursor = page.next_cursor


async def test_ties_and_odd_text_read_back_as_the_fake(client: Redis, prefix: str) -> None:
    """Equal captured_at across page boundaries (tie-break by id, descending),
    floats that need all 17 digits, and text cjson must carry exactly."""
    odd = 'é\x00\n"\\ \U0001d11e\x7f\u2028'
    t = 1_764_115_200.1
    stamps = [t] * 7 + [t + 1e-6] * 3 + [0.1 + 0.2] * 2 + [t - 1] * 4
    sets = [
        lead_set(f"c{i:02d}{'é' if i % 3 else ''}", "s", at, odd) for i, at in enumerate(stamps)
    ]
    sets.append(lead_set("other", "elsewhere", t, odd))
    store, fake = RedisReadModel(client, prefix=prefix), InMemoryReadModel()
    await store.apply(await store.current_namespace(), sets, live=True)
    await fake.apply(await fake.current_namespace(), sets, live=True)
    for size in (1, 2, 3, 7, 50):
        assert await walk(store, "s", size) == await walk(fake, "s", size)
    assert await walk(store, "nobody", 5) == [LeadsPage([], None)]
    for ws in sets:
        cid = ws.conversation_id
        assert await store.lead(cid) == await fake.lead(cid)
        assert await store.transcript(cid) == await fake.transcript(cid)
        raw = await client.hget(f"{prefix}rm:n1:conv:{cid}", "odd")
        assert raw == odd.encode()
    assert await store.counters("daily:site:s:x") == {"é": len(stamps)}
    assert await store.mark_erased("c03")
    captured = sets[3].lead
    assert captured is not None
    assert await store.lead("c03") == replace(captured, sealed="", erased=True)


async def test_big_batches_flushed_scripts_and_dropped_connections(
    client: Redis, prefix: str
) -> None:
    """Batches larger than one streamed chunk, a script flush in between, a
    connection killed by the server, and a call cancelled mid-stream: every
    write set still lands exactly once and replies never get out of step."""
    sets = [lead_set(f"big{i:04d}%s", "s", 1_764_115_200.0 + i % 7, "x") for i in range(900)]
    store = RedisReadModel(client, prefix=prefix)
    ns = await store.current_namespace()
    assert await store.apply(ns, sets[:300], live=True) == [Outcome.APPLIED] * 300
    await client.script_flush()
    outcomes = await store.apply(ns, sets[:600], live=True)
    assert outcomes == [Outcome.DUPLICATE] * 300 + [Outcome.APPLIED] * 300
    await client.client_kill_filter(_type="normal", skipme=True)  # the pooled connections
    assert (
        await store.apply(ns, sets[590:610], live=True)
        == [Outcome.DUPLICATE] * 10 + [Outcome.APPLIED] * 10
    )
    await client.client_pause(5_000, all=False)  # writes (scripts) wait: apply is mid-stream
    task = asyncio.create_task(store.apply(ns, sets, live=True))
    await asyncio.sleep(0.2)
    assert not task.done()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await client.client_unpause()
    assert set(await store.apply(ns, sets, live=True)) <= {Outcome.APPLIED, Outcome.DUPLICATE}
    assert await store.apply(ns, sets, live=True) == [Outcome.DUPLICATE] * len(sets)
    assert await store.counters("funnel:f:1") == {"leads": len(sets)}
    assert [e["seq"] for e in await store.transcript("big0899%s")] == [1]
    walked = [lead for page in await walk(store, "s", 250) for lead in page.leads]
    assert len(walked) == len(sets)


async def test_ping_says_false_when_redis_is_unreachable() -> None:
    dead = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
    try:
        assert await RedisReadModel(dead).ping() is False
    finally:
        await dead.aclose()
