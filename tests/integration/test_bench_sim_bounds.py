"""``python -m bench.policy.sim_bounds estimation`` (:mod:`bench.policy.estimation`): a
frozen learner against the truth; ``... change`` (:mod:`bench.policy.change_told`): the
drift world's learner told the change; ``... sequential`` and ``... type-blind``: the
answers world's bounds.

A short run (the learner alone for 1,500 conversations, then 600 fresh visitors):
the mean snapshot has no spread and leaves the learner as it was; the truth's
player is wrong only where the exploration floor sends it elsewhere; every
player meets the same decision points."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from bench.policy.change_told import WAYS, change_run
from bench.policy.estimation import estimation_shares, mean_snapshot
from bench.policy.sequential import sequential_shares
from bench.policy.sim_bounds import type_blind_share
from policy.flow_snapshots import decision_points
from policy.online import OnlineLearner
from policy.settings import PRODUCTION_ONLINE
from policy.sim.solar import load_flow
from policy.snapshot import Guardrails


@pytest.mark.parametrize("pair_scales", [True, False], ids=["learnt-scales", "weighed-pairs"])
def test_the_mean_snapshot_has_no_spread_and_restores_the_learner(pair_scales: bool) -> None:
    """With learnt pair scales (production) the learner has no additive twin; with
    weighed pairs it has one, and both models' configurations are restored."""
    flow = load_flow()
    config = dataclasses.replace(PRODUCTION_ONLINE, pair_ard=pair_scales)
    learner = OnlineLearner(flow.id, flow.version, decision_points(flow), config)
    snapshot = mean_snapshot(learner, Guardrails())
    for point in snapshot.points.values():
        assert np.ptp(point.base, axis=0).max() == 0.0
        assert np.ptp(point.slopes, axis=0).max() == 0.0
    assert learner.config.draw_scale == PRODUCTION_ONLINE.draw_scale
    assert (learner.additive is None) == pair_scales
    if learner.additive is not None:
        assert learner.additive.config.draw_scale == PRODUCTION_ONLINE.draw_scale
    spread = learner.snapshot("control", 1.0, Guardrails())
    assert any(np.ptp(p.base, axis=0).max() > 0.0 for p in spread.points.values())


def test_the_truth_is_wrong_only_by_the_floor_and_beats_nothing_it_cannot() -> None:
    oracle, played = estimation_shares("baseline", conversations=1_500, visitors=600)
    assert set(played) == {"published", "mean", "truth"}
    truth = played["truth"]
    assert 0.9 < truth.expected / oracle <= 1.0
    for n, wrong, lost in truth.by_point.values():
        assert wrong / n < 0.12  # the floor: 5% of decisions at a two-way point, and noise
        assert lost >= 0.0
    decisions = {label: {k: v[0] for k, v in p.by_point.items()} for label, p in played.items()}
    assert decisions["published"] == decisions["mean"] == decisions["truth"]
    assert all(p.expected <= oracle for p in played.values())


def test_the_learner_told_the_change_forgets_the_old_world_at_the_flip() -> None:
    """``python -m bench.policy.sim_bounds change``, short: told, the learner starts
    again at the flip and relearns; untold (no detector), it keeps the old world."""
    runs = {way: change_run(way, conversations=3_000, seed=7, window=500) for way in WAYS}
    told, untold = runs["told"], runs["untold"]
    assert 0 < told.learned <= 1_500  # only the conversations after the flip
    assert untold.learned > 1_500 and runs["detector"].learned > 1_500
    assert all(len(run.windows) == 6 for run in runs.values())
    assert runs["detector"].windows[:3] == untold.windows[:3]  # same run until the flip
    assert told.windows[:3] == untold.windows[:3]
    after = {way: sum(run.windows[3:]) / 3 for way, run in runs.items()}
    assert after["told"] > after["untold"] + 5  # points of the oracle's share
    assert all(0.0 < run.share <= 1.0 for run in runs.values())


def test_the_sequential_type_blind_policy_knows_less_than_the_path_bound_and_beats_chance() -> None:
    """``... sequential`` (:mod:`bench.policy.sequential`) and ``... type-blind``
    on the same 400 visitors of the answers world (whose flow has a typed answer,
    which tells nothing of the type): deciding with the answers so far gets at
    most what choosing the path knowing its later answers gets; the floor costs;
    uniform play (a floor of 0.5 at two-way points) gets less."""
    shares = sequential_shares(400, floors=(0.0, 0.05, 0.5))
    path_bound = type_blind_share(400)
    assert shares[0.0] <= path_bound + 1e-12
    assert shares[0.5] < shares[0.05] < shares[0.0] <= 1.0
    assert shares[0.0] - shares[0.5] > 0.05  # the plan uses what the answers say
