"""Going back in the policy's attribution: a decision the visitor went back from
is a failure whatever follows, counted with its conversation in start order; a
new decision at the same point is a separate trial with the conversation's
outcome; the answers later decisions saw are the ones that stand."""

from __future__ import annotations

from policy.evaluation.trajectories import fold as fold_trajectories
from policy.reward_conversations import DEFAULT_HORIZON_SECONDS
from policy.reward_counts import Tally
from policy.rewards import RewardLedger
from schemas.commands import Command, GoBack, SubmitLead, VisitorContext
from schemas.events import ButtonPressed, ConversationStarted, EdgeChosen, Event, event_id
from tests.unit.test_decider_v2 import CID, Conversation, FixedPolicy, answer, press, start


def back(seq: int, node: str) -> GoBack:
    return GoBack(conversation_id=CID, seq=seq, at=100.0 + seq, node_id=node)


def lead(seq: int) -> SubmitLead:
    fields = {"email": "eve@example.com", "consent": "yes"}
    return SubmitLead(
        conversation_id=CID, seq=seq, at=100.0 + seq, node_id="contact", fields=fields
    )


def played(*commands: Command) -> list[Event]:
    """On mobile, a pitched roof is a decision point (size or contact): contact."""
    c = Conversation(FixedPolicy("contact"))
    c.send(start(device="mobile"))
    for command in commands:
        c.send(command)
    return c.events


CHANGED_MIND = (
    answer(2, "ask_name", "Eve"),
    press(3, "roof", "pitched"),  # decided: contact
    back(4, "contact"),  # the visitor turned back from it
    press(5, "roof", "pitched"),  # decided again: contact
    lead(6),
)


def tallies(ledger: RewardLedger) -> dict[tuple[str, str, str], Tally]:
    (counts,) = ledger.flows.values()
    out: dict[tuple[str, str, str], Tally] = {}
    for key, tally in counts.tallies.items():
        total = out.setdefault((key.node_id, key.button_id, key.edge), Tally())
        total.trials += tally.trials
        total.successes += tally.successes
    return out


def test_a_decision_gone_back_from_is_a_failure_and_the_new_one_gets_the_lead() -> None:
    ledger = RewardLedger()
    ledger.observe(played(*CHANGED_MIND))
    assert tallies(ledger) == {("roof", "pitched", "contact"): Tally(2, 1)}
    assert ledger.flows[next(iter(ledger.flows))].conversations == 1
    outcomes = [o for flow in ledger.take_outcomes().values() for o in flow]
    assert [(o.success, o.answers) for o in outcomes] == [
        (False, (("ask_name", "answered"), ("roof", "pitched"))),
        # the withdrawn press is forgotten; the typed name stands, as the decider said
        (True, (("ask_name", "answered"), ("roof", "pitched"))),
    ]


def elsewhere(at: float) -> ButtonPressed:
    """An event of a conversation that started before the log: it moves time on."""
    return ButtonPressed(
        conversation_id="elsewhere",
        seq=2,
        id=event_id("elsewhere", 2),
        at=at,
        command_seq=2,
        node_id="q",
        button_id="b",
    )


def test_going_back_and_leaving_is_two_failures() -> None:
    ledger = RewardLedger(idle_seconds=60.0)
    ledger.observe(played(*CHANGED_MIND[:4]))
    ledger.observe([elsewhere(1_000.0)])
    assert ledger.expire() == 1
    assert tallies(ledger) == {("roof", "pitched", "contact"): Tally(2, 0)}


def test_a_withdrawn_failure_waits_for_older_conversations() -> None:
    """Counted at the go back, it would come before the outcomes of conversations
    that started earlier and are still open: it waits, in start order."""
    older = ConversationStarted(
        conversation_id="older",
        seq=1,
        id=event_id("older", 1),
        at=50.0,
        command_seq=1,
        flow_id="roofer",
        flow_version=1,
        site_id="s",
        context=VisitorContext(device="mobile"),
    )
    ledger = RewardLedger()
    ledger.observe([older, *played(*CHANGED_MIND)])
    assert not any(counts.tallies for counts in ledger.flows.values())
    assert ledger.pending_outcomes() == 1  # final (a lead), waiting for "older"
    ledger.observe([elsewhere(50.0 + DEFAULT_HORIZON_SECONDS)])
    ledger.expire()
    assert tallies(ledger) == {("roof", "pitched", "contact"): Tally(2, 1)}


def test_trajectories_keep_both_decisions_and_the_answers_that_stand() -> None:
    events = played(*CHANGED_MIND)
    result = fold_trajectories(events, as_of=100.0 + DEFAULT_HORIZON_SECONDS + 10)
    (trajectory,) = result.trajectories
    assert trajectory.reward == 1.0
    assert [d.answers for d in trajectory.decisions] == [
        (("ask_name", "answered"), ("roof", "pitched")),
        (("ask_name", "answered"), ("roof", "pitched")),
    ]
    assert sum(isinstance(e, EdgeChosen) for e in events) == 2


def test_going_back_and_forth_counts_one_failure_per_point() -> None:
    """Five rounds of press and back at a decision point: one failure, not five,
    and the decision that stands with the lead."""
    rounds: list[Command] = [answer(2, "ask_name", "Eve")]
    seq = 3
    for _ in range(5):
        rounds += [press(seq, "roof", "pitched"), back(seq + 1, "contact")]
        seq += 2
    rounds += [press(seq, "roof", "pitched"), lead(seq + 1)]
    events = played(*rounds)
    assert sum(isinstance(e, EdgeChosen) for e in events) == 6
    ledger = RewardLedger()
    ledger.observe(events)
    assert tallies(ledger) == {("roof", "pitched", "contact"): Tally(2, 1)}
