"""The Kafka-facing pieces of the policy without a broker: what the snapshot follower
does with each record, and how the policy service's events feed (on the in-memory
log follower) catches up, restarts, and expires conversations while some
partitions are still behind."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace

import pytest

from policy.events_feed import EventsFeed
from policy.flow_snapshots import flow_checker, uniform_snapshot
from policy.metrics import PolicyMetrics
from policy.reward_counts import FlowKey
from policy.rewards import RewardLedger
from policy.snapshot import Guardrails, encode_snapshot
from policy.snapshots_kafka import SnapshotFollower
from policy.thompson import ThompsonPolicy
from schemas.batches import encode_batch
from schemas.commands import VisitorContext
from schemas.events import ConversationStarted, EdgeChosen, Event, LeadCaptured
from services.catalog import FlowCatalog
from services.distributed.settings import KafkaSettings
from services.log_follower import LogRecord
from services.log_follower_fake import MemoryLog, MemoryLogFollower
from tests.unit.flows import quiz

T0 = 1_764_115_200.0


def follower() -> tuple[SnapshotFollower, ThompsonPolicy, list[str]]:
    policy = ThompsonPolicy()
    installed: list[str] = []
    out = SnapshotFollower(
        KafkaSettings(),
        policy,
        check=flow_checker(FlowCatalog([quiz(1)])),
        on_installed=lambda s: installed.append(s.version),
    )
    return out, policy, installed


def test_the_follower_installs_newer_snapshots_and_skips_the_rest(
    caplog: pytest.LogCaptureFixture,
) -> None:
    follow, policy, installed = follower()
    first = uniform_snapshot(quiz(1), "quiz@1#a", 10.0, Guardrails())
    second = replace(first, version="quiz@1#b", created_at=20.0)
    with caplog.at_level(logging.INFO, "leadflow.policy.snapshots"):
        assert follow.offer(encode_snapshot(first), 0)
        assert follow.offer(encode_snapshot(second), 1)
        assert not follow.offer(encode_snapshot(replace(first, version="quiz@1#old")), 2)
        assert not follow.offer(b"not json", 3)
        assert not follow.offer(encode_snapshot(replace(first, flow_version=2)), 4)
        assert not follow.offer(None, 5)
    assert installed == ["quiz@1#a", "quiz@1#b"]
    assert policy.snapshots["quiz"].version == "quiz@1#b"
    assert (follow.installed, follow.skipped) == (2, 2)
    assert "policy snapshot at offset 3 skipped" in caplog.text
    assert "not served here" in caplog.text
    assert "quiz@1#old not newer" in caplog.text


def started(cid: str, at: float) -> ConversationStarted:
    return ConversationStarted(
        conversation_id=cid,
        seq=1,
        id=f"{cid}-1",
        at=at,
        command_seq=1,
        flow_id="quiz",
        flow_version=1,
        site_id="s",
        context=VisitorContext(),
    )


def chosen(cid: str, at: float) -> EdgeChosen:
    return EdgeChosen(
        conversation_id=cid,
        seq=2,
        id=f"{cid}-2",
        at=at,
        command_seq=2,
        node_id="size",
        button_id="big",
        candidates=("colour", "extra", "note"),
        chosen="extra",
        propensity=1 / 3,
        policy_version="uniform-v1",
        seed=1,
    )


def lead(cid: str, at: float) -> LeadCaptured:
    return LeadCaptured(
        conversation_id=cid,
        seq=3,
        id=f"{cid}-3",
        at=at,
        command_seq=3,
        node_id="contact",
        site_id="s",
        fields_present=("email",),
        consent=True,
        sealed="x",
    )


def record(partition: int, offset: int, events: list[Event]) -> LogRecord:
    return LogRecord(partition, offset, encode_batch(events))


def test_a_lead_in_a_lagging_partition_is_not_taken_for_a_failure() -> None:
    """Partition 0 is read up to two days later than partition 1, where a lead of a
    conversation that started on day 0 is still unread: no expiry may count it."""
    ledger = RewardLedger(horizon_seconds=3600.0)
    follower = MemoryLogFollower(MemoryLog(2))
    feed = EventsFeed(follower, ledger, PolicyMetrics())
    feed._apply([record(1, 0, [started("slow", T0), chosen("slow", T0 + 1)])])
    feed._apply([record(0, 0, [started("fast", T0 + 2 * 86400)])])
    feed._expire_behind({0: 5, 1: 5})  # both behind: expire against partition 1's time
    assert ledger.open_conversations() == 2
    feed._apply([record(1, 1, [lead("slow", T0 + 600)])])
    counts = ledger.flows[FlowKey("quiz", 1)]
    assert [(t.trials, t.successes) for t in counts.tallies.values()] == [(1, 1)]
    feed._apply([LogRecord(1, 2, b"garbage")])  # skipped, logged
    assert feed._positions == {0: 1, 1: 3}
    feed._expire_behind({})  # nothing behind: the log's own time takes over
    assert ledger.open_conversations() == 1  # "fast" has no decision: nothing counted
    assert feed.expire() == 0  # "fast" started at the newest time read: not idle yet
    feed._apply([record(0, 1, [started("later", T0 + 2 * 86400 + 3600)])])
    assert feed.expire() == 1
    assert ledger.open_conversations() == 1  # "later"


def events_log() -> tuple[MemoryLog, int]:
    """Two partitions of decisions and leads, a trailing transaction marker in
    partition 0 and an unreadable record in partition 1; returns the log and how
    many events it holds."""
    log = MemoryLog(2)
    events = 0
    for i in range(4):
        cid = f"c{i}"
        batches: list[list[Event]] = [[started(cid, T0 + i), chosen(cid, T0 + i)]]
        if i % 2 == 0:
            batches.append([lead(cid, T0 + i + 60)])
        for batch in batches:
            log.append(i % 2, encode_batch(batch))
            events += len(batch)
    log.gap(0)  # a transaction's marker: the end lies past the last record
    log.append(1, b"garbage")
    return log, events


class Flaky(MemoryLogFollower):
    """Its second and third polls fail as a lost broker makes them fail."""

    def __init__(self, log: MemoryLog) -> None:
        super().__init__(log)
        self.polls = 0
        self.starts = 0

    async def start(self) -> None:
        self.starts += 1
        await super().start()

    async def poll(self, max_records: int = 5_000, wait: float = 0.2) -> list[LogRecord]:
        self.polls += 1
        if self.polls in (2, 3):
            raise ConnectionError("broker gone")
        return await super().poll(1, wait)


async def folded(feed: EventsFeed, records: int, within: float = 5.0) -> None:
    """Until the feed has folded ``records`` records (it polls every ``wait``; the
    in-memory log wakes its poll at an append), checked every millisecond."""
    for _ in range(int(within * 1000)):
        if feed.records >= records:
            return
        await asyncio.sleep(0.001)
    raise AssertionError(f"{feed.records} of {records} records folded in {within} s")


@pytest.mark.parametrize("flaky", [False, True])
async def test_the_feed_catches_up_with_the_log_it_found_then_follows_it(flaky: bool) -> None:
    """Caught up once what the log held at its start is read (gaps included);
    restarted after broker trouble, it goes on from its own positions: every
    record is folded once."""
    log, events = events_log()
    ledger = RewardLedger(horizon_seconds=3600.0)
    metrics = PolicyMetrics()
    follower = Flaky(log) if flaky else MemoryLogFollower(log)
    feed = EventsFeed(follower, ledger, metrics, retry_seconds=0, wait=0.01)
    task = asyncio.create_task(feed.run())
    try:
        await asyncio.wait_for(feed.caught_up.wait(), 5)
        assert feed.records == 7
        assert metrics.events._value.get() == events
        assert metrics.skipped._value.get() == 1
        counts = ledger.flows[FlowKey("quiz", 1)]
        assert sum(t.trials for t in counts.tallies.values()) == 2  # the two leads
        assert ledger.open_conversations() == 2
        log.append(1, encode_batch([lead("c1", T0 + 120)]))  # after the catch-up
        await folded(feed, 8)
        assert sum(t.successes for t in counts.tallies.values()) == 3
        assert metrics.lag.labels("1")._value.get() == 0
        if flaky:
            assert isinstance(follower, Flaky) and follower.starts == 3
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_an_empty_log_is_caught_up_at_once() -> None:
    feed = EventsFeed(
        MemoryLogFollower(MemoryLog(3)), RewardLedger(3600.0), PolicyMetrics(), wait=0.01
    )
    task = asyncio.create_task(feed.run())
    try:
        await asyncio.wait_for(feed.caught_up.wait(), 5)
        assert feed.records == 0
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
