"""The reward ledger: a fold of the event log into per-cell outcome counts."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from policy.features import Cell, cell_of, labels
from policy.reward_conversations import DEFAULT_HORIZON_SECONDS
from policy.reward_counts import FlowCounts, FlowKey, OutcomeKey, Tally
from policy.rewards import RewardLedger
from schemas.commands import VisitorContext
from schemas.events import (
    ButtonPressed,
    ConversationAbandoned,
    ConversationCompleted,
    ConversationStarted,
    EdgeChosen,
    Event,
    LeadCaptured,
    VisitorNudged,
    event_id,
)

T0 = 1_767_258_000.0  # 2026-01-01T09:00:00Z: morning in UTC
HOUR = 3600.0
MINUTE = 60.0
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

    def complete(self, lead: bool = False, after: float = 5.0) -> Conversation:
        self.events.append(
            ConversationCompleted(**self._header(after), node_id="end", lead_captured=lead)
        )
        return self

    def nudged(self, after: float) -> Conversation:
        self.events.append(VisitorNudged(**self._header(after), node_id="q2", idle_seconds=after))
        return self

    def abandoned(self, after: float) -> Conversation:
        self.events.append(
            ConversationAbandoned(**self._header(after), node_id="q2", idle_seconds=after)
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


def later(at: float) -> ButtonPressed:
    """An event of another conversation (one that started before the log's start) at
    ``at``: it moves the log's time on and nothing else."""
    seq = int(at - T0) + 2
    return ButtonPressed(
        conversation_id="elsewhere",
        seq=seq,
        id=event_id("elsewhere", seq),
        at=at,
        command_seq=seq,
        node_id="q1",
        button_id="b",
    )


def test_no_lead_within_the_horizon_is_a_failure() -> None:
    """A conversation still going (never idle) is a failure when its window closes."""
    ledger = RewardLedger(horizon_seconds=HOUR)
    busy = Conversation("c1").start().decide("q1", "b")
    for _ in range(2):
        busy.at += 20 * MINUTE - 5.0
        busy.press()  # an event every 20 minutes: never idle
    ledger.observe(busy)
    ledger.observe([later(T0 + HOUR - 1)])
    assert ledger.expire() == 0  # still open
    assert ledger.flows[FLOW].tallies == {}
    ledger.observe([later(T0 + HOUR)])
    assert ledger.expire() == 1
    assert ledger.flows[FLOW].tallies == {key("q1", "b"): Tally(1, 0)}
    assert ledger.flows[FLOW].conversations == 1
    ledger.observe([later(T0 + 10 * HOUR)])
    assert ledger.expire() == 0  # counted once


def test_expiry_follows_the_newest_event_by_default() -> None:
    ledger = RewardLedger(horizon_seconds=HOUR)
    ledger.observe(Conversation("old").start().decide("q1", "a"))
    ledger.observe(Conversation("new", at=T0 + 2 * HOUR).start().decide("q1", "c"))
    assert ledger.latest_event_at == ledger.watermark == T0 + 2 * HOUR + 5
    assert ledger.expire() == 1
    assert set(ledger.flows[FLOW].tallies) == {key("q1", "a")}
    assert ledger.open_conversations() == 1


def test_expiry_out_of_start_order_and_after_leads() -> None:
    """Events interleave across partitions: expiry goes by each conversation's start."""
    ledger = RewardLedger(horizon_seconds=HOUR, idle_seconds=HOUR)
    ledger.observe(Conversation("late", at=T0 + 30 * MINUTE).start().decide("q1", "a"))
    ledger.observe(Conversation("early").start().decide("q1", "b").lead())
    ledger.observe(Conversation("mid", at=T0 + 10 * MINUTE).start().decide("q1", "c"))
    ledger.observe([later(T0 + HOUR + 20 * MINUTE)])
    assert ledger.expire() == 1  # "mid" only; "early" had its lead
    tallies = ledger.flows[FLOW].tallies
    assert tallies == {key("q1", "b"): Tally(1, 1), key("q1", "c"): Tally(1, 0)}
    ledger.observe([later(T0 + 2 * HOUR)])
    assert ledger.expire() == 1  # "late"


def test_conversations_without_decisions_do_not_count() -> None:
    ledger = RewardLedger(horizon_seconds=HOUR)
    ledger.observe(Conversation("lead-only").start().press().lead())
    ledger.observe(Conversation("nothing").start().press())
    ledger.observe([later(T0 + 2 * HOUR)])
    assert ledger.expire() == 1
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
    ledger = RewardLedger(idle_seconds=DEFAULT_HORIZON_SECONDS)  # a ten-hour pause
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


def test_a_loop_through_one_decision_point_counts_once_for_its_first_decision() -> None:
    """Regression: a conversation that passed one decision point twice was counted
    twice there (a lead weighed double); now once, for its first decision at that
    point, while each other point it passed counts once too."""
    ledger = RewardLedger()
    ledger.observe(
        Conversation("loop")
        .start()
        .decide("q1", "a")
        .decide("q2", "b")
        .decide("q1", "c")  # back to q1: not counted again
        .decide("q1", "a")
        .lead()
    )
    assert ledger.flows[FLOW].tallies == {key("q1", "a"): Tally(1, 1), key("q2", "b"): Tally(1, 1)}
    assert ledger.flows[FLOW].trials() == 2


def test_since_gives_the_outcomes_added_after_a_copy() -> None:
    ledger = RewardLedger(horizon_seconds=HOUR)
    ledger.observe(Conversation("c1").start().decide("q1", "a").lead())
    ledger.observe(Conversation("c2").start().decide("q1", "b").lead())
    earlier = ledger.flows[FLOW].copy()
    ledger.observe(Conversation("c3").start().decide("q1", "a"))
    ledger.observe(Conversation("c4").start().decide("q1", "c").lead())
    ledger.observe([later(T0 + 2 * HOUR)])
    ledger.expire()
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


# ---- final outcomes: completion, abandonment, the window; counted in start order ----------


def test_a_completion_is_final_at_once_with_a_lead_or_without() -> None:
    """Regression: a conversation that completed without a lead stayed open until its
    horizon (a day later) while leads counted at once."""
    ledger = RewardLedger()
    ledger.observe(Conversation("no").start().decide("q1", "a").complete(lead=False))
    assert ledger.flows[FLOW].tallies == {key("q1", "a"): Tally(1, 0)}
    ledger.observe(Conversation("yes", at=T0 + 60).start().decide("q1", "b").lead().complete(True))
    assert ledger.flows[FLOW].tallies == {key("q1", "a"): Tally(1, 0), key("q1", "b"): Tally(1, 1)}
    assert ledger.open_conversations() == 0 and ledger.pending_outcomes() == 0


def test_abandonment_is_decided_by_the_log_s_time_after_idle_seconds_not_before() -> None:
    """Regression: conversations were expired against the wall clock, so two folds of
    one log differed. Abandoned = no event of the conversation for ``idle`` seconds of
    the log's own time (its watermark); a later wall clock changes nothing."""
    ledger = RewardLedger(idle_seconds=30 * MINUTE)
    ledger.observe(Conversation("c1").start().decide("q1", "a"))  # its last event: T0 + 5
    ledger.observe([later(T0 + 5 + 30 * MINUTE - 1)])
    assert ledger.expire() == 0
    assert ledger.expire(T0 + 10 * HOUR) == 0  # the wall clock: past the log's time
    assert ledger.open_conversations() == 1 and ledger.flows[FLOW].tallies == {}
    ledger.observe([later(T0 + 5 + 30 * MINUTE)])
    assert ledger.expire() == 1
    assert ledger.flows[FLOW].tallies == {key("q1", "a"): Tally(1, 0)}
    assert ledger.open_conversations() == 0


def test_an_event_after_a_long_pause_first_ends_the_conversation_as_abandoned() -> None:
    """Whether the fold expired in between or not, a pause of ``idle`` seconds ended
    the conversation: what comes after it is not counted."""
    ledger = RewardLedger(idle_seconds=30 * MINUTE)
    ledger.observe(
        Conversation("c1").start().decide("q1", "a").decide("q2", "b", after=30 * MINUTE)
    )
    assert ledger.flows[FLOW].tallies == {key("q1", "a"): Tally(1, 0)}


def test_a_final_outcome_waits_for_the_conversations_that_started_before_it() -> None:
    """Leads are final sooner than failures; counting outcomes only in the order the
    conversations started (each once all before it are final) keeps the tallies an
    unbiased sample at every moment. Other flow versions are not held back."""
    ledger = RewardLedger(idle_seconds=30 * MINUTE)
    ledger.observe(Conversation("first").start().decide("q1", "a"))
    ledger.observe(Conversation("second", at=T0 + 60).start().decide("q1", "b").lead())
    other = FlowKey("quiz", 3)
    ledger.observe(Conversation("v3", at=T0 + 90).start(flow=other).decide("q1", "b").lead())
    assert ledger.flows[FLOW].tallies == {}
    assert ledger.pending_outcomes() == 1 and ledger.open_conversations() == 1
    assert ledger.flows[other].tallies == {key("q1", "b"): Tally(1, 1)}
    ledger.observe([later(T0 + HOUR)])
    ledger.expire()
    assert ledger.flows[FLOW].tallies == {key("q1", "a"): Tally(1, 0), key("q1", "b"): Tally(1, 1)}
    assert ledger.pending_outcomes() == 0


# ---- delayed outcomes: a lead after the conversation was abandoned --------------------------


def test_a_lead_after_abandonment_is_a_late_lead_and_the_failure_stands() -> None:
    """The rule (docs/policy.md): a final outcome is never changed. A lead that comes
    after the conversation was abandoned, within the window, is counted apart as a late
    lead (once, duplicates of its record aside); after the window it is not counted."""
    ledger = RewardLedger(horizon_seconds=HOUR, idle_seconds=30 * MINUTE)
    resumed = Conversation("c1").start().decide("q1", "a")
    ledger.observe(resumed)
    ledger.observe([later(T0 + 40 * MINUTE)])
    assert ledger.expire() == 1
    resumed.events.clear()
    resumed.at = T0 + 45 * MINUTE
    resumed.press().decide("q2", "b").lead()
    ledger.observe(resumed)
    ledger.observe(resumed.events[-1:])  # the lead's record again
    assert ledger.flows[FLOW].tallies == {key("q1", "a"): Tally(1, 0)}
    assert ledger.late_leads == {FLOW: 1}
    ledger.observe(Conversation("c2", at=T0 + 50 * MINUTE).start().decide("q1", "c"))
    ledger.observe([later(T0 + 2 * HOUR)])
    ledger.expire()
    ledger.observe(Conversation("c2", seq=2, at=T0 + 2 * HOUR + 1).lead())  # out of window
    assert ledger.late_leads == {FLOW: 1}
    assert ledger.flows[FLOW].tallies[key("q1", "c")] == Tally(1, 0)


def test_a_flows_abandonment_is_a_failure_at_once_and_a_nudge_is_not_activity() -> None:
    """A flow's ``abandon_after`` ends the outcome when it fires, long before the
    ledger's own idle time; the idle nudge before it does not keep it open."""
    ledger = RewardLedger(idle_seconds=HOUR)
    quiet = Conversation("c1").start().decide("q1", "a").nudged(60.0)
    ledger.observe(quiet)
    ledger.observe([later(T0 + 30 * MINUTE)])
    assert ledger.expire() == 0 and ledger.open_conversations() == 1
    ledger.observe(Conversation("c1", at=quiet.at, seq=quiet.seq).abandoned(10 * MINUTE))
    assert ledger.open_conversations() == 0
    assert ledger.flows[FLOW].tallies == {key("q1", "a"): Tally(1, 0)}
    idle = Conversation("c2").start().decide("q1", "b").nudged(60.0)
    ledger.observe(idle)
    ledger.observe([later(idle.at - 60.0 + HOUR)])  # an hour after its last visitor event
    assert ledger.expire() == 1  # the nudge did not move its activity on
