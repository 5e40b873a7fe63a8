"""The reward ledger (policy/rewards.py) on long streams: folded in any chunks it
gives the same tallies, and its counted lead rate stays true at every moment.
Thousands of conversations folded event by event (compute-bound, no I/O): these
run with the integration tier; tests/unit/test_policy_rewards.py has the rules
case by case.
"""

from __future__ import annotations

import random

from policy.rewards import RewardLedger
from schemas.events import Event
from tests.unit.test_policy_rewards import FLOW, HOUR, MINUTE, T0, Conversation


def stream(n: int, lead_rate: float = 0.2, seed: int = 7) -> list[Event]:
    """``n`` conversations, one every 20 s, each with one decision among three edges
    and a known lead rate: leads come a minute after the start (final at once), the
    others complete without a lead after two minutes (a third) or are abandoned after
    their decision (the rest: final only ``idle`` seconds later); a few converted
    visitors come back after an hour. Events in the log's order (by time)."""
    rng = random.Random(seed)
    events: list[Event] = []
    for i in range(n):
        conv = Conversation(f"c{i:05d}", at=T0 + 20 * i).start().decide("q1", rng.choice("abc"))
        if rng.random() < lead_rate:
            conv.lead(after=55).complete(lead=True, after=0)
        elif rng.random() < 1 / 3:
            conv.complete(lead=False, after=115)
        elif rng.random() < 0.05:
            conv.lead(after=HOUR)  # abandoned, then back: a late lead
        events.extend(conv)
    events.sort(key=lambda e: (e.at, e.conversation_id, e.seq))
    return events


def folded(events: list[Event], chunk: int) -> RewardLedger:
    ledger = RewardLedger(idle_seconds=30 * MINUTE)
    for i in range(0, len(events), chunk):
        ledger.observe(events[i : i + chunk])
        ledger.expire()
    return ledger


def test_the_same_log_folded_twice_or_in_chunks_gives_the_same_tallies() -> None:
    events = stream(600)
    once, again = folded(events, len(events)), folded(events, len(events))
    halves, singles = folded(events, len(events) // 2 + 1), folded(events, 1)
    assert once.flows[FLOW].trials() > 300
    for ledger in (again, halves, singles):
        assert ledger.flows == once.flows
        assert ledger.late_leads == once.late_leads
        assert ledger.open_conversations() == once.open_conversations()
    assert once.late_leads[FLOW] > 0


def test_the_tallies_keep_the_true_lead_rate_at_every_moment() -> None:
    """Regression (issue 16): leads counted at once and failures a day later made the
    first fit see about 100% successes. Folded event by event, with expiry at every
    tick, the counted rate stays near the stream's 20% from the first 100 outcomes on."""
    events = stream(3000)
    ledger = RewardLedger(idle_seconds=30 * MINUTE)
    rates = []
    for i, event in enumerate(events):
        ledger.observe([event])
        if i % 25 == 0:
            ledger.expire()
            counts = ledger.flows.get(FLOW)
            if counts is not None and counts.trials() >= 100:
                rates.append(sum(t.successes for t in counts.tallies.values()) / counts.trials())
    assert len(rates) > 100
    assert all(0.1 <= rate <= 0.3 for rate in rates), (min(rates), max(rates))
