"""What each logged conversation contributes to the off-policy estimates of one
candidate: its reward, importance weight and doubly robust term. Pure numpy.

The unit is the conversation (a trajectory of ``T >= 0`` decisions, one reward
``r`` in {0, 1}: a lead within the horizon, :mod:`policy.rewards`). For
conversation ``i`` with decisions ``t = 1..T`` (candidate probabilities
``pi(a|x_t)``, logged propensities ``mu(a_t|x_t)``):

* weight ``w_i = prod_t pi(a_t|x_t) / mu(a_t|x_t)`` (1 without decisions: such a
  conversation is the same under both policies);
* ``D_1`` of the sequential doubly robust estimator of Jiang & Li (2016) with
  reward only at the end: ``D_{T+1} = r``, ``D_t = V_t + rho_t (D_{t+1} - Q_t(a_t))``,
  ``V_t = sum_a pi(a|x_t) Q_t(a)``. ``Q_t(a)`` is a
  direct-method model of the lead probability for edge ``a`` at the decision
  point in the decision's cell: smoothed counts of the log (cell -> edge ->
  point -> overall, each level shrunk towards the next with
  :data:`~policy.evaluation.lead_model.PRIOR_STRENGTH` pseudo-conversations), **cross-fitted**: the
  conversations are split in ``folds`` by a hash of their id, and each is
  scored by a model fitted on the other folds, so a conversation's own reward
  never enters its model (no overfitting bias).

With a holdout the weights are not products of per-decision ratios: the holdout
coin is per conversation, so the weight is the ratio of the path's probabilities
with the coin integrated out (:mod:`policy.evaluation.propensities`), and DR's
cumulative weights are those ratios for the path's prefixes, clipped at
``clip`` (:func:`clipped_dr`, :data:`DR_CLIP`).

The estimators over these terms: :mod:`policy.evaluation.estimators`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from .candidates import Candidate
from .lead_model import DEFAULT_FOLDS, cross_fitted_models
from .propensities import candidate_path, logged_prefixes
from .trajectories import Trajectory

FloatArray = npt.NDArray[np.float64]
DR_CLIP = 100.0  # the largest cumulative importance weight DR uses


@dataclass(frozen=True, slots=True)
class Terms:
    """Per-conversation quantities under one candidate (arrays of length n)."""

    reward: FloatArray
    weight: FloatArray
    dr: FloatArray  # D_1 of the sequential doubly robust estimator
    expected: FloatArray  # the model's lead probability after the last decision (r without)
    decided: npt.NDArray[np.bool_]  # has at least one decision
    decisions: int
    zero_support: int  # decisions whose logged edge the candidate never takes
    dr_slope: FloatArray | None = None  # D_1's slope in r: the clipped weight (None: weight)
    clip: float = math.inf  # DR's largest cumulative weight
    dr_clipped: npt.NDArray[np.bool_] | None = None  # a cumulative weight was clipped


def clipped_dr(
    trajectory: Trajectory,
    new: Sequence[Sequence[float]],
    q: Sequence[Sequence[float]],
    clip: float = math.inf,
    weights: Sequence[float] | None = None,
) -> tuple[float, float, bool]:
    """``D_1`` with every cumulative weight clipped at ``clip``, its slope in the
    reward (the clipped weight of the whole path) and whether any was clipped.
    ``weights``: the cumulative weights ``w_{<=t}`` (default: the products of
    ``new[t][a_t] / propensity``; with a holdout they are ratios of path
    probabilities, :mod:`policy.evaluation.propensities`).

    Unrolled, ``D_1 = sum_t [w_{<t} V_t - w_{<=t} Q_t(a_t)] + w_{<=T} r`` with the
    cumulative weights ``w_{<=t} = rho_1 ... rho_t``; clipping replaces each by
    ``min(w, clip)``. Unbiased where no weight is clipped; where one is, the
    bias is ``(w - clip)`` times the model's error ``E[D_{t+1} - Q_t]``, small
    for a good model, and bounded whatever the model is."""
    value = 0.0
    w = 1.0
    clipped = False
    for t, d in enumerate(trajectory.decisions):
        baseline = sum(p * qa for p, qa in zip(new[t], q[t], strict=True))
        after = w * new[t][d.chosen] / d.propensity if weights is None else weights[t]
        clipped |= after > clip
        value += min(w, clip) * baseline - min(after, clip) * q[t][d.chosen]
        w = after
    return value + min(w, clip) * trajectory.reward, min(w, clip), clipped


def dr_term(
    trajectory: Trajectory,
    new: Sequence[Sequence[float]],
    q: Sequence[Sequence[float]],
    clip: float = math.inf,
) -> float:
    """``D_1`` for one trajectory: ``new[t]`` the candidate's probabilities and
    ``q[t]`` the model's lead probabilities of every candidate at decision ``t``
    (:func:`clipped_dr`; unclipped by default, the recursion
    ``D_t = V_t + rho_t (D_{t+1} - Q_t(a_t))``)."""
    return clipped_dr(trajectory, new, q, clip)[0]


def terms(
    trajectories: Sequence[Trajectory],
    candidate: Candidate,
    folds: int = DEFAULT_FOLDS,
    clip: float = DR_CLIP,
) -> Terms:
    models, assignment = cross_fitted_models(trajectories, folds)
    n = len(trajectories)
    reward = np.empty(n)
    weight = np.empty(n)
    dr = np.empty(n)
    slope = np.empty(n)
    dr_clipped = np.zeros(n, dtype=bool)
    expected = np.empty(n)
    decided = np.array([len(t.decisions) > 0 for t in trajectories], dtype=bool)
    decisions = zero = 0
    for i, t in enumerate(trajectories):
        model = models[assignment[i]]
        chosen = [d.chosen for d in t.decisions]
        new, target = candidate_path([candidate.split(t, d) for d in t.decisions], chosen)
        logged = logged_prefixes(t.decisions)
        cumulative = [p / m for p, m in zip(target, logged, strict=True)]
        q = [model.q(t.flow_version, d) for d in t.decisions]
        zero += sum(p[a] == 0.0 for p, a in zip(new, chosen, strict=True))
        decisions += len(t.decisions)
        reward[i] = t.reward
        weight[i] = cumulative[-1] if cumulative else 1.0
        dr[i], slope[i], dr_clipped[i] = clipped_dr(t, new, q, clip, cumulative)
        expected[i] = q[-1][t.decisions[-1].chosen] if t.decisions else t.reward
    return Terms(reward, weight, dr, expected, decided, decisions, zero, slope, clip, dr_clipped)
