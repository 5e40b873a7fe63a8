"""The Bayesian model of edge selection, fitted with PyMC: counts -> a posterior snapshot.

The only module of ``policy`` that imports PyMC, and only inside its functions
(it runs in the fit worker process; processors and the unit tier never import
it). A fit reads one flow version's :class:`~policy.rewards.FlowCounts`
(sufficient statistics: trials and successes per decision point, candidate
edge and context cell) and returns a :class:`FitResult`: a
:class:`~policy.snapshot.PolicySnapshot`, or none and the reason when the
sampler's diagnostics fail.

Model
-----
Data: for every (decision point ``p``, candidate edge ``e``, context cell
``c``) with trials, ``n`` decisions of which ``y`` ended in a lead. ``x_c`` is
the cell's 0/1 feature vector (:func:`policy.features.features`, ``F = 12``),
``xbar_p`` the trial-weighted mean of ``x`` at point ``p`` (0 at a point
without data), ``k_p`` the point's number of candidates::

    y_pec ~ Binomial(n_pec, sigmoid(eta_pec))
    eta_pec = alpha_p + theta_pe + beta_pe . (x_c - xbar_p)

    alpha_p    ~ Normal(-1, 1.5)        per-point intercept (logit at the point's mean context)
    theta_p    = B_k c_p                candidate-edge effects, summing to zero over the point
    c_pj       ~ Normal(0, sigma_edge)  j = 1..k_p - 1
    sigma_edge ~ Gamma(2, 4)            shared by the flow's points: partial pooling
    beta_pe    = T b_pe                 context slopes of edge e at point p
    b_pe       ~ Normal(gamma, tau)     edge-specific, shrunk towards the shared main effect
    gamma_f    ~ Normal(0, 1)           context main effect, shared by the flow
    tau        ~ HalfNormal(0.5)        shared shrinkage scale of the edge-specific slopes

* ``B_k`` (k x (k-1)): orthogonal columns spanning the zero-sum vectors, scaled
  by ``sqrt(k/(k-1))`` so that each edge effect's prior sd is ``sigma_edge``.
  The zero sum identifies ``alpha_p`` against the edge effects; an orthogonal
  basis (rather than subtracting the mean of k free effects) leaves the sampler
  no flat ridge.
* ``T`` (F x F, fixed by the data): the slopes act on decorrelated features
  ``(x - xbar_p) T``, uncorrelated over the flow's traffic with each feature
  keeping its variance (:func:`decorrelating`). With one-hot features against
  a rare baseline level (night traffic, say) the slopes of one factor are
  otherwise correlated at 0.8-0.9 in the posterior, which a diagonal mass
  matrix cannot follow. So the priors of ``gamma`` and ``b`` are on these
  coordinates; the snapshot's slopes are mapped back, ``beta = T b``.
* ``sigma_edge``'s Gamma(2, 4) prior (mean 0.5, 90% within 0.09-1.2 on the
  logit scale) has no mass at 0: with a handful of points the data cannot rule
  a tiny scale out and a half-normal lets the sampler into the funnel's neck
  (divergences at a few hundred conversations). ``tau`` keeps a half-normal:
  it is informed by every (edge, feature) pair and "edges share the context
  effects" (``tau`` near 0) is a real possibility.

The snapshot (:mod:`policy.snapshot`, the baseline cell ``x = 0``), for each
of up to ``snapshot_draws`` (200) joint draws thinned evenly from all chains::

    base[s, e]   = alpha_p + theta_pe - beta_pe . xbar_p
    slopes[s, e] = beta_pe          (the shared main effect plus the edge's own)

Decision points the counts know (``counts.candidates``, or ``points``) without
a single outcome stay in the model without likelihood terms: their draws come
from the prior given the flow's hyperparameters, so the policy explores them.

Parameterisation
----------------
Each random-effect coordinate (an edge contrast ``c_pj``, a slope ``b_pef``)
is sampled *partially non-centred*: for ``v ~ Normal(m, s)`` with a weight
``lam`` in [0, 1], ``v_raw ~ Normal(lam m, s^lam)`` and
``v = m + s^(1 - lam) (v_raw - lam m)`` (``lam = 0``: the non-centred
``m + s z``; ``lam = 1``: centred). The model is the same for any ``lam``;
only the sampler's geometry changes. ``lam = s0^2 I / (1 + s0^2 I)``: the share
of the coordinate's posterior precision that comes from the data, with ``I``
its Fisher information at the edge's pooled rate and ``s0`` a quick
empirical-Bayes guess of the scale (:func:`pilot_scales`). A fully
non-centred model (as first written) needed 250 leapfrog steps per draw and
diverged on counts worth 1M conversations (the data pin each effect, the
"inverse funnel"); a fully centred one diverges when data are thin or a scale
is near 0. Weak coordinates are non-centred, well-measured ones centred: about
15 leapfrog steps per draw from a few hundred conversations to a million.

Sampling and diagnostics
------------------------
NUTS on one core (``cores=1``; ``chains`` (2) chains one after the other),
``tune`` (500) + ``draws`` (2000) per chain, target acceptance 0.9, seeded:
the same counts, settings and seed give the same snapshot. Over every sampled
parameter the fit reports the largest rank-normalised split r-hat (ArviZ's,
bulk and folded) and the smallest bulk ESS, and the divergent transitions
after tuning. It is refused (no snapshot) when r-hat > ``max_rhat`` (1.01),
bulk ESS < ``min_ess`` (400) or any transition diverged: Vehtari et al.
(2021)'s recommendations, met in about 15 s on one core at these settings
(``python -m bench.policy.fit``). Fewer draws make the largest of ~140 r-hats
noisy (about 1.01-1.05 at 300 draws per chain even when the chains mix), and
such a fit is refused.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from policy.features import FEATURE_NAMES, cell_from_key, features
from policy.rewards import FlowCounts
from policy.snapshot import Guardrails, PointPosterior, PolicySnapshot

MAX_RHAT = 1.01
MIN_ESS = 400.0
MAX_DIVERGENCES = 0
SNAPSHOT_DRAWS = 200
TARGET_ACCEPT = 0.9
DRAWS, TUNE, CHAINS = 2000, 500, 2
FREE = (
    "alpha",
    "sigma_edge",
    "contrast_raw",
    "gamma",
    "tau",
    "slope_raw",
)  # the sampled parameters

ALPHA_MEAN, ALPHA_SD = -1.0, 1.5
SIGMA_EDGE_SHAPE, SIGMA_EDGE_RATE = 2.0, 4.0  # Gamma: mean 0.5, zero density at 0
GAMMA_SD = 1.0
TAU_PRIOR = 0.5
MIN_PILOT_SCALE = 0.005

PointKey = tuple[str, str]
FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """PyMC's and PyTensor's chatter (no BLAS, sampler progress, short chains) kept
    out of the logs: the fit reports what matters in its diagnostics."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pymc  # type: ignore[import-untyped]  # noqa: F401  (sets its loggers' levels)

        names = ("pymc", "pytensor", "pytensor.tensor.blas", "arviz")
        loggers = [logging.getLogger(n) for n in names]
        levels = [lg.level for lg in loggers]
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        try:
            yield
        finally:
            for lg, level in zip(loggers, levels, strict=True):
                lg.setLevel(level)


@dataclass(frozen=True, slots=True)
class FitResult:
    """A fit's snapshot (None when refused), its diagnostics, and why it was refused."""

    snapshot: PolicySnapshot | None
    diagnostics: Mapping[str, Any] = field(default_factory=dict)
    reason: str | None = None


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


def _model(d: Design) -> Any:
    import pymc as pm

    coords = {
        "point": range(len(d.points)),
        "edge": range(d.edges),
        "contrast": range(d.edges - len(d.points)),
        "feature": FEATURE_NAMES,
    }
    xt = d.cell_x @ d.decorrelate  # (C, F) the model's features
    xt_bar = d.xbar[d.edge_point] @ d.decorrelate  # (E, F) their mean at each edge's point
    lam_e, lam_s = d.lam_edge, d.lam_slope
    with pm.Model(coords=coords) as model:
        alpha = pm.Normal("alpha", ALPHA_MEAN, ALPHA_SD, dims="point")
        sigma_edge = pm.Gamma("sigma_edge", alpha=SIGMA_EDGE_SHAPE, beta=SIGMA_EDGE_RATE)
        contrast_raw = pm.Normal("contrast_raw", 0.0, sigma_edge**lam_e, dims="contrast")
        contrast = sigma_edge ** (1.0 - lam_e) * contrast_raw  # c ~ Normal(0, sigma_edge)
        theta = pm.Deterministic("theta", pm.math.dot(d.edge_basis, contrast), dims="edge")
        gamma = pm.Normal("gamma", 0.0, GAMMA_SD, dims="feature")
        tau = pm.HalfNormal("tau", TAU_PRIOR)
        slope_raw = pm.Normal(
            "slope_raw", lam_s * gamma[None, :], tau**lam_s, dims=("edge", "feature")
        )
        b = pm.Deterministic(
            "b",
            gamma[None, :] + tau ** (1.0 - lam_s) * (slope_raw - lam_s * gamma[None, :]),
            dims=("edge", "feature"),
        )  # b ~ Normal(gamma, tau)
        offset = alpha[d.edge_point] + theta - pm.math.sum(b * xt_bar, axis=1)
        eta = offset[:, None] + pm.math.dot(b, xt.T)  # (E, C) logits
        pm.Potential(
            "likelihood", pm.math.sum(d.successes * eta - d.trials * pm.math.log1pexp(eta))
        )
    return model


def _thin(n: int, keep: int) -> IntArray:
    """Evenly spaced indices of ``keep`` out of ``n`` (all when n <= keep)."""
    if n <= keep:
        return np.arange(n, dtype=np.int64)
    return np.round(np.linspace(0, n - 1, keep)).astype(np.int64)


def fit_flow(
    flow_id: str,
    flow_version: int,
    counts: FlowCounts,
    *,
    version: str,
    draws: int = DRAWS,
    tune: int = TUNE,
    chains: int = CHAINS,
    seed: int = 0,
    guardrails: Guardrails | None = None,
    points: Mapping[PointKey, tuple[str, ...]] | None = None,
    snapshot_draws: int = SNAPSHOT_DRAWS,
    max_rhat: float = MAX_RHAT,
    min_ess: float = MIN_ESS,
    max_divergences: int = MAX_DIVERGENCES,
    target_accept: float = TARGET_ACCEPT,
    created_at: float | None = None,
) -> FitResult:
    """Fit the model to ``counts`` (one flow version's) and return its snapshot, or
    None and the reason. ``points`` adds the flow's decision points the counts have
    not seen yet (they get prior draws). Deterministic for a seed."""
    started = time.perf_counter()
    d = design(counts, points)
    trials = int(d.trials.sum())
    diagnostics: dict[str, Any] = {
        "source": "fit",
        "draws": draws,
        "tune": tune,
        "chains": chains,
        "seed": seed,
        "points": len(d.points),
        "rows": d.rows,
        "cells": len(d.cells),
        "trials": trials,
        "successes": int(d.successes.sum()),
        "conversations": counts.conversations,
        "max_rhat": max_rhat,
        "min_ess_bulk": min_ess,
        "max_divergences": max_divergences,
        "pilot_sigma_edge": round(d.pilot_sigma_edge, 4),
        "pilot_tau": round(d.pilot_tau, 4),
    }
    if not d.points:
        return FitResult(None, diagnostics, "no decision points with two or more candidates")
    if trials == 0:
        return FitResult(None, diagnostics, "no outcomes to fit")
    if chains < 2:
        return FitResult(None, diagnostics, "r-hat needs at least 2 chains")
    if draws < 4:
        return FitResult(None, diagnostics, "r-hat needs at least 4 draws per chain")
    with _quiet():
        import arviz as az
        import pymc as pm

        model = _model(d)
        with model:
            idata = pm.sample(
                draws=draws,
                tune=tune,
                chains=chains,
                cores=1,
                random_seed=seed,
                target_accept=target_accept,
                progressbar=False,
                compute_convergence_checks=False,
                return_inferencedata=True,
            )
        posterior = idata.posterior
        stats_module: Any = az  # arviz's rhat and ess are untyped
        rhat = stats_module.rhat(posterior, var_names=list(FREE))
        ess = stats_module.ess(posterior, var_names=list(FREE), method="bulk")
    rhat_max, rhat_at = max((float(rhat[v].max()), v) for v in FREE)
    ess_min, ess_at = min((float(ess[v].min()), v) for v in FREE)
    stats = idata.sample_stats
    divergences = int(stats["diverging"].sum())
    sampling = float(posterior.attrs.get("sampling_time", math.nan))
    elapsed = time.perf_counter() - started
    diagnostics.update(
        {
            "rhat_max": round(rhat_max, 5),
            "rhat_max_at": rhat_at,
            "ess_bulk_min": round(ess_min, 1),
            "ess_bulk_min_at": ess_at,
            "divergences": divergences,
            "leapfrog_steps_mean": round(float(stats["n_steps"].mean()), 2),
            "fit_seconds": round(elapsed, 3),
            "sampling_seconds": round(sampling, 3),
            "setup_seconds": round(elapsed - sampling, 3),
        }
    )
    problems = []
    if not rhat_max <= max_rhat:  # NaN fails too
        problems.append(f"r-hat {rhat_max:.4f} > {max_rhat:g} ({rhat_at})")
    if not ess_min >= min_ess:
        problems.append(f"bulk ESS {ess_min:.0f} < {min_ess:g} ({ess_at})")
    if divergences > max_divergences:
        problems.append(f"{divergences} divergent transitions")
    if problems:
        return FitResult(None, diagnostics, "not converged: " + "; ".join(problems))

    n = chains * draws
    keep = _thin(n, snapshot_draws)
    alpha = posterior["alpha"].values.reshape(n, len(d.points))[keep]
    theta = posterior["theta"].values.reshape(n, d.edges)[keep]
    b = posterior["b"].values.reshape(n, d.edges, len(FEATURE_NAMES))[keep]
    slopes = b @ d.decorrelate.T  # back to the 0/1 features: x . (T b) = (x T) . b
    result: dict[PointKey, PointPosterior] = {}
    for p, (key, cands) in enumerate(zip(d.points, d.candidates, strict=True)):
        mine = np.flatnonzero(d.edge_point == p)
        point_slopes = slopes[:, mine, :]
        base = alpha[:, p, None] + theta[:, mine] - point_slopes @ d.xbar[p]
        result[key] = PointPosterior(
            node_id=key[0],
            button_id=key[1],
            candidates=cands,
            base=base.astype(np.float32),
            slopes=point_slopes.astype(np.float32),
        )
    diagnostics["snapshot_draws"] = len(keep)
    snapshot = PolicySnapshot(
        flow_id=flow_id,
        flow_version=flow_version,
        version=version,
        created_at=time.time() if created_at is None else created_at,
        points=result,
        guardrails=guardrails if guardrails is not None else Guardrails(),
        diagnostics=dict(diagnostics),
    )
    return FitResult(snapshot, diagnostics, None)
