"""The online learner's change detector (policy/online_change.py, policy/change_detection.py,
``change_half_life``): silent in a stationary world, fires soon after the better edge flips and then
prefers the new best edge much sooner than the long half-life alone would; a fit
no longer re-seeds a learner that detected a change. (A few seconds: 16,000
conversations through two learners.)"""

from __future__ import annotations

import copy
import math

import numpy as np

from policy import online_change, pair_design
from policy.change_detection import ADOPTED_EVIDENCE, CASCADE
from policy.features import CELLS, earlier_answers, features
from policy.online import OnlineLearner
from policy.online_config import OnlineConfig, Outcome
from policy.snapshot import PolicySnapshot

KEY = ("q", "b")
EDGES = ("x", "y")
CONFIG = OnlineConfig(half_life=10_000.0, change_half_life=250.0, change_threshold=15.0)


def _batch(rng: np.random.Generator, start: int, n: int, flipped: bool) -> list[Outcome]:
    rows = []
    for i in range(start, start + n):
        edge = EDGES[int(rng.integers(2))]
        better = (edge == "y") != flipped
        p = 1.0 / (1.0 + math.exp(-(-1.2 + (0.6 if better else 0.0))))
        cell = int(rng.integers(len(CELLS)))
        rows.append(Outcome(f"c{i}", KEY[0], KEY[1], edge, cell, (KEY,), bool(rng.random() < p)))
    return rows


def _prefers_y(learner: OnlineLearner) -> bool:
    x = learner.posterior_mean(KEY, "x")[0]
    y = learner.posterior_mean(KEY, "y")[0]
    return bool(y > x)


def test_silent_without_a_change_then_fires_soon_after_one() -> None:
    rng = np.random.default_rng(11)
    learner = OnlineLearner("f", 1, {KEY: EDGES}, CONFIG)
    plain = OnlineLearner(
        "f", 1, {KEY: EDGES}, OnlineConfig(half_life=10_000.0)
    )  # the same without a detector
    for b in range(160):  # 8,000 conversations, nothing changes
        batch = _batch(rng, b * 50, 50, flipped=False)
        learner.observe(batch)
        plain.observe(batch)
    assert learner.changes == 0
    assert _prefers_y(learner) and _prefers_y(plain)
    detected_after = None
    for b in range(60):  # the better edge flips: 3,000 conversations
        batch = _batch(rng, 8_000 + b * 50, 50, flipped=True)
        learner.observe(batch)
        plain.observe(batch)
        if learner.changes and detected_after is None:
            detected_after = (b + 1) * 50
    assert detected_after is not None and detected_after <= 1_500, detected_after
    assert not _prefers_y(learner)  # relearned
    assert _prefers_y(plain)  # 8,000 conversations of old evidence still outweigh 3,000
    fit = learner.snapshot("f@1#fit2", 1.0)
    assert learner.keeps_over(fit)  # a fit mixing both worlds does not re-seed it
    assert not OnlineLearner("f", 1, {KEY: EDGES}, CONFIG).keeps_over(fit)


def test_a_fit_without_pairs_leaves_a_learner_with_pairs_as_it_is() -> None:
    rng = np.random.default_rng(5)
    learner = OnlineLearner("f", 1, {KEY: EDGES}, OnlineConfig(pairs=True))
    learner.observe(_batch(rng, 0, 200, flipped=False))
    additive = OnlineLearner("f", 1, {KEY: EDGES})
    additive.observe(_batch(rng, 200, 200, flipped=False))
    fit: PolicySnapshot = additive.snapshot("f@1#fit1", 1.0)
    assert not any(p.pairs for p in fit.points.values())
    assert learner.keeps_over(fit)
    assert not additive.keeps_over(fit)


def test_a_batchs_score_is_its_posterior_predictive_log_likelihood_outcome_by_outcome() -> None:
    """The score the detector and the pairs' evidence compare, against the formula
    applied to each outcome alone (with the covariance inverted outright)."""
    rng = np.random.default_rng(5)
    for config in (CONFIG, OnlineConfig(pairs=True)):
        learner = OnlineLearner("f", 1, {KEY: EDGES, ("r", "b"): EDGES}, config)
        for b in range(4):
            learner.observe(_batch(rng, b * 80, 80, flipped=False))
        batch = _batch(rng, 1_000, 60, flipped=False)
        expected = 0.0
        for o in batch:
            point = learner.points[o.point]
            edge = point.edges[o.edge]
            row = np.zeros(len(edge.h))
            if config.pairs:
                row[: learner.fixed] = pair_design.ROWS[o.cell]
            else:
                row[0], row[1 : learner.fixed] = 1.0, features(CELLS[o.cell])
            for answer in earlier_answers(o.answers, o.node_id, o.button_id):
                if answer in point.index:
                    row[learner.fixed + point.index[answer]] = 1.0
            mean, cov = np.linalg.solve(edge.q, edge.h), np.linalg.inv(edge.q)
            z = float(row @ mean) / math.sqrt(1.0 + math.pi * float(row @ cov @ row) / 8.0)
            expected += math.log(1.0 / (1.0 + math.exp(-z if o.success else z)))
        score = online_change.log_likelihood(learner, batch)
        assert list(score) == [KEY]
        assert math.isclose(score[KEY], expected, rel_tol=1e-9), (score, expected)


def test_a_detected_change_keeps_a_tenth_of_the_shadows_evidence() -> None:
    """The adopted posterior is the shadow's tempered toward the prior: the
    shadow's window still holds evidence from before the change."""
    rng = np.random.default_rng(3)
    learner = OnlineLearner("f", 1, {KEY: EDGES}, CONFIG)
    for b in range(20):
        learner.observe(_batch(rng, b * 50, 50, flipped=False))
    shadow = learner.shadow
    assert shadow is not None
    adopted = online_change.adopt(learner, shadow.points[KEY], shadow)
    for edge_id in EDGES:
        theirs, mine = shadow.points[KEY].edges[edge_id], adopted.edges[edge_id]
        q0, h0 = learner.prior(len(theirs.h))
        assert np.allclose(mine.q - q0, ADOPTED_EVIDENCE * (theirs.q - q0))
        assert np.allclose(mine.h - h0, ADOPTED_EVIDENCE * (theirs.h - h0))
        assert np.trace(np.linalg.inv(mine.q)) > np.trace(np.linalg.inv(theirs.q))
    assert 0.0 < ADOPTED_EVIDENCE < 1.0


def test_a_change_at_one_point_carries_the_points_leaning_the_same_way_with_it() -> None:
    """Once one point's CUSUM crosses the threshold, the points whose CUSUM is
    above CASCADE of it adopt the shadow in the same batch; a point without
    evidence of a change (CUSUM 0) keeps its posterior."""
    other, quiet = ("r", "b"), ("s", "b")
    learner = OnlineLearner("f", 1, {KEY: EDGES, other: EDGES, quiet: EDGES}, CONFIG)
    rng = np.random.default_rng(8)
    for b in range(10):
        learner.observe(_batch(rng, b * 50, 50, flipped=False))
    kept = copy.deepcopy(learner.points[quiet])
    threshold = CONFIG.change_threshold
    learner.cusum = {KEY: threshold * 2, other: threshold * CASCADE * 2, quiet: 0.0}
    online_change.detect(learner, _batch(rng, 5_000, 10, flipped=False), None)  # scores KEY only
    assert learner.changes == 2
    assert learner.cusum[KEY] == 0.0 and learner.cusum[other] == 0.0
    assert learner.cusum[quiet] == 0.0
    for edge_id in EDGES:
        assert np.array_equal(learner.points[quiet].edges[edge_id].q, kept.edges[edge_id].q)
    learner.cusum = {KEY: 0.0, other: threshold * CASCADE * 2}
    online_change.detect(learner, _batch(rng, 6_000, 10, flipped=False), None)
    assert learner.changes == 2  # without a change elsewhere the bar is the threshold


def test_the_shadow_of_a_learner_with_pairs_has_no_additive_twin_and_scores_the_same() -> None:
    """Only the shadow's score and posterior are used, so it learns without the
    additive model a publishing learner with pairs keeps beside it (15% less CPU
    per batch in ``python -m bench.policy.learner``); its scores are those of a
    shadow that has one."""
    config = OnlineConfig(pairs=True, half_life=10_000.0, change_half_life=250.0)
    learner = OnlineLearner("f", 1, {KEY: EDGES}, config)
    shadow = learner.shadow
    assert shadow is not None and shadow.additive is None and shadow.shadow is None
    assert learner.additive is not None and learner.additive.shadow is not None
    twin = OnlineLearner("f", 1, {KEY: EDGES}, shadow.config)  # the same, with an additive
    assert twin.additive is not None
    rng = np.random.default_rng(5)
    for b in range(6):
        batch = _batch(rng, b * 100, 100, flipped=b >= 3)
        score = online_change.log_likelihood(shadow, batch)
        assert score == online_change.log_likelihood(twin, batch)
        learner.observe(batch)
        twin.observe(batch)
    for edge_id in EDGES:
        assert np.array_equal(
            shadow.points[KEY].edges[edge_id].q, twin.points[KEY].edges[edge_id].q
        )
