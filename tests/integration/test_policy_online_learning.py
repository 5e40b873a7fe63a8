"""The online learner (policy/online.py, policy/laplace.py): recovers known weights,
prefers the right edge per earlier answer, relearns a flipped world within its documented horizon,
publishes deterministic snapshots, and seeds from a fit's snapshot.

Each test trains the learner on thousands of simulated outcomes (compute-bound,
no I/O), so the module runs with the integration tier, not in the unit tier's 2 s.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest

from policy.features import CELLS, FEATURE_NAMES, features
from policy.online import OnlineLearner
from policy.online_config import OnlineConfig, Outcome
from policy.snapshot import (
    Guardrails,
    PointPosterior,
    PolicySnapshot,
    decode_snapshot,
    encode_snapshot,
)
from policy.thompson import ThompsonPolicy
from policy.winners import win_shares
from schemas.commands import VisitorContext
from services.policy_port import DecisionPoint

KEY = ("q2", "b")
EDGES = ("x", "y")
MOBILE = FEATURE_NAMES.index("device=mobile")
PAID = FEATURE_NAMES.index("source=paid")
F = len(FEATURE_NAMES)

# truth: P(lead) = sigmoid(logit(edge, cell features, answers)); answers as a set of pairs
Truth = Callable[[str, np.ndarray, frozenset[tuple[str, str]]], float]


def batches(
    truth: Truth,
    conversations: int,
    rng: np.random.Generator,
    batch: int = 250,
    start: int = 0,
) -> list[list[Outcome]]:
    """Conversations with one decision each, edges uniform at random (the logging
    policy does not matter to the learner), cells and the 'size' answer at random."""
    out: list[list[Outcome]] = []
    rows: list[Outcome] = []
    for i in range(start, start + conversations):
        cell = int(rng.integers(len(CELLS)))
        size = ("size", "big" if rng.random() < 0.5 else "small")
        edge = EDGES[int(rng.integers(2))]
        p = 1.0 / (1.0 + math.exp(-truth(edge, features(CELLS[cell]), frozenset({size}))))
        rows.append(
            Outcome(f"c{i}", KEY[0], KEY[1], edge, cell, (size, KEY), bool(rng.random() < p))
        )
        if len(rows) == batch:
            out.append(rows)
            rows = []
    if rows:
        out.append(rows)
    return out


def learn(learner: OnlineLearner, data: list[list[Outcome]]) -> OnlineLearner:
    for rows in data:
        learner.observe(rows)
    return learner


def new(config: OnlineConfig | None = None) -> OnlineLearner:
    return OnlineLearner("quiz", 1, {KEY: EDGES}, config)


def decision(answers: tuple[tuple[str, str], ...], cid: str = "c") -> DecisionPoint:
    return DecisionPoint(
        conversation_id=cid,
        command_seq=2,
        flow_id="quiz",
        flow_version=1,
        node_id=KEY[0],
        button_id=KEY[1],
        candidates=EDGES,
        context=VisitorContext(device="desktop"),
        answers=(*answers, KEY),
        at=1_767_225_600.0 + 3 * 3600,
    )


def shares(learner: OnlineLearner, answers: tuple[tuple[str, str], ...]) -> tuple[float, ...]:
    policy = ThompsonPolicy()
    policy.install(learner.snapshot("quiz@1#online.1", 1.0, Guardrails(0.0, 0.0)))
    dist = policy.distribution(decision(answers))
    assert dist is not None
    return dist.thompson


def test_the_learner_recovers_known_weights() -> None:
    """Intercept, two cell slopes and an answer slope per edge, from 30,000 outcomes
    without forgetting."""
    w = {"x": (-1.0, 0.8, -0.6, 0.9), "y": (-0.5, -0.4, 0.5, -0.7)}

    def truth(edge: str, x: np.ndarray, answers: frozenset[tuple[str, str]]) -> float:
        b0, mobile, paid, big = w[edge]
        return float(b0 + mobile * x[MOBILE] + paid * x[PAID] + big * (("size", "big") in answers))

    learner = learn(
        new(OnlineConfig(half_life=math.inf, slope_sd=1.0)),
        batches(truth, 30_000, np.random.default_rng(1), batch=500),
    )
    # the 'size' answers registered in sorted order: big, small; 'small' is the
    # complement of 'big', so compare the contrast big - small
    big = learner.answer_names(KEY).index(("size", "big"))
    small = learner.answer_names(KEY).index(("size", "small"))
    for edge, (b0, mobile, paid, effect) in w.items():
        m = learner.posterior_mean(KEY, edge)
        assert m[1 + MOBILE] == pytest.approx(mobile, abs=0.2)
        assert m[1 + PAID] == pytest.approx(paid, abs=0.2)
        assert m[1 + F + big] - m[1 + F + small] == pytest.approx(effect, abs=0.2)
        # the intercept with the 'small' slope is the baseline logit
        assert m[0] + m[1 + F + small] == pytest.approx(b0, abs=0.2)


def answer_world(edge: str, x: np.ndarray, answers: frozenset[tuple[str, str]]) -> float:
    """x is best for visitors who said 'big', y for those who said 'small'."""
    good = (edge == "x") == (("size", "big") in answers)
    return -0.4 if good else -1.7


def test_the_learner_prefers_the_right_edge_per_earlier_answer() -> None:
    learner = learn(new(), batches(answer_world, 4000, np.random.default_rng(2)))
    big = shares(learner, (("size", "big"),))
    small = shares(learner, (("size", "small"),))
    assert big[0] > 0.95
    assert small[1] > 0.95
    snap = learner.snapshot("quiz@1#online.1", 1.0)
    assert set(snap.points[KEY].answers) == {"answer:size=big", "answer:size=small"}


def traffic_share(learner: OnlineLearner, edge: int) -> float:
    """The share of draws in which ``edge`` wins, averaged over the cells (the
    batches' traffic is uniform over them), for visitors without answers."""
    post = learner.snapshot("quiz@1#online.1", 1.0).points[KEY]
    return float(np.mean([win_shares(post, features(c))[edge] for c in CELLS]))


def test_after_a_flip_the_learner_relearns_within_its_horizon() -> None:
    """The best edge flips after 4,000 conversations; within the documented horizon
    (two half-lives) the new best edge wins in most draws over the traffic, while
    a learner without forgetting still prefers the old one."""
    half_life = 500.0

    def before(edge: str, x: np.ndarray, answers: frozenset[tuple[str, str]]) -> float:
        return -0.6 if edge == "x" else -1.6

    def after(edge: str, x: np.ndarray, answers: frozenset[tuple[str, str]]) -> float:
        return before("y" if edge == "x" else "x", x, answers)

    rng = np.random.default_rng(4)
    first = batches(before, 4000, rng)
    second = batches(after, int(OnlineConfig(half_life=half_life).horizon), rng, start=4000)
    forgetting = learn(new(OnlineConfig(half_life=half_life)), first)
    remembering = learn(new(OnlineConfig(half_life=math.inf)), first)
    assert traffic_share(forgetting, 0) > 0.8
    learn(forgetting, second)
    learn(remembering, second)
    assert traffic_share(forgetting, 1) > 0.6
    assert traffic_share(remembering, 1) < 0.3


def test_the_snapshot_is_deterministic_and_decodes() -> None:
    data = batches(answer_world, 1000, np.random.default_rng(4))
    a = learn(new(), data).snapshot("quiz@1#o.1", 5.0)
    b = learn(new(), data).snapshot("quiz@1#o.1", 5.0)
    assert encode_snapshot(a) == encode_snapshot(b)
    assert encode_snapshot(a) != encode_snapshot(learn(new(), data).snapshot("quiz@1#o.2", 5.0))
    assert encode_snapshot(decode_snapshot(encode_snapshot(a))) == encode_snapshot(a)
    assert a.diagnostics["source"] == "online"


def test_forgetting_returns_to_the_prior() -> None:
    learner = learn(
        new(OnlineConfig(half_life=100.0)), batches(answer_world, 500, np.random.default_rng(5))
    )
    learner.forget(100_000)
    prior = new(OnlineConfig(half_life=100.0))
    for edge in EDGES:
        m = learner.posterior_mean(KEY, edge)
        assert m[: 1 + F] == pytest.approx(prior.posterior_mean(KEY, edge), abs=1e-9)
        assert np.allclose(m[1 + F :], 0.0, atol=1e-9)


def fitted_snapshot(conversations: int) -> PolicySnapshot:
    rng = np.random.default_rng(6)
    draws = 400
    base = np.stack([rng.normal(-1.0, 0.1, draws), rng.normal(-2.0, 0.2, draws)], axis=1)
    slopes = rng.normal(0.3, 0.05, size=(draws, 2, F))
    point = PointPosterior(
        node_id=KEY[0],
        button_id=KEY[1],
        candidates=EDGES,
        base=base.astype(np.float32),
        slopes=slopes.astype(np.float32),
    )
    return PolicySnapshot(
        "quiz",
        1,
        "quiz@1#fit",
        1.0,
        {KEY: point},
        diagnostics={"source": "fit", "conversations": conversations},
    )


def test_seeding_from_a_fit_moment_matches_its_draws() -> None:
    snap = fitted_snapshot(conversations=500)  # less than forgetting keeps: not tempered
    learner = OnlineLearner.from_snapshot(snap)
    assert learner.anchor == "quiz@1#fit"
    for e, edge in enumerate(EDGES):
        m = learner.posterior_mean(KEY, edge)
        assert m[0] == pytest.approx(float(snap.points[KEY].base[:, e].mean()), abs=1e-6)
        assert m[1:] == pytest.approx(snap.points[KEY].slopes[:, e].mean(axis=0), abs=1e-6)
        draws = np.concatenate(
            [snap.points[KEY].base[:, e, None], snap.points[KEY].slopes[:, e]], axis=1
        ).astype(np.float64)
        covariance = np.linalg.inv(learner.posterior_precision(KEY, edge))
        assert covariance == pytest.approx(np.cov(draws, rowvar=False), rel=1e-3, abs=2e-6)
    # a fit over a long history is tempered to what forgetting keeps
    long = OnlineLearner.from_snapshot(fitted_snapshot(conversations=100_000))
    kept = OnlineConfig().half_life / math.log(2.0)
    q0 = new().posterior_precision(KEY, "x")
    q_long, q_short = long.posterior_precision(KEY, "x"), learner.posterior_precision(KEY, "x")
    assert q_long - q0 == pytest.approx((q_short - q0) * kept / 100_000, rel=1e-6, abs=1e-9)
    # and it learns on from there
    learn(learner, batches(answer_world, 500, np.random.default_rng(7)))
    assert learner.snapshot("quiz@1#fit.1", 2.0).diagnostics["fit_version"] == "quiz@1#fit"


def test_outcomes_at_unknown_points_or_edges_are_ignored() -> None:
    learner = new()
    learner.observe(
        [Outcome("c", "elsewhere", "b", "x", 0, (), True), Outcome("c", *KEY, "nope", 0, (), True)]
    )
    assert learner.outcomes == 0
    assert learner.conversations == 1
