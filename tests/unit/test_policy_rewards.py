"""The reward ledger: a fold of the event log into per-cell outcome counts."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from policy.features import Cell, cell_of, labels
from policy.rewards import FlowCounts, FlowKey, OutcomeKey, RewardLedger, Tally
from schemas.commands import VisitorContext
from schemas.events import (
    ButtonPressed,
    ConversationStarted,
    EdgeChosen,
    Event,
    LeadCaptured,
    event_id,
)

T0 = 1_767_258_000.0  # 2026-01-01T09:00:00Z: morning in UTC
HOUR = 3600.0
MOBILE = VisitorContext(device="mobile", utm_source="google", locale="en-US")
START_CELL = cell_of(MOBILE, T0).key  # mobile|search|morning|en
FLOW = FlowKey("quiz", 2)


@dataclass
class Conversation:
    """Writes one conversation's events with consecutive seqs."""

    cid: str
    at: float = T0
    seq: int = 0
    events: list[Event] = field(default_factory=list)

    def _header(self, after: float) -> dict[str, Any]:
        self.seq += 1
        self.at += after
        return {
            "conversation_id": self.cid,
            "seq": self.seq,
            "id": event_id(self.cid, self.seq),
            "at": self.at,
            "command_seq": self.seq,
        }

    def start(self, context: VisitorContext = MOBILE, flow: FlowKey = FLOW) -> Conversation:
        self.events.append(
            ConversationStarted(
                **self._header(0.0),
                flow_id=flow.flow_id,
                flow_version=flow.flow_version,
                site_id="acme",
                context=context,
            )
        )
        return self

    def press(self, node: str = "q1") -> Conversation:
        self.events.append(ButtonPressed(**self._header(5.0), node_id=node, button_id="b"))
        return self

    def decide(
        self, node: str, chosen: str, features: tuple[str, ...] = (), after: float = 5.0
    ) -> Conversation:
        self.events.append(
            EdgeChosen(
                **self._header(after),
                node_id=node,
                button_id="b",
                candidates=("a", "b", "c"),
                chosen=chosen,
                propensity=1 / 3,
                policy_version="uniform-v1",
                seed=1,
                features=features,
            )
        )
        return self

    def lead(self, after: float = 10.0) -> Conversation:
        self.events.append(
            LeadCaptured(
                **self._header(after),
                node_id="form",
                site_id="acme",
                fields_present=("email",),
                consent=True,
                sealed="x",
            )
        )
        return self

    def __iter__(self) -> Iterator[Event]:
        return iter(self.events)


def key(node: str, edge: str, cell: str = START_CELL) -> OutcomeKey:
    return OutcomeKey(node, "b", edge, cell)


def test_a_lead_is_a_success_for_every_decision_of_the_conversation() -> None:
    ledger = RewardLedger()
    ledger.observe(Conversation("c1").start().press().decide("q1", "a").decide("q2", "c").lead())
    counts = ledger.flows[FLOW]
    assert counts.tallies == {key("q1", "a"): Tally(1, 1), key("q2", "c"): Tally(1, 1)}
    assert counts.conversations == 1
    assert counts.candidates == {("q1", "b"): ("a", "b", "c"), ("q2", "b"): ("a", "b", "c")}
    assert ledger.open_conversations() == 0


def test_no_lead_within_the_horizon_is_a_failure() -> None:
    ledger = RewardLedger(horizon_seconds=HOUR)
    ledger.observe(Conversation("c1").start().decide("q1", "b"))
    assert ledger.expire(now=T0 + HOUR - 1) == 0  # still open
    assert ledger.flows[FLOW].tallies == {}
    assert ledger.expire(now=T0 + HOUR) == 1
    assert ledger.flows[FLOW].tallies == {key("q1", "b"): Tally(1, 0)}
    assert ledger.flows[FLOW].conversations == 1
    assert ledger.expire(now=T0 + 10 * HOUR) == 0  # counted once


def test_expiry_follows_the_newest_event_by_default() -> None:
    ledger = RewardLedger(horizon_seconds=HOUR)
    ledger.observe(Conversation("old").start().decide("q1", "a"))
    ledger.observe(Conversation("new", at=T0 + 2 * HOUR).start().decide("q1", "c"))
    assert ledger.latest_event_at == T0 + 2 * HOUR + 5
    assert ledger.expire() == 1
    assert set(ledger.flows[FLOW].tallies) == {key("q1", "a")}
    assert ledger.open_conversations() == 1


def test_expiry_out_of_start_order_and_after_leads() -> None:
    """Events interleave across partitions: expiry goes by each conversation's start."""
    ledger = RewardLedger(horizon_seconds=HOUR)
    ledger.observe(Conversation("late", at=T0 + 30 * 60).start().decide("q1", "a"))
    ledger.observe(Conversation("early").start().decide("q1", "b").lead())
    ledger.observe(Conversation("mid", at=T0 + 10 * 60).start().decide("q1", "c"))
    assert ledger.expire(now=T0 + HOUR + 20 * 60) == 1  # "mid" only; "early" had its lead
    tallies = ledger.flows[FLOW].tallies
    assert tallies == {key("q1", "b"): Tally(1, 1), key("q1", "c"): Tally(1, 0)}
    assert ledger.expire(now=T0 + 2 * HOUR) == 1  # "late"


def test_conversations_without_decisions_do_not_count() -> None:
    ledger = RewardLedger(horizon_seconds=HOUR)
    ledger.observe(Conversation("lead-only").start().press().lead())
    ledger.observe(Conversation("nothing").start().press())
    assert ledger.expire(now=T0 + 2 * HOUR) == 1
    assert ledger.flows == {}
    assert ledger.open_conversations() == 0


def test_decisions_after_the_outcome_and_of_unknown_conversations_are_ignored() -> None:
    ledger = RewardLedger()
    ledger.observe(Conversation("c1").start().decide("q1", "a").lead().decide("q2", "b"))
    ledger.observe(Conversation("before-the-log", seq=7).decide("q1", "c").lead())
    assert ledger.flows[FLOW].tallies == {key("q1", "a"): Tally(1, 1)}
    assert ledger.flows[FLOW].conversations == 1


def test_outcomes_are_counted_in_the_cell_the_decision_logged() -> None:
    """A decision logs the cell it was conditioned on (here: the evening, hours after
    the start); without logged features (uniform policy) the start's cell counts."""
    evening = labels(Cell("mobile", "search", "evening", "en"))
    ledger = RewardLedger()
    ledger.observe(
        Conversation("c1")
        .start()
        .decide("q1", "a", features=evening, after=10 * HOUR)
        .decide("q2", "b")
        .decide("q3", "c", features=("device=watch",))  # not a cell: the start's
        .lead()
    )
    assert set(ledger.flows[FLOW].tallies) == {
        key("q1", "a", "mobile|search|evening|en"),
        key("q2", "b"),
        key("q3", "c"),
    }


def test_flow_versions_are_counted_apart() -> None:
    ledger = RewardLedger()
    ledger.observe(Conversation("v2").start().decide("q1", "a").lead())
    ledger.observe(Conversation("v3").start(flow=FlowKey("quiz", 3)).decide("q1", "a").lead())
    assert set(ledger.flows) == {FLOW, FlowKey("quiz", 3)}
    assert dict(iter(ledger))[FlowKey("quiz", 3)].trials() == 1


def test_repeated_decisions_at_one_point_each_count() -> None:
    ledger = RewardLedger()
    ledger.observe(Conversation("loop").start().decide("q1", "a").decide("q1", "a").lead())
    assert ledger.flows[FLOW].tallies == {key("q1", "a"): Tally(2, 2)}
    assert ledger.flows[FLOW].trials() == 2


def test_since_gives_the_outcomes_added_after_a_copy() -> None:
    ledger = RewardLedger(horizon_seconds=HOUR)
    ledger.observe(Conversation("c1").start().decide("q1", "a").lead())
    ledger.observe(Conversation("c2").start().decide("q1", "b").lead())
    earlier = ledger.flows[FLOW].copy()
    ledger.observe(Conversation("c3").start().decide("q1", "a"))
    ledger.observe(Conversation("c4").start().decide("q1", "c").lead())
    ledger.expire(now=T0 + 2 * HOUR)
    counts = ledger.flows[FLOW]
    delta = counts.since(earlier)
    assert delta.tallies == {key("q1", "a"): Tally(1, 0), key("q1", "c"): Tally(1, 1)}
    assert delta.conversations == 2
    assert delta.candidates == counts.candidates
    assert earlier.tallies == {key("q1", "a"): Tally(1, 1), key("q1", "b"): Tally(1, 1)}
    assert counts.since(counts.copy()).tallies == {}
    assert FlowCounts().since(FlowCounts()).conversations == 0


def test_a_record_written_twice_counts_once() -> None:
    """Regression: the ledger counted a decision twice when its events record was in
    the log twice (a zombie processor's write); readers deduplicate by (conversation,
    seq), a repeated start after the outcome included."""
    once, twice = RewardLedger(), RewardLedger()
    events = list(Conversation("c1").start().decide("q1", "a").decide("q2", "b").lead())
    once.observe(events)
    twice.observe([events[0], events[0], events[1], events[1], events[2]])
    twice.observe(events[1:])  # the whole tail again
    twice.observe(events[:2])  # and the start after the outcome
    assert twice.flows == once.flows
    assert twice.open_conversations() == 0
    assert twice.duplicates == 5  # the last decision: of a resolved conversation, ignored


def test_a_repeated_start_keeps_the_decisions_already_made() -> None:
    ledger = RewardLedger(horizon_seconds=HOUR)
    conversation = Conversation("c1").start().decide("q1", "a")
    ledger.observe(conversation)
    ledger.observe(conversation.events[:1])  # the start again, before the outcome
    ledger.observe(Conversation("c1", seq=2, at=T0 + 10).lead())
    assert ledger.flows[FLOW].tallies == {key("q1", "a"): Tally(1, 1)}
