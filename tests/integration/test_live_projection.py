"""The live projector's loop on the in-memory log follower and the in-memory store.

Covers where partitions start (the store's frontier), retrying a batch while
the store is down, following a rebuilt namespace, and unreadable records.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Collection, Sequence
from typing import Any

import orjson
import pytest

from projector.live import LiveProjection
from projector.memory_store import InMemoryReadModel
from projector.metrics import ProjectorMetrics
from projector.store import Outcome
from projector.views import ConversationView
from projector.write_set import WriteSet
from schemas.batches import decode_batch, encode_batch
from schemas.events import Event
from services.log_follow import follow
from services.log_follower import LogRecord
from services.log_follower_fake import MemoryLog, MemoryLogFollower
from tests.support.readmodel_oracle import Oracle
from tests.support.traffic import Traffic, simulate

TRAFFIC: Traffic = asyncio.run(simulate(24, seed=5))
PARTITIONS = 3


def records_of(events: Sequence[Event]) -> dict[int, list[bytes]]:
    """One record per (conversation, command), partitioned by conversation like Kafka."""
    log: dict[int, list[bytes]] = {p: [] for p in range(PARTITIONS)}
    batch: list[Event] = []
    for event in [*events, None]:
        if batch and (
            event is None
            or event.conversation_id != batch[0].conversation_id
            or event.command_seq != batch[0].command_seq
        ):
            log[int(batch[0].conversation_id[1:]) % PARTITIONS].append(encode_batch(batch))
            batch = []
        if event is not None:
            batch.append(event)
    return log


_ORACLE: list[tuple[Oracle, dict[str, Any]]] = []


async def traffic_oracle() -> tuple[Oracle, dict[str, Any]]:
    """The oracle of TRAFFIC's events and the read models it holds, folded once for
    the module (a fold takes longer than most tests here): the tests only read it."""
    if not _ORACLE:
        oracle = await Oracle().fold(TRAFFIC.events)
        _ORACLE.append((oracle, await oracle.read()))
    return _ORACLE[0]


GROUP = "leadflow.projector"


class FakeTopic(MemoryLogFollower):
    """The ``events`` topic as the projectors' consumer group reads it, on the
    in-memory log; it remembers every seek. A poll returns up to ``per_poll``
    records of every partition, as Kafka's fetcher does."""

    def __init__(self, log: dict[int, list[bytes]], per_poll: int = 25) -> None:
        self.log = log
        self.memory = MemoryLog(PARTITIONS)
        for partition, values in log.items():
            for value in values:
                self.memory.append(partition, value)
        super().__init__(self.memory, group_id=GROUP)
        self.per_poll = per_poll
        self.seeks: list[tuple[int, int | None]] = []

    async def seek(self, partition: int, offset: int | None) -> None:
        self.seeks.append((partition, offset))
        await super().seek(partition, offset)

    def _take(self, max_records: int) -> list[LogRecord]:
        out: list[LogRecord] = []
        readable = self._readable()
        for partition in readable:
            others = set(readable) - {partition}
            self._paused |= others
            try:
                out.extend(super()._take(min(self.per_poll, max_records - len(out))))
            finally:
                self._paused -= others
        return out

    def commits(self) -> dict[int, int]:
        return dict(self.memory.committed.get(GROUP, {}))


async def step(projection: LiveProjection) -> int:
    return await projection.step(wait=0)


async def drain(projection: LiveProjection) -> None:
    while await step(projection):
        pass


async def assigned_projection(
    topic: FakeTopic, store: InMemoryReadModel
) -> tuple[LiveProjection, ProjectorMetrics]:
    """A projection that owns every partition: the group assigns them at start."""
    metrics = ProjectorMetrics()
    projection = LiveProjection(topic, store, metrics, retry_seconds=0)
    topic.on_assigned = projection.on_assigned
    await topic.start()
    return projection, metrics


async def test_a_fresh_namespace_starts_every_partition_at_the_beginning() -> None:
    topic = FakeTopic(records_of(TRAFFIC.events))
    store = InMemoryReadModel()
    projection, metrics = await assigned_projection(topic, store)
    assert topic.seeks == [(0, None), (1, None), (2, None)]
    await drain(projection)
    oracle, expected = await traffic_oracle()
    assert await oracle.read(store) == expected
    frontier = await store.frontier(await store.current_namespace())
    assert frontier == {str(p): len(topic.log[p]) for p in range(PARTITIONS)}
    # advisory commits follow the batches
    assert topic.commits() == {int(p): o for p, o in frontier.items()}
    assert metrics.lag.labels("0")._value.get() == 0


async def test_a_restarted_projector_continues_from_the_stores_frontier() -> None:
    topic = FakeTopic(records_of(TRAFFIC.events))
    store = InMemoryReadModel()
    first, _ = await assigned_projection(topic, store)
    await step(first)
    await step(first)
    frontier = await store.frontier(await store.current_namespace())
    restarted = FakeTopic(topic.log)
    second, _ = await assigned_projection(restarted, store)
    assert restarted.seeks == [(p, frontier[str(p)]) for p in range(PARTITIONS)]
    await drain(second)
    oracle, expected = await traffic_oracle()
    assert await oracle.read(store) == expected


class FlakyStore(InMemoryReadModel):
    """Refuses ``failures`` writes (as Redis does while it restarts), then works."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    async def apply(
        self, namespace: str, write_sets: Sequence[WriteSet], *, live: bool
    ) -> list[Outcome]:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("store down")
        return await super().apply(namespace, write_sets, live=live)

    async def load_views(
        self, namespace: str, conversation_ids: Collection[str]
    ) -> dict[str, ConversationView]:
        return await super().load_views(namespace, conversation_ids)


async def test_a_batch_is_retried_until_the_store_takes_it() -> None:
    topic = FakeTopic(records_of(TRAFFIC.events))
    store = FlakyStore(failures=3)
    projection, metrics = await assigned_projection(topic, store)
    await drain(projection)
    assert metrics.store_errors._value.get() == 3
    assert metrics.store_up._value.get() == 1
    oracle, expected = await traffic_oracle()
    assert await oracle.read(store) == expected


async def test_a_rebuilt_namespace_is_followed_from_its_frontier() -> None:
    topic = FakeTopic(records_of(TRAFFIC.events), per_poll=10)
    store = InMemoryReadModel()
    projection, metrics = await assigned_projection(topic, store)
    await step(projection)
    old = await store.current_namespace()
    # a rebuild that reached 5 records per partition, switched, and dropped the old one
    rebuilt = await store.new_namespace()
    await store.set_frontier(rebuilt, {str(p): 5 for p in range(PARTITIONS)})
    await store.switch_to(rebuilt)
    await store.drop_namespace(old)
    topic.seeks.clear()
    await step(projection)  # MOVED: seeks back to the new frontier
    assert topic.seeks == [(p, 5) for p in range(PARTITIONS)]
    assert projection.namespace == rebuilt
    assert metrics.namespace_switches._value.get() == 1
    await drain(projection)
    # records before 5 were the rebuild's job: the new namespace lacks exactly those
    early = {
        orjson.loads(value)["conversation_id"]
        for p in range(PARTITIONS)
        for value in topic.log[p][:5]
    }
    late = Oracle()
    await late.fold(e for e in TRAFFIC.events if e.conversation_id not in early)
    for cid in late.conversations:
        assert await store.conversation(cid) == await late.store.conversation(cid)


async def test_an_unreadable_record_is_skipped_counted_and_passed() -> None:
    log = records_of(TRAFFIC.events)
    log[1].insert(2, b"not json at all")
    topic = FakeTopic(log)
    store = InMemoryReadModel()
    projection, metrics = await assigned_projection(topic, store)
    await drain(projection)
    assert metrics.skipped.labels("unreadable")._value.get() == 1
    frontier = await store.frontier(await store.current_namespace())
    assert frontier["1"] == len(log[1])
    oracle, expected = await traffic_oracle()
    assert await oracle.read(store) == expected


async def test_a_newer_format_stops_its_partition_and_projects_everything_else() -> None:
    """Regression: a newer-format record made the projector skip it *and every
    valid record fetched with it*, then store a position past them (149 of 210
    conversations never projected). Now its partition stops at it, paused with
    its frontier on the record, and every other record is projected."""
    log = records_of(TRAFFIC.events)
    poison_at = 3
    log[0].insert(poison_at, orjson.dumps({"type": "EventBatch", "v": 99, "events": []}))
    topic = FakeTopic(log, per_poll=1000)
    store = InMemoryReadModel()
    projection, metrics = await assigned_projection(topic, store)
    await drain(projection)
    assert list(projection.stopped) == [0]
    assert projection.stalled is not None and "events partition 0 offset 3" in projection.stalled
    assert "99" in projection.stalled
    frontier = await store.frontier(await store.current_namespace())
    assert frontier == {"0": poison_at, "1": len(log[1]), "2": len(log[2])}
    assert metrics.skipped.labels("newer_format")._value.get() == 1
    kept = [
        event
        for partition, records in log.items()
        for record in (records[:poison_at] if partition == 0 else records)
        for event in decode_batch(record).events
    ]
    oracle = await Oracle().fold(kept)
    assert await oracle.read(store) == await oracle.read()
    await drain(projection)  # it stays stopped: nothing more of partition 0 is read
    assert (await store.frontier(await store.current_namespace()))["0"] == poison_at


async def test_a_store_that_lost_its_last_writes_is_refilled_from_its_frontier() -> None:
    """Redis killed with writes not yet in its AOF comes back older than the
    projector's cache: the projector must read the position back, not trust its own."""
    topic = FakeTopic(records_of(TRAFFIC.events), per_poll=10)
    store = FlakyStore(failures=0)
    projection, _ = await assigned_projection(topic, store)
    await step(projection)
    snapshot = copy.deepcopy(store.__dict__)
    await step(projection)
    await step(projection)
    store.__dict__.update(copy.deepcopy(snapshot))  # the crash lost two batches
    store.failures = 1  # ...and the next write saw it down
    await drain(projection)
    oracle, expected = await traffic_oracle()
    assert await oracle.read(store) == expected


async def test_the_projection_follows_the_log_through_the_shared_loop() -> None:
    """``follow`` runs it as the projector service does: the group's assignment is
    sought to the frontier, batches are projected as they come, a rebalance moves
    a partition back to where the store stands, and stopping leaves the group."""
    topic = FakeTopic(records_of(TRAFFIC.events), per_poll=10)
    store = InMemoryReadModel()
    first = FakeTopic(topic.log, per_poll=10)  # a first run projects part of the log
    projection, _ = await assigned_projection(first, store)
    await step(projection)
    frontier = await store.frontier(await store.current_namespace())
    projection = LiveProjection(topic, store, ProjectorMetrics(), retry_seconds=0)
    stopping = asyncio.Event()
    caught_up = {str(p): len(topic.log[p]) for p in range(PARTITIONS)}
    seeks: list[list[tuple[int, int | None]]] = []

    async def handle(records: list[LogRecord]) -> None:
        await projection.handle(records)
        done = await store.frontier(await store.current_namespace())
        if not seeks:  # after one batch, partition 0 goes to another member and back
            seeks.append(list(topic.seeks))
            topic.seeks.clear()
            await topic.rebalance([1, 2])
            await topic.rebalance([0, 1, 2])
            seeks.append(list(topic.seeks))
        elif done == caught_up:
            stopping.set()

    await asyncio.wait_for(
        follow(topic, handle, projection.positions, stopping=stopping, wait=0.01), 10
    )
    assert seeks[0] == [(p, frontier[str(p)]) for p in range(PARTITIONS)]
    after_one = [(p, frontier[str(p)] + 10) for p in range(PARTITIONS)]
    assert seeks[1] == after_one[1:] + after_one  # each assignment starts at the frontier
    oracle, expected = await traffic_oracle()
    assert await oracle.read(store) == expected
    assert topic.commits() == {p: len(topic.log[p]) for p in range(PARTITIONS)}
    with pytest.raises(RuntimeError):
        topic.assigned()  # stopped: the group is left
