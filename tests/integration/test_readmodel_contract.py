"""The read-model store contract, run against the fake, SQLite and a real Redis.

Every adapter must read back exactly what the oracle (a one-event-at-a-time
fold on the fake) holds, refuse a replayed write, flag a stale one, and keep
namespaces apart.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from projector.engine import Projector
from projector.memory_store import InMemoryReadModel
from projector.plan import plan
from projector.store import BadCursor, Outcome, ReadModelStore
from projector.views import ConversationView
from projector.write_set import WriteSet, funnel_key
from schemas.commands import VisitorContext
from schemas.events import ConversationStarted, Event, NodeEntered, event_id
from tests.support.readmodel_oracle import Oracle
from tests.support.traffic import T0, Traffic, simulate


@pytest.fixture(params=["memory", "sqlite", "redis"])
async def store(request: Any, tmp_path: Path) -> AsyncIterator[ReadModelStore]:
    if request.param == "memory":
        yield InMemoryReadModel()
    elif request.param == "sqlite":
        from projector.sqlite_store import SqliteReadModel

        sqlite = SqliteReadModel(tmp_path / "readmodels.db")
        sqlite.start()
        yield sqlite
        sqlite.close()
    else:
        from projector.redis_store import RedisReadModel

        client = Redis.from_url(request.getfixturevalue("session_redis_url"))
        yield RedisReadModel(client, prefix=f"contract-{uuid.uuid4().hex[:8]}:")
        await client.aclose()


@pytest.fixture(scope="module")
def traffic() -> Traffic:
    return asyncio.run(simulate(120, seed=11, spacing=450.0))  # spans two UTC days


@pytest.fixture(scope="module")
def oracle(traffic: Traffic) -> Oracle:
    return asyncio.run(Oracle().fold(traffic.events))


def first_write_set(events: list[Event], cid: str) -> WriteSet:
    mine = [e for e in events if e.conversation_id == cid]
    _, write_set = plan(None, mine[:3])
    assert write_set is not None
    return write_set


async def project_in_batches(store: ReadModelStore, events: list[Event], size: int) -> None:
    projector = Projector(store, await store.current_namespace(), live=True)
    for i in range(0, len(events), size):
        await projector.project(events[i : i + size])


async def test_batched_projection_reads_back_as_the_oracle(
    store: ReadModelStore, traffic: Traffic, oracle: Oracle
) -> None:
    await project_in_batches(store, traffic.events, 97)
    assert await oracle.read(store) == await oracle.read()
    assert oracle.counter_keys > {funnel_key("solar-quote", 1)}
    assert any(k.startswith("daily:site:") for k in oracle.counter_keys)
    # every funnel and flow rollup per site too, read back as the oracle holds them
    assert {funnel_key("solar-quote", 1, site) for site in ("acme", "globex")} < (
        oracle.counter_keys
    )


async def test_replaying_any_range_changes_nothing(
    store: ReadModelStore, traffic: Traffic, oracle: Oracle
) -> None:
    await project_in_batches(store, traffic.events, 200)
    before = await oracle.read(store)
    middle = traffic.events[len(traffic.events) // 3 : len(traffic.events) // 2]
    await project_in_batches(store, middle, 13)  # a cold cache: it must load or conflict
    await project_in_batches(store, traffic.events, 500)
    assert await oracle.read(store) == before


async def test_outcomes_of_a_write_set(store: ReadModelStore, traffic: Traffic) -> None:
    ns = await store.current_namespace()
    cid = traffic.events[0].conversation_id
    ws = first_write_set(traffic.events, cid)
    assert await store.apply(ns, [ws], live=True) == [Outcome.APPLIED]
    assert await store.apply(ns, [ws], live=True) == [Outcome.DUPLICATE]
    stale = replace(ws, base_seq=ws.new_seq + 5, new_seq=ws.new_seq + 9)
    assert await store.apply(ns, [stale], live=True) == [Outcome.CONFLICT]
    view = await store.conversation(cid)
    assert view is not None and view.last_seq == ws.new_seq


async def test_one_call_reports_each_write_set(store: ReadModelStore, traffic: Traffic) -> None:
    ns = await store.current_namespace()
    starts = [e.conversation_id for e in traffic.events if e.seq == 1][:3]
    sets = [first_write_set(traffic.events, cid) for cid in starts]
    assert await store.apply(ns, sets[:1], live=True) == [Outcome.APPLIED]
    assert await store.apply(ns, sets, live=True) == [
        Outcome.DUPLICATE,
        Outcome.APPLIED,
        Outcome.APPLIED,
    ]


async def test_load_views_returns_only_stored_conversations(
    store: ReadModelStore, traffic: Traffic
) -> None:
    ns = await store.current_namespace()
    cid = traffic.events[0].conversation_id
    ws = first_write_set(traffic.events, cid)
    await store.apply(ns, [ws], live=True)
    views = await store.load_views(ns, [cid, "nobody"])
    assert set(views) == {cid}
    assert isinstance(views[cid], ConversationView) and views[cid].last_seq == ws.new_seq


async def test_namespaces_keep_apart_and_switch_atomically(
    store: ReadModelStore, traffic: Traffic
) -> None:
    first = await store.current_namespace()
    assert await store.current_namespace() == first
    cid = traffic.events[0].conversation_id
    ws = first_write_set(traffic.events, cid)
    await store.apply(first, [ws], live=True)
    fresh = await store.new_namespace()
    assert fresh != first
    assert await store.conversation(cid) is not None  # readers still see the old one
    assert await store.apply(fresh, [ws], live=False) == [Outcome.APPLIED]
    assert await store.apply(fresh, [ws], live=True) == [Outcome.MOVED]  # not current yet
    await store.set_frontier(fresh, {"0": 17, "3": 4})
    await store.set_frontier(fresh, {"3": 9}, live=True)  # not current: ignored
    await store.set_frontier(fresh, {"3": 5, "4": 1})  # merged
    assert await store.frontier(fresh) == {"0": 17, "3": 5, "4": 1}
    assert await store.switch_to(fresh) == first
    assert await store.current_namespace() == fresh
    await store.set_frontier(fresh, {"3": 6}, live=True)
    await store.set_frontier(first, {"3": 99}, live=True)  # replaced: ignored
    assert (await store.frontier(fresh))["3"] == 6
    assert await store.frontier(first) == {}
    other = first_write_set(traffic.events, traffic.events[-1].conversation_id)
    assert await store.apply(first, [other], live=True) == [Outcome.MOVED]
    assert await store.load_views(first, [other.conversation_id]) == {}
    with pytest.raises(ValueError, match="current"):
        await store.drop_namespace(fresh)
    assert await store.drop_namespace(first) > 0
    assert await store.load_views(first, [cid]) == {}
    assert await store.conversation(cid) is not None


async def test_leads_page_newest_first_without_gaps_or_repeats(
    store: ReadModelStore, traffic: Traffic, oracle: Oracle
) -> None:
    await project_in_batches(store, traffic.events, 300)
    for site in oracle.sites:
        expected = (await oracle.read())["leads"][site]
        assert expected, "the traffic should give every site leads"
        walked, cursor = [], None
        while True:
            page = await store.leads(site, cursor, 3)
            assert len(page.leads) <= 3
            walked.extend(page.leads)
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        assert walked == expected
        stamps = [(lead.captured_at, lead.conversation_id) for lead in walked]
        assert stamps == sorted(stamps, reverse=True)
    with pytest.raises(BadCursor):
        await store.leads("acme", "not-a-cursor", 3)
    with pytest.raises(ValueError, match="limit"):
        await store.leads("acme", None, 0)


async def test_transcript_pages_by_seq(store: ReadModelStore, traffic: Traffic) -> None:
    await project_in_batches(store, traffic.events, 300)
    cid = traffic.events[0].conversation_id
    whole = await store.transcript(cid, 0, 10_000)
    assert [e["seq"] for e in whole] == sorted(e["seq"] for e in whole)
    assert whole[0]["kind"] == "started"
    page = await store.transcript(cid, whole[1]["seq"], 2)
    assert page == whole[2:4]


async def test_mark_erased_blanks_the_sealed_details(
    store: ReadModelStore, traffic: Traffic, oracle: Oracle
) -> None:
    await project_in_batches(store, traffic.events, 300)
    lead = next(iter((await oracle.read())["leads"]["acme"]))
    assert lead.sealed
    assert await store.mark_erased(lead.conversation_id)
    erased = await store.lead(lead.conversation_id)
    assert erased is not None and erased.erased and erased.sealed == ""
    assert not await store.mark_erased("nobody")
    assert await store.ping()


def looping(cid: str, site: str, nodes: list[str]) -> list[Event]:
    """A conversation of flow ``quiz`` entering ``nodes`` in order (loops included)."""
    events: list[Event] = [
        ConversationStarted(
            conversation_id=cid,
            seq=1,
            id=event_id(cid, 1),
            at=T0,
            command_seq=1,
            flow_id="quiz",
            flow_version=1,
            site_id=site,
            context=VisitorContext(),
        )
    ]
    for seq, node in enumerate(nodes, start=2):
        events.append(
            NodeEntered(
                conversation_id=cid,
                seq=seq,
                id=event_id(cid, seq),
                at=T0 + seq,
                command_seq=seq,
                node_id=node,
                kind="question",
            )
        )
    return events


async def test_funnels_per_site_count_a_loop_once(store: ReadModelStore) -> None:
    """Two sites on one flow id, conversations that loop, one event per batch by a
    fresh projector (every view read back from the store): each site's funnel
    holds its own conversations once per node, the all-sites funnel both."""
    mine = looping("a1", "acme", ["q1", "q2", "q1", "q2", "q3"])
    theirs = looping("g1", "globex", ["q1", "q1", "q2", "q1"])
    events = [e for pair in zip(mine, theirs, strict=False) for e in pair] + mine[len(theirs) :]
    namespace = await store.current_namespace()
    for event in events:
        await Projector(store, namespace, live=True).project([event])
    await Projector(store, namespace, live=True).project(events)  # replayed: nothing changes
    acme = await store.counters(funnel_key("quiz", 1, "acme"))
    globex = await store.counters(funnel_key("quiz", 1, "globex"))
    every = await store.counters(funnel_key("quiz", 1))
    assert acme == {
        "started": 1,
        "entered:q1": 1,
        "entered:q2": 1,
        "entered:q3": 1,
        "left:q1": 1,
        "left:q2": 1,
        "edge:q1>q2": 1,
        "edge:q2>q1": 1,
        "edge:q2>q3": 1,
    }
    assert globex == {
        "started": 1,
        "entered:q1": 1,
        "entered:q2": 1,
        "left:q1": 1,
        "left:q2": 1,
        "edge:q1>q1": 1,
        "edge:q1>q2": 1,
        "edge:q2>q1": 1,
    }
    assert every == dict(Counter(acme) + Counter(globex))
    oracle = await Oracle().fold(events)
    assert await oracle.read(store) == await oracle.read()
