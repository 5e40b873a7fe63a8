"""Off-policy estimates of a candidate policy's lead rate from logged decisions. Pure numpy.

The value of a policy is its expected reward per conversation. Over the
per-conversation rewards ``r``, weights ``w`` and doubly robust terms ``D_1``
(:mod:`policy.evaluation.conversation_terms`):

* **IPS** ``mean(w r)``: unbiased, high variance;
* **SNIPS** ``sum(w r) / sum(w)``: self-normalised, slightly biased
  (O(1/n)), much lower variance; its interval uses the delta method
  (influence ``w_i (r_i - V) / mean(w)``);
* **DR**: the sequential doubly robust estimator of Jiang & Li (2016),
  estimate ``mean(D_1)``.

Assumptions: the logged propensities are the logging policy's exact
probabilities of the logged actions given the logged cell, and every action the
candidate may take had a positive logged probability (the exploration floor
ensures it); the reward of a conversation depends on the context and the
actions, not on anything the policy changed elsewhere. IPS and SNIPS need
nothing else. DR is unbiased whatever the model (given the propensities);
a model closer to the truth lowers its variance. ``Q_t`` models the lead rate
after the edge *under the logging policy's later decisions*, not the
candidate's: still unbiased, only the variance is not minimal. With a holdout
the weights are ratios of the paths' probabilities, and DR's cumulative weights
are clipped (:mod:`policy.evaluation.conversation_terms`).

Intervals are normal approximations at ``level`` from the per-conversation
terms (influence terms for SNIPS); the difference to the logging policy's own
value (the mean reward) is paired: per-conversation differences of the terms.
Every term is linear in the 0/1 reward, ``a r + b``; its standard error is the
larger of the empirical one and a *model-assisted* one whose second moment
``E[r (a^2 + 2ab) + b^2]`` takes the DR model's lead probability for ``r``
(:func:`_se_linear`): with heavy-tailed weights, a sample that missed the
rare heavily weighted leads otherwise has a small variance exactly when its
estimate is off (in the validation, IPS under a near-deterministic logging
policy covered 77% of the time with the plain standard error, 91% with this).
IPS's interval is, besides, the union with Fieller's interval for
``E[w r] / E[w]`` (:mod:`policy.evaluation.ratio_interval`, which says why).

:func:`estimates` keeps the unclipped numbers (the validation's bias is of
those); what users are shown, every rate clipped to what a lead rate can be,
with the effective sample size and the warnings: :mod:`policy.evaluation.summary`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from statistics import NormalDist

import numpy as np
import numpy.typing as npt

from .conversation_terms import Terms
from .ratio_interval import ratio_interval

FloatArray = npt.NDArray[np.float64]
ESTIMATORS = ("ips", "snips", "dr")


class NoDecisions(ValueError):
    """Nothing to evaluate: no logged decisions."""


# -- estimates ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Estimate:
    estimator: str  # "logged", "ips", "snips", "dr"
    value: float
    se: float
    low: float
    high: float
    difference: float  # candidate - logged (0 for "logged")
    difference_low: float
    difference_high: float


def _se(x: FloatArray) -> float:
    n = len(x)
    return float(np.std(x, ddof=1) / math.sqrt(n)) if n > 1 else math.nan


def _se_linear(a: FloatArray, b: FloatArray, t: Terms, assisted: bool) -> float:
    """The standard error of the mean of the terms ``a r + b`` (``r`` the 0/1
    rewards). Model-assisted: the larger of the empirical variance and the one
    with each ``r`` replaced by the model's lead probability where ``r``
    enters the second moment (``E[(a r + b)^2] = E[r (a^2 + 2 a b) + b^2]``).
    With heavy-tailed weights a sample that missed the rare heavy conversations'
    leads has a small empirical variance exactly when its estimate is off; the
    modelled second moment does not depend on those few rewards."""
    x = a * t.reward + b
    n = len(x)
    if n < 2:
        return math.nan
    variance = float(np.var(x, ddof=1))
    if assisted:
        second = float(np.mean(t.expected * (a * a + 2.0 * a * b) + b * b))
        variance = max(variance, (second - float(x.mean()) ** 2) * n / (n - 1))
    return math.sqrt(variance / n)


def _z(level: float) -> float:
    if not 0.0 < level < 1.0:
        raise ValueError(f"confidence level {level} is not within (0, 1)")
    return NormalDist().inv_cdf(0.5 + level / 2.0)


Linear = tuple[FloatArray, FloatArray]  # per-conversation term a r + b


def _estimate(
    name: str,
    value: float,
    term: Linear,
    paired: Linear,
    diff: float,
    z: float,
    t: Terms,
    assisted: bool,
) -> Estimate:
    se = _se_linear(*term, t, assisted)
    dse = _se_linear(*paired, t, assisted)
    return Estimate(
        name, value, se, value - z * se, value + z * se, diff, diff - z * dse, diff + z * dse
    )


def estimates(t: Terms, level: float = 0.95, assisted: bool = True) -> tuple[Estimate, ...]:
    """The logged policy's value, then IPS, SNIPS and DR (empty input: NoDecisions).
    ``assisted``: model-assisted standard errors (:func:`_se_linear`), else the
    plain empirical ones."""
    z = _z(level)
    r, w = t.reward, t.weight
    if len(r) == 0:
        raise NoDecisions("no conversations to evaluate")
    zero, one = np.zeros_like(r), np.ones_like(r)
    logged = float(r.mean())
    se = _se(r)
    out = [Estimate("logged", logged, se, logged - z * se, logged + z * se, 0.0, 0.0, 0.0)]
    ips = float((w * r).mean())
    plain_ips = _estimate("ips", ips, (w, zero), (w - one, zero), ips - logged, z, t, assisted)
    out.append(_with_ratio_bounds(plain_ips, t, z) if assisted else plain_ips)
    mean_w = float(w.mean())
    if mean_w > 0.0:
        snips = float((w * r).sum() / w.sum())
        # influence w (r - V) / mean(w); paired with r - mean(r)
        a, b = w / mean_w, -w * snips / mean_w
        paired = (a - one, b + logged)
        out.append(_estimate("snips", snips, (a, b), paired, snips - logged, z, t, assisted))
    else:
        nan = math.nan
        out.append(Estimate("snips", nan, nan, nan, nan, nan, nan, nan))
    dr = float(t.dr.mean())
    slope = w if t.dr_slope is None else t.dr_slope
    b = t.dr - slope * r  # D_1 is linear in r with the (clipped) weight as its slope
    out.append(_estimate("dr", dr, (slope, b), (slope - one, b), dr - logged, z, t, assisted))
    return tuple(out)


def _with_ratio_bounds(estimate: Estimate, t: Terms, z: float) -> Estimate:
    """IPS with the union of its normal interval and the ratio's. The difference to
    the logged rate keeps its paired interval (exact for the logging policy itself,
    whose per-conversation differences are all 0)."""
    low, high = ratio_interval(t.weight, t.reward, z, t.expected)
    return replace(estimate, low=min(low, estimate.low), high=max(high, estimate.high))
