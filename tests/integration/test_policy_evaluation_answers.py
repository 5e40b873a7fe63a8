"""Off-policy evaluation of answer-aware snapshots: each logged decision carries
the answers the decider gave the policy, and a snapshot candidate is asked with
them, so its estimate is of the policy that would really run.

It simulates thousands of logged conversations (compute-bound, no I/O), so the
module runs with the integration tier, not in the unit tier's 2 s.
"""

from __future__ import annotations

import random
from dataclasses import replace

import numpy as np
import pytest

from policy.evaluation.candidates import SnapshotCandidate
from policy.evaluation.summary import evaluate
from policy.evaluation.trajectories import Trajectory, fold
from policy.features import FEATURE_NAMES, cell_index
from policy.snapshot import Guardrails, PointPosterior, PolicySnapshot
from policy.thompson import ThompsonPolicy
from schemas.commands import VisitorContext
from schemas.events import ButtonPressed, ConversationStarted, EdgeChosen, Event, LeadCaptured
from services.policy_port import DecisionPoint

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
CONTEXT = VisitorContext(device="mobile", utm_source="google", locale="en-GB", time_zone="UTC")
EDGES = ("a", "b")
SIZES = ("big", "small")
# P(lead) after the decision at q1/go: the best edge depends on the earlier answer
LEAD = {("big", "a"): 0.6, ("big", "b"): 0.2, ("small", "a"): 0.2, ("small", "b"): 0.6}


def header(cid: str, seq: int, at: float) -> dict[str, object]:
    return {"conversation_id": cid, "seq": seq, "id": f"{cid}/{seq}", "at": at, "command_seq": seq}


def started(cid: str) -> ConversationStarted:
    return ConversationStarted(
        **header(cid, 1, T0),  # type: ignore[arg-type]
        flow_id="quiz",
        flow_version=1,
        site_id="demo",
        context=CONTEXT,
    )


def pressed(cid: str, seq: int, node: str, button: str) -> ButtonPressed:
    return ButtonPressed(**header(cid, seq, T0 + seq), node_id=node, button_id=button)  # type: ignore[arg-type]


def chosen(cid: str, seq: int, node: str, edge: str, propensity: float = 0.5) -> EdgeChosen:
    return EdgeChosen(
        **header(cid, seq, T0 + seq),  # type: ignore[arg-type]
        node_id=node,
        button_id="go",
        candidates=EDGES,
        chosen=edge,
        propensity=propensity,
        policy_version="uniform-v1",
        seed=1,
    )


def lead(cid: str, seq: int) -> LeadCaptured:
    return LeadCaptured(
        **header(cid, seq, T0 + seq),  # type: ignore[arg-type]
        node_id="form",
        site_id="demo",
        fields_present=("email",),
        consent=True,
        sealed="x",
    )


def test_each_decision_gets_the_presses_before_it_with_its_own_last() -> None:
    """The answers are DecisionPoint.answers as the decider built them: every
    earlier press in order (a repeated question twice), the press at the point
    last; a log without that press gets it appended."""
    events: list[Event] = [
        started("c"),
        pressed("c", 2, "size", "big"),
        pressed("c", 3, "q1", "go"),
        chosen("c", 4, "q1", "a"),
        pressed("c", 5, "roof", "flat"),
        pressed("c", 6, "size", "small"),
        pressed("c", 7, "q2", "go"),
        chosen("c", 8, "q2", "b"),
        chosen("c", 9, "q3", "a"),  # no press logged before it
    ]
    (t,) = fold(events, as_of=T0 + 10 * 86400).trajectories
    assert [d.answers for d in t.decisions] == [
        (("size", "big"), ("q1", "go")),
        (("size", "big"), ("q1", "go"), ("roof", "flat"), ("size", "small"), ("q2", "go")),
        (
            ("size", "big"),
            ("q1", "go"),
            ("roof", "flat"),
            ("size", "small"),
            ("q2", "go"),
            ("q3", "go"),
        ),
    ]


def answer_snapshot(answers: bool = True) -> PolicySnapshot:
    """At q1/go: ``a`` wins every draw after ``size=big``, ``b`` after
    ``size=small``; without answer features both edges tie (``a`` wins)."""
    draws = 20
    names = ("answer:size=big", "answer:size=small") if answers else ()
    slopes = np.zeros((draws, 2, len(names)), np.float32)
    if answers:
        slopes[:, 0, 0], slopes[:, 1, 0] = 2.0, -2.0
        slopes[:, 0, 1], slopes[:, 1, 1] = -2.0, 2.0
    point = PointPosterior(
        node_id="q1",
        button_id="go",
        candidates=EDGES,
        base=np.zeros((draws, 2), np.float32),
        slopes=np.zeros((draws, 2, len(FEATURE_NAMES)), np.float32),
        answers=names,
        answer_slopes=slopes,
    )
    return PolicySnapshot(
        "quiz", 1, "quiz@1#answers" if answers else "quiz@1#blind", 1.0, {point.key: point},
        Guardrails(min_exploration=0.05),
    )  # fmt: skip


def true_value(snap: PolicySnapshot) -> float:
    """The snapshot's lead rate in the world of ``LEAD`` (sizes 50/50), exactly:
    the policy's own distribution for each answer, weighted by the lead rates."""
    policy = ThompsonPolicy()
    policy.install(snap)
    value = 0.0
    for size in SIZES:
        point = DecisionPoint(
            conversation_id="truth",
            command_seq=3,
            flow_id="quiz",
            flow_version=1,
            node_id="q1",
            button_id="go",
            candidates=EDGES,
            context=CONTEXT,
            answers=(("size", size), ("q1", "go")),
            at=T0 + 3,
        )
        dist = policy.distribution(point)
        assert dist is not None
        probs = dist.probabilities()
        value += 0.5 * sum(p * LEAD[(size, e)] for p, e in zip(probs, EDGES, strict=True))
    return value


def uniform_log(n: int, seed: int) -> list[Trajectory]:
    """``n`` conversations logged under the uniform policy: an answer to ``size``,
    the decision at q1/go, a lead with the probability of ``LEAD``."""
    rnd = random.Random(seed)
    events: list[Event] = []
    for i in range(n):
        cid = f"c{i}"
        size, edge = rnd.choice(SIZES), rnd.choice(EDGES)
        events += [
            started(cid),
            pressed(cid, 2, "size", size),
            pressed(cid, 3, "q1", "go"),
            chosen(cid, 4, "q1", edge),
        ]
        if rnd.random() < LEAD[(size, edge)]:
            events.append(lead(cid, 5))
    return list(fold(events, as_of=T0 + 10 * 86400).trajectories)


def test_a_snapshot_candidate_is_asked_with_the_decisions_answers() -> None:
    snap = answer_snapshot()
    policy = ThompsonPolicy()
    policy.install(snap)
    candidate = SnapshotCandidate(snap)
    t = uniform_log(40, seed=1)
    for trajectory in t:
        (d,) = trajectory.decisions
        point = DecisionPoint(
            conversation_id=trajectory.conversation_id,
            command_seq=0,
            flow_id="quiz",
            flow_version=1,
            node_id="q1",
            button_id="go",
            candidates=EDGES,
            context=CONTEXT,
            answers=d.answers,
            at=T0,
        )
        dist = policy.cell_distribution(point, cell_index(CONTEXT, T0 + 4))
        assert dist is not None
        assert candidate.probabilities(trajectory, d) == dist.probabilities()
        big = ("size", "big") in d.answers
        assert candidate.probabilities(trajectory, d)[0 if big else 1] == pytest.approx(0.95)


def test_ips_of_an_answer_aware_candidate_is_close_to_its_true_value() -> None:
    """Regression: decisions were evaluated without their answers, so an
    answer-aware snapshot was scored as if nobody had answered (here: as the
    answer-blind policy, 0.40 instead of 0.58)."""
    snap = answer_snapshot()
    truth = true_value(snap)
    blind_truth = true_value(answer_snapshot(answers=False))
    assert truth == pytest.approx(0.58) and blind_truth == pytest.approx(0.40)
    log = uniform_log(2500, seed=16)
    estimate = {e.estimator: e for e in evaluate(log, SnapshotCandidate(snap)).estimates}
    for name in ("ips", "snips", "dr"):
        assert abs(estimate[name].value - truth) < 4 * estimate[name].se
    # the answer-blind evaluation misses it by many standard errors
    unanswered = [
        replace(t, decisions=tuple(replace(d, answers=()) for d in t.decisions)) for t in log
    ]
    wrong = {e.estimator: e for e in evaluate(unanswered, SnapshotCandidate(snap)).estimates}
    assert abs(wrong["ips"].value - blind_truth) < 4 * wrong["ips"].se
    assert abs(wrong["ips"].value - truth) > 8 * wrong["ips"].se
