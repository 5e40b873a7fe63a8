"""Optimisation that ends in a decision: P(best), expected loss, the stopping rule, the lift."""

from __future__ import annotations

import numpy as np
import pytest

from policy.features import CELLS, FEATURE_NAMES, features
from policy.optimisation import (
    StoppingRule,
    best_and_loss,
    holdout_lift,
    mixed_conversion,
    recommend_flow,
    recommend_point,
    render,
    traffic_mix,
)
from policy.reward_counts import FlowCounts, OutcomeKey, Tally
from policy.snapshot import Guardrails, PointPosterior, PolicySnapshot, Promotion


def _logit(p: float) -> float:
    return float(np.log(p / (1.0 - p)))


def _posterior(
    rates: list[list[float]], candidates: tuple[str, ...] = ("a", "b")
) -> PointPosterior:
    """A posterior whose draw s gives candidate e the conversion rates[s][e] (baseline cell,
    no slopes)."""
    base = np.array([[_logit(p) for p in row] for row in rates], dtype=np.float32)
    slopes = np.zeros((base.shape[0], base.shape[1], len(FEATURE_NAMES)), np.float32)
    return PointPosterior("q", "b", candidates, base, slopes)


def test_known_draws_give_known_p_best_and_loss() -> None:
    """Four draws: b wins three, a one; the losses are the mean regrets of each edge."""
    draws = np.array([[0.10, 0.20], [0.10, 0.30], [0.30, 0.10], [0.10, 0.15]])
    p_best, loss = best_and_loss(draws)
    assert p_best.tolist() == pytest.approx([0.25, 0.75])
    # a: regrets 0.10, 0.20, 0, 0.05; b: 0, 0, 0.20, 0
    assert loss.tolist() == pytest.approx([0.0875, 0.05])


def test_ties_share_a_draw_so_an_uninformative_posterior_is_never_promoted() -> None:
    """A uniform snapshot (all logits equal) must not look like a sure winner for e_0."""
    p_best, loss = best_and_loss(np.full((50, 3), 0.2))
    assert p_best.tolist() == pytest.approx([1 / 3] * 3)
    assert loss.tolist() == pytest.approx([0.0] * 3)
    rec = recommend_point(_posterior([[0.2, 0.2, 0.2]] * 50, ("a", "b", "c")), {}, StoppingRule())
    assert not rec.promote and "P(best)" in rec.reason


def test_conversion_is_weighted_by_the_traffic_mix() -> None:
    """Two cells: the slope of feature 0 moves b up in the second cell only; the mixed
    conversion is the share-weighted mean of the cells' sigmoids."""
    base = np.array([[_logit(0.1), _logit(0.1)]], np.float32)
    slopes = np.zeros((1, 2, len(FEATURE_NAMES)), np.float32)
    slopes[0, 1, 0] = _logit(0.5) - _logit(0.1)
    post = PointPosterior("q", "b", ("a", "b"), base, slopes)
    baseline = next(c for c in CELLS if not features(c).any())
    other = next(c for c in CELLS if features(c)[0] == 1 and features(c).sum() == 1)
    p = mixed_conversion(post, {baseline.key: 0.75, other.key: 0.25})
    assert p[0].tolist() == pytest.approx([0.1, 0.75 * 0.1 + 0.25 * 0.5], abs=1e-6)


def test_traffic_mix_is_the_share_of_counted_outcomes_per_cell() -> None:
    counts = FlowCounts(
        tallies={
            OutcomeKey("q", "b", "a", "c1"): Tally(3, 1),
            OutcomeKey("q", "b", "b", "c2"): Tally(1, 0),
            OutcomeKey("r", "b", "a", "c3"): Tally(10, 0),
        }
    )
    assert traffic_mix(counts, ("q", "b")) == {"c1": 0.75, "c2": 0.25}
    assert traffic_mix(None, ("q", "b")) == {}


@pytest.mark.parametrize(
    ("p_best", "loss", "promote", "words"),
    [
        (0.97, 0.001, True, "promote: P(best) 0.970"),
        (0.90, 0.001, False, "P(best) 0.900 < 0.95"),
        (0.97, 0.004, False, "expected loss 0.0040 > 0.002"),
        (0.50, 0.010, False, "P(best) 0.500 < 0.95 and expected loss 0.0100 > 0.002"),
    ],
)
def test_the_stopping_rule_promotes_only_when_both_hold_and_says_why(
    p_best: float, loss: float, promote: bool, words: str
) -> None:
    verdict, reason = StoppingRule().verdict(p_best, loss)
    assert verdict is promote
    assert words in reason


def test_the_threshold_is_configurable_and_checked() -> None:
    assert StoppingRule(max_loss=0.01).verdict(0.97, 0.004)[0]
    with pytest.raises(ValueError, match="p_best"):
        StoppingRule(p_best=0.0)
    with pytest.raises(ValueError, match="max_loss"):
        StoppingRule(max_loss=-1.0)


def test_a_clear_winner_is_recommended_and_not_again_once_promoted() -> None:
    rates = [[0.10, 0.30]] * 99 + [[0.30, 0.29]]
    post = _posterior(rates)
    rec = recommend_point(post, {}, StoppingRule())
    assert rec.winner == "b" and rec.promote
    assert rec.edges[1].p_best == pytest.approx(0.99)
    assert rec.edges[1].expected_loss == pytest.approx(0.0001, abs=1e-6)
    again = recommend_point(post, {}, StoppingRule(), promoted="b")
    assert not again.promote and again.reason.startswith("already promoted")


def test_lift_from_known_tallies() -> None:
    """Holdout 20/100 against rest 300/1000: posterior means 21/102 and 301/1002."""
    lift = holdout_lift((100, 20), (1000, 300))
    assert lift is not None
    assert lift.mean == pytest.approx(301 / 1002 - 21 / 102, abs=0.003)
    assert lift.interval[0] < lift.mean < lift.interval[1]
    assert lift.interval[0] > 0.0  # clearly positive at 90%
    assert lift.p_positive > 0.98
    assert holdout_lift((100, 20), (1000, 300)) == lift  # same tallies, same numbers
    assert holdout_lift((0, 0), (10, 1)) is None


def test_recommend_flow_uses_the_holdout_split_and_renders() -> None:
    post = _posterior([[0.10, 0.30]] * 40)
    snap = PolicySnapshot(
        "quiz",
        1,
        "quiz@1#1",
        1.0,
        {post.key: post},
        Guardrails(holdout=0.2, promoted=(Promotion("q", "b", "b"),)),
    )
    held = FlowCounts(tallies={OutcomeKey("q", "b", "a", "c"): Tally(50, 5)})
    rest = FlowCounts(tallies={OutcomeKey("q", "b", "b", "c"): Tally(200, 60)})
    rec = recommend_flow(snap, None, StoppingRule(), held, rest)
    point = rec.points[0]
    assert point.promoted == "b" and point.lift is not None
    assert point.lift.holdout == (50, 5) and point.lift.rest == (200, 60)
    data = rec.to_dict()
    assert data["decision_points"][0]["lift"]["holdout"] == {"outcomes": 50, "leads": 5}
    text = render(rec)
    assert "q/b" in text and "lift over the holdout: +" in text and "already promoted" in text
