"""The Bayesian fit's data and its parameterisation's fixed transforms: counts -> a :class:`Design`.

Pure numpy: no PyMC, PyTensor or ArviZ (nor anything that imports them), so
it can be imported and tested anywhere. :func:`policy.model.fit_flow` builds
its data here (:func:`design`) from one flow version's
:class:`~policy.reward_counts.FlowCounts` and hands it to the PyMC model
(:mod:`policy.model` states the model, its priors and the sampler).

Data
----
For every (decision point ``p``, candidate edge ``e``, context cell ``c``)
with trials, ``n`` decisions of which ``y`` ended in a lead (a dense grid over
the cells seen: cells without trials add nothing to the likelihood). ``x_c`` is
the cell's 0/1 feature vector (:func:`policy.features.features`, ``F = 12``),
``xbar_p`` the trial-weighted mean of ``x`` at point ``p`` (0 at a point
without data), ``k_p`` the point's number of candidates.

Transforms fixed by the data
----------------------------
* ``B_k`` (k x (k-1)): orthogonal columns spanning the zero-sum vectors, scaled
  by ``sqrt(k/(k-1))`` so that each edge effect's prior sd is ``sigma_edge``
  (:func:`zero_sum_basis`). The zero sum identifies ``alpha_p`` against the
  edge effects; an orthogonal basis (rather than subtracting the mean of k free
  effects) leaves the sampler no flat ridge.
* ``T`` (F x F, fixed by the data): the slopes act on decorrelated features
  ``(x - xbar_p) T``, uncorrelated over the flow's traffic with each feature
  keeping its variance (:func:`decorrelating`). With one-hot features against
  a rare baseline level (night traffic, say) the slopes of one factor are
  otherwise correlated at 0.8-0.9 in the posterior, which a diagonal mass
  matrix cannot follow. So the priors of ``gamma`` and ``b`` are on these
  coordinates; the snapshot's slopes are mapped back, ``beta = T b``.

Centring weights
----------------
The model samples each random-effect coordinate (an edge contrast ``c_pj``, a
slope ``b_pef``) partially non-centred with a weight ``lam`` in [0, 1]
(:mod:`policy.model`, Parameterisation). ``lam = s0^2 I / (1 + s0^2 I)``
(:func:`centring_weight`): the share of the coordinate's posterior precision
that comes from the data, with ``I`` its Fisher information at the edge's
pooled rate and ``s0`` a quick empirical-Bayes guess of the scale
(:func:`pilot_scales`). A fully non-centred model (as first written) needed
250 leapfrog steps per draw and diverged on counts worth 1M conversations (the
data pin each effect, the "inverse funnel"); a fully centred one diverges when
data are thin or a scale is near 0. Weak coordinates are non-centred,
well-measured ones centred: about 15 leapfrog steps per draw from a few hundred
conversations to a million.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from policy.features import FEATURE_NAMES, cell_from_key, features
from policy.reward_counts import FlowCounts

# The model's priors (policy.model states them; pilot_scales falls back to the
# medians of the two scales' priors when the data say nothing)
ALPHA_MEAN, ALPHA_SD = -1.0, 1.5
SIGMA_EDGE_SHAPE, SIGMA_EDGE_RATE = 2.0, 4.0  # Gamma: mean 0.5, zero density at 0
GAMMA_SD = 1.0
TAU_PRIOR = 0.5
MIN_PILOT_SCALE = 0.005

PointKey = tuple[str, str]
FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class Design:
    """The counts as the model's data: trials and successes of every (point,
    edge) in every context cell seen (a dense grid: cells without trials add
    nothing to the likelihood), and the fixed transforms of the parameterisation."""

    points: tuple[PointKey, ...]
    candidates: tuple[tuple[str, ...], ...]  # per point
    edge_point: IntArray  # (E,) the point of each (point, edge), in point order
    cells: tuple[str, ...]  # (C,) the cells with trials, sorted
    cell_x: FloatArray  # (C, F) their 0/1 features
    xbar: FloatArray  # (P, F) trial-weighted mean features per point (0 without data)
    trials: IntArray  # (E, C)
    successes: IntArray  # (E, C)
    decorrelate: FloatArray  # (F, F) T: the model's features are x @ T
    edge_basis: FloatArray  # (E, E - P) zero-sum bases of the points' edge effects
    lam_edge: FloatArray  # (E - P,) centring weight of each edge-effect coordinate
    lam_slope: FloatArray  # (E, F) centring weight of each slope
    pilot_sigma_edge: float  # the scales the centring weights assume (see pilot_scales)
    pilot_tau: float

    @property
    def edges(self) -> int:
        return len(self.edge_point)

    @property
    def rows(self) -> int:
        """(point, edge, cell) with trials: the rows of the aggregated data."""
        return int(np.count_nonzero(self.trials))


def zero_sum_basis(k: int) -> FloatArray:
    """(k, k-1): orthogonal columns spanning the vectors that sum to zero, scaled so
    that a standard normal in those coordinates has a unit marginal variance."""
    q, _ = np.linalg.qr(np.column_stack([np.ones(k), np.eye(k)[:, : k - 1]]))
    basis: FloatArray = q[:, 1:] * math.sqrt(k / (k - 1))
    return basis


def decorrelating(cell_x: FloatArray, weights: FloatArray, shrink: float = 0.05) -> FloatArray:
    """T with ``x @ T`` uncorrelated over the traffic (``weights`` per cell), each
    feature keeping its variance: ``T = D^-1/2 R^-1/2 D^1/2`` with ``D`` the
    variances and ``R`` the correlations shrunk by ``shrink`` towards the identity
    (so that T stays bounded when features are nearly collinear in the data).
    Features without variance (levels never seen, or always) are left alone."""
    f = cell_x.shape[1]
    transform = np.eye(f)
    total = float(weights.sum())
    if total <= 0:
        return transform
    p = weights / total
    centred = cell_x - p @ cell_x
    cov = centred.T @ (centred * p[:, None])
    var = np.diag(cov).copy()
    seen = var > 1e-9
    if seen.sum() < 2:
        return transform
    sd = np.sqrt(var[seen])
    corr = cov[np.ix_(seen, seen)] / np.outer(sd, sd)
    corr = (1.0 - shrink) * corr + shrink * np.eye(len(sd))
    values, vectors = np.linalg.eigh(corr)
    inv_sqrt = (vectors / np.sqrt(values)) @ vectors.T
    transform[np.ix_(seen, seen)] = (inv_sqrt / sd[:, None]) * sd[None, :]
    return transform


def centring_weight(information: FloatArray, scale: float) -> FloatArray:
    """How centred a coordinate's parameterisation is, from 0 (non-centred) to 1
    (centred): ``s^2 I / (1 + s^2 I)``, the share of its posterior precision the
    data give when its prior scale is ``s`` and the data's information ``I``."""
    ratio = scale * scale * np.asarray(information, dtype=np.float64)
    weight: FloatArray = ratio / (1.0 + ratio)
    return weight


def _logistic(
    x: FloatArray, trials: FloatArray, successes: FloatArray, ridge: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """Penalised maximum likelihood of a binomial logistic regression (Newton):
    the coefficients and their approximate covariance (inverse Hessian)."""
    coef = np.zeros(x.shape[1])
    coef[0] = math.log((successes.sum() + 0.5) / (trials.sum() - successes.sum() + 0.5))
    penalty: FloatArray = np.diag(ridge)
    hessian = penalty
    for _ in range(50):
        p = 1.0 / (1.0 + np.exp(-(x @ coef)))
        gradient = x.T @ (successes - trials * p) - ridge * coef
        hessian = np.asarray((x.T * (trials * p * (1.0 - p))) @ x + penalty, dtype=np.float64)
        step = np.linalg.solve(hessian, gradient)
        coef += np.clip(step, -2.0, 2.0)
        if np.max(np.abs(step)) < 1e-8:
            break
    covariance = np.asarray(np.linalg.inv(hessian), dtype=np.float64)
    return coef, covariance


def _spread(estimates: list[FloatArray], variances: list[FloatArray]) -> float | None:
    """Method of moments: the standard deviation of the true values around their
    group means, from groups of noisy estimates (each group's deviations from its
    mean, less their sampling variance). None without a group of two."""
    excess, weight = 0.0, 0.0
    for est, var in zip(estimates, variances, strict=True):
        k = len(est)
        if k < 2:
            continue
        excess += float(np.sum((est - est.mean()) ** 2 - var * (k - 1) / k))
        weight += k - 1
    if weight == 0:
        return None
    return math.sqrt(max(excess / weight, 0.0))


def pilot_scales(
    trials: IntArray, successes: IntArray, model_x: FloatArray, edge_point: IntArray
) -> tuple[float, float]:
    """Quick empirical-Bayes guesses of ``sigma_edge`` and ``tau`` (they only tune
    the sampler's parameterisation, never the model): each edge's own penalised
    logistic regression on its cells, then the spread of the edge intercepts
    within a point and of the slopes across edges, less their sampling noise.
    Falls back to the priors' medians when the data say nothing."""
    f = model_x.shape[2]
    ridge = np.concatenate([[1e-4], np.ones(f)])  # slopes ~ N(0, 1): keeps unseen ones finite
    intercepts: dict[int, list[tuple[float, float]]] = {}
    slopes: list[FloatArray] = []
    slope_vars: list[FloatArray] = []
    for e in range(len(trials)):
        seen = trials[e] > 0
        if not seen.any():
            continue
        x = np.column_stack([np.ones(int(seen.sum())), model_x[e, seen]])
        coef, cov = _logistic(
            x, trials[e, seen].astype(float), successes[e, seen].astype(float), ridge
        )
        intercepts.setdefault(int(edge_point[e]), []).append((coef[0], cov[0, 0]))
        slopes.append(coef[1:])
        slope_vars.append(np.diag(cov)[1:])
    sigma = _spread(
        [np.array([a for a, _ in group]) for group in intercepts.values()],
        [np.array([v for _, v in group]) for group in intercepts.values()],
    )
    tau = None
    if len(slopes) >= 2:
        b, v = np.array(slopes), np.array(slope_vars)
        informed = v < 0.25  # the ridge alone gives 1: a slope the data barely see
        by_feature = [(b[informed[:, j], j], v[informed[:, j], j]) for j in range(f)]
        tau = _spread([est for est, _ in by_feature], [var for _, var in by_feature])
    prior_sigma = 1.678 / SIGMA_EDGE_RATE  # median of Gamma(2, rate)
    prior_tau = 0.674 * TAU_PRIOR
    return (prior_sigma if sigma is None else sigma, prior_tau if tau is None else tau)


def design(counts: FlowCounts, points: Mapping[PointKey, tuple[str, ...]] | None = None) -> Design:
    """The model's data from ``counts`` (tallies of unknown points or edges, and
    without trials, are ignored). ``points`` adds decision points the counts have
    not seen; points are sorted by (node id, button id), so the order is fixed."""
    known: dict[PointKey, tuple[str, ...]] = dict(counts.candidates)
    if points is not None:
        known.update(points)
    keys = tuple(sorted(k for k, c in known.items() if len(c) >= 2))
    candidates = tuple(tuple(known[k]) for k in keys)
    edge_index: dict[tuple[PointKey, str], int] = {}
    edge_point: list[int] = []
    for p, (key, cands) in enumerate(zip(keys, candidates, strict=True)):
        for edge in cands:
            edge_index[(key, edge)] = len(edge_point)
            edge_point.append(p)
    rows: list[tuple[int, str, int, int]] = []
    for outcome, tally in counts.tallies.items():
        g = edge_index.get(((outcome.node_id, outcome.button_id), outcome.edge))
        if g is None or tally.trials <= 0:
            continue
        rows.append((g, outcome.cell, tally.trials, min(max(tally.successes, 0), tally.trials)))
    cells = tuple(sorted({r[1] for r in rows}))
    cell_index = {c: i for i, c in enumerate(cells)}
    f = len(FEATURE_NAMES)
    cell_x = np.array([features(cell_from_key(c)) for c in cells]).reshape(len(cells), f)
    e = len(edge_point)
    trials = np.zeros((e, len(cells)), dtype=np.int64)
    successes = np.zeros_like(trials)
    for g, cell, n, y in rows:
        trials[g, cell_index[cell]] += n
        successes[g, cell_index[cell]] += y
    point_of = np.array(edge_point, dtype=np.int64)
    xbar = np.zeros((len(keys), f))
    for p in range(len(keys)):
        per_cell = trials[point_of == p].sum(axis=0)
        if per_cell.sum() > 0:
            xbar[p] = per_cell @ cell_x / per_cell.sum()
    transform = decorrelating(cell_x, trials.sum(axis=0).astype(np.float64))
    basis = np.zeros((e, e - len(keys)))
    column = 0
    for p, cands in enumerate(candidates):
        mine = np.flatnonzero(point_of == p)
        basis[np.ix_(mine, np.arange(column, column + len(cands) - 1))] = zero_sum_basis(len(cands))
        column += len(cands) - 1
    # Fisher information per coordinate at each edge's pooled conversion rate
    edge_trials = trials.sum(axis=1)
    rate = (successes.sum(axis=1) + 1.0) / (edge_trials + 2.0)
    curvature = rate * (1.0 - rate)
    info_edge = (basis**2).T @ (edge_trials * curvature)
    model_x = (cell_x[None, :, :] - xbar[point_of][:, None, :]) @ transform  # (E, C, F)
    info_slope = np.einsum("ec,ecf->ef", trials * curvature[:, None], model_x**2)
    sigma_hat, tau_hat = pilot_scales(trials, successes, model_x, point_of)
    return Design(
        points=keys,
        candidates=candidates,
        edge_point=point_of,
        cells=cells,
        cell_x=cell_x,
        xbar=xbar,
        trials=trials,
        successes=successes,
        decorrelate=transform,
        edge_basis=basis,
        lam_edge=centring_weight(info_edge, max(sigma_hat, MIN_PILOT_SCALE)),
        lam_slope=centring_weight(info_slope, max(tau_hat, MIN_PILOT_SCALE)),
        pilot_sigma_edge=sigma_hat,
        pilot_tau=tau_hat,
    )
