"""The answers the policy learns and is evaluated with are the answers the decider
gave it: a free-text question answered (or skipped) before a decision point is in
``DecisionPoint.answers`` as ``(node, "answered")`` (never its value), and so in
the reward ledger's outcomes and in the trajectories of off-policy evaluation."""

from __future__ import annotations

from policy.evaluation.trajectories import TrajectoryFold
from policy.rewards import RewardLedger
from schemas.commands import SubmitLead
from tests.unit.test_decider_v2 import CID, Conversation, FixedPolicy, answer, press, start


def test_a_typed_answer_before_a_decision_is_recorded_as_the_decider_gave_it() -> None:
    policy = FixedPolicy("contact")
    c = Conversation(policy)
    c.send(start(device="mobile"))
    c.send(answer(2, "ask_name", "Ada"))
    c.send(press(3, "roof", "pitched"))  # mobile: a decision point after the typed answer
    fields = {"email": "ada@example.com", "consent": "true"}
    c.send(SubmitLead(conversation_id=CID, seq=4, at=104.0, node_id="contact", fields=fields))
    [point] = policy.seen
    assert point.answers == (("ask_name", "answered"), ("roof", "pitched"))
    assert all("Ada" not in value for _, value in point.answers)

    ledger = RewardLedger()
    ledger.observe(c.events)
    [[outcome]] = ledger.take_outcomes().values()
    assert outcome.answers == point.answers and outcome.success

    trajectories = TrajectoryFold(horizon_seconds=100.0)
    trajectories.observe(c.events)
    [trajectory] = trajectories.result(as_of=10_000.0).trajectories
    [decision] = trajectory.decisions
    assert decision.answers == point.answers
