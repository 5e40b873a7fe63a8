"""The Kafka-facing pieces of the policy without a broker: what the snapshot follower
does with each record, and how the policy service's events feed expires
conversations while some partitions are still behind."""

from __future__ import annotations

import logging
from dataclasses import replace
from types import SimpleNamespace

import pytest

from app.policy import EventsFeed, PolicyMetrics
from policy.flow_snapshots import flow_checker, uniform_snapshot
from policy.rewards import FlowKey, RewardLedger
from policy.snapshot import Guardrails, encode_snapshot
from policy.snapshots_kafka import SnapshotFollower
from policy.thompson import ThompsonPolicy
from schemas.batches import encode_batch
from schemas.commands import VisitorContext
from schemas.events import ConversationStarted, EdgeChosen, Event, LeadCaptured
from services.catalog import FlowCatalog
from services.distributed.settings import KafkaSettings
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


def record(offset: int, events: list[Event]) -> SimpleNamespace:
    return SimpleNamespace(offset=offset, value=encode_batch(events))


def test_a_lead_in_a_lagging_partition_is_not_taken_for_a_failure() -> None:
    """Partition 0 is read up to two days later than partition 1, where a lead of a
    conversation that started on day 0 is still unread: no expiry may count it."""
    ledger = RewardLedger(horizon_seconds=3600.0)
    feed = EventsFeed(KafkaSettings(partitions=2), ledger, PolicyMetrics(), wall=lambda: T0 + 1e6)
    feed._apply(1, [record(0, [started("slow", T0), chosen("slow", T0 + 1)])])
    feed._apply(0, [record(0, [started("fast", T0 + 2 * 86400)])])
    feed._expire_behind({0: 5, 1: 5})  # both behind: expire against partition 1's time
    assert ledger.open_conversations() == 2
    feed._apply(1, [record(1, [lead("slow", T0 + 600)])])
    counts = ledger.flows[FlowKey("quiz", 1)]
    assert [(t.trials, t.successes) for t in counts.tallies.values()] == [(1, 1)]
    feed._apply(1, [SimpleNamespace(offset=2, value=b"garbage")])  # skipped, logged
    assert feed._positions == {0: 1, 1: 3}
    feed._expire_behind({})  # nothing behind: the wall clock takes over
    assert ledger.open_conversations() == 1  # "fast" has no decision: nothing counted
    assert feed.expire() == 1
    assert ledger.open_conversations() == 0
