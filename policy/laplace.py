"""One edge's Gaussian posterior over logistic weights, and the steps that move it. Pure numpy.

The online learner (:mod:`policy.online`) keeps one :class:`EdgeGaussian` per
(decision point, candidate edge), in natural parameters: the precision matrix
``Q`` and ``h = Q m``. Three things move it:

* the *prior* it starts from and returns to (:func:`prior`): independent
  ``N(prior_mean_logit, intercept_sd**2)`` for the intercept and
  ``N(0, slope_sd**2)`` for every slope, or with context pairs the symmetric
  coding's precision (:func:`policy.pair_design.prior_precision`);
* *tempering toward the prior* (:func:`toward_prior`): ``Q <- Q0 + g (Q - Q0)``,
  ``h <- h0 + g (h - h0)``, which keeps a share ``g`` of the evidence (forgetting,
  a fit's tempering, a change detector's adoption);
* a batch of Binomial outcomes (:func:`learn`): Newton's method finds the mode
  ``w`` of ``0.5 (w - m)' Q (w - m) - sum_j log Binomial(s_j | n_j, sigmoid(w . z_j))``
  (Hessian ``Q + Z' diag(n p (1 - p)) Z``), then the Laplace approximation sets
  ``m <- w``, ``Q <- Q + Z' diag(n p (1 - p)) Z`` at the mode and ``h <- Q m``
  (Chapelle & Li 2011, Algorithm 3, with a full precision instead of a diagonal:
  with one-hot features a diagonal forgets the intercept/slope correlations, so a
  change of the overall rate reaches the baseline cell's logit only partly).

:func:`predictive_log_likelihood` scores outcomes before they are learned (the
change detector's and the pair evidence's prequential score).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from policy import pair_design

FloatArray = npt.NDArray[np.float64]

NEWTON_STEPS = 25
NEWTON_TOLERANCE = 1e-9


@dataclass
class EdgeGaussian:
    """``N(Q^-1 h, Q^-1)`` over one edge's weights."""

    q: FloatArray  # precision matrix (D, D)
    h: FloatArray  # precision times mean (D,)

    @property
    def mean(self) -> FloatArray:
        m: FloatArray = np.asarray(np.linalg.solve(self.q, self.h), dtype=np.float64)
        return m


def sigmoid(z: FloatArray) -> FloatArray:
    out: FloatArray = 0.5 * (1.0 + np.tanh(0.5 * z))
    return out


def prior(
    size: int,
    *,
    intercept_sd: float,
    slope_sd: float,
    prior_mean_logit: float,
    pair_sd: float | None = None,
) -> tuple[FloatArray, FloatArray]:
    """(Q0, h0) of ``size`` weights: the intercept first, then slopes; with
    ``pair_sd``, the first :data:`policy.pair_design.SIZE` weights are the pair
    coding's (its own prior precision)."""
    diagonal = np.full(size, 1.0 / slope_sd**2)
    diagonal[0] = 1.0 / intercept_sd**2
    if pair_sd is not None:
        diagonal[: pair_design.SIZE] = pair_design.prior_precision(intercept_sd, slope_sd, pair_sd)
    h0 = np.zeros(size)
    h0[0] = diagonal[0] * prior_mean_logit
    return np.diag(diagonal), h0


def toward_prior(edge: EdgeGaussian, q0: FloatArray, h0: FloatArray, keep: float) -> None:
    """Keep the share ``keep`` of the edge's evidence over the prior ``(q0, h0)``."""
    edge.q = q0 + keep * (edge.q - q0)
    edge.h = h0 + keep * (edge.h - h0)


def learn(edge: EdgeGaussian, z: FloatArray, trials: FloatArray, successes: FloatArray) -> None:
    """Newton steps to the posterior mode given Binomial rows ``(z_j, n_j, s_j)``,
    then the Laplace approximation at the mode (see the module's docstring)."""
    m = edge.mean
    w = m.copy()
    for _ in range(NEWTON_STEPS):
        p = sigmoid(z @ w)
        gradient = edge.q @ (w - m) - z.T @ (successes - trials * p)
        hessian = edge.q + (z.T * (trials * p * (1.0 - p))) @ z
        step = np.linalg.solve(hessian, gradient)
        w -= step
        if float(np.max(np.abs(step))) < NEWTON_TOLERANCE:
            break
    p = sigmoid(z @ w)
    edge.q = edge.q + (z.T * (trials * p * (1.0 - p))) @ z
    edge.q = 0.5 * (edge.q + edge.q.T)  # exactly symmetric
    edge.h = edge.q @ w


def predictive_log_likelihood(
    edge: EdgeGaussian, rows: FloatArray, successes: Sequence[bool]
) -> float:
    """The outcomes' log-likelihood under the edge's posterior predictive: the
    probit approximation ``sigmoid(mu / sqrt(1 + pi s^2 / 8))`` of the logit's
    Gaussian ``N(mu, s^2)`` (MacKay 1992), so an uncertain model's predictions are
    moderated, not taken at its mean. One solve gives the mean and every row's
    variance at once."""
    solved = np.linalg.solve(edge.q, np.column_stack((edge.h, rows.T)))
    mu = rows @ solved[:, 0]
    variance = np.einsum("ij,ji->i", rows, solved[:, 1:])
    z = mu / np.sqrt(1.0 + math.pi * variance / 8.0)
    # log sigmoid(z) for a lead, log sigmoid(-z) else, computed stably
    signed = np.where(list(successes), z, -z)
    return -float(np.logaddexp(0.0, -signed).sum())
