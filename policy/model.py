"""The Bayesian model of edge selection, fitted with PyMC: counts -> a posterior snapshot.

The only module of ``policy`` that imports PyMC, and only inside its functions
(it runs in the fit worker process; processors and the unit tier never import
it). A fit reads one flow version's :class:`~policy.reward_counts.FlowCounts`
(sufficient statistics: trials and successes per decision point, candidate
edge and context cell), turns them into the model's data and fixed transforms
(:func:`policy.fit_design.design`, pure numpy) and returns a
:class:`FitResult`: a :class:`~policy.snapshot.PolicySnapshot`, or none and
the reason when the sampler's diagnostics fail.

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

* ``B_k`` (zero-sum bases) and ``T`` (decorrelating) are fixed by the data:
  :mod:`policy.fit_design` says what they are and why; the priors' constants
  live there too, beside the pilot scales that fall back to their medians.
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
only the sampler's geometry changes. The weights, and why, are the design's
(:mod:`policy.fit_design`, Centring weights).

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

from policy.features import FEATURE_NAMES
from policy.fit_design import (
    ALPHA_MEAN,
    ALPHA_SD,
    GAMMA_SD,
    SIGMA_EDGE_RATE,
    SIGMA_EDGE_SHAPE,
    TAU_PRIOR,
    Design,
    IntArray,
    PointKey,
    design,
)
from policy.reward_counts import FlowCounts
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
