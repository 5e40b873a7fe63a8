"""A candidate's evaluation as users are shown it: every estimate over all
conversations and over those with decisions, the effective sample size, the
warnings, and no estimate at all below the effective sample size's floor. Pure numpy.

The effective sample size is ``(sum w)^2 / sum w^2`` over the conversations with
decisions: below :data:`SMALL_ESS` (or 5% of them) a warning says the intervals
are unreliable, below :data:`MIN_ESS` no estimate is shown (:func:`refusal`).

What :func:`summarize` reports (and ``leadflow policy evaluate`` prints) is
clipped to what a lead rate can be: every rate and interval bound to [0, 1],
every difference bound to [-1, 1] and, for a clipped rate, to the range its
clipped value leaves (:func:`clipped`); a point estimate outside [0, 1]
(IPS or DR with heavy weights on a small sample) gets a warning saying so.
:func:`~policy.evaluation.estimators.estimates` keeps the unclipped numbers (the
validation's bias is of those).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from .candidates import Candidate
from .conversation_terms import DR_CLIP, Terms, terms
from .estimators import Estimate, NoDecisions, estimates
from .lead_model import DEFAULT_FOLDS
from .trajectories import Trajectory

FloatArray = npt.NDArray[np.float64]
SMALL_ESS = 100.0
MIN_ESS = 50.0  # below this effective sample size no estimate is shown (refusal)


def _clamp(x: float, low: float, high: float) -> float:
    return x if math.isnan(x) else min(max(x, low), high)


def clipped(estimate: Estimate, logged: float) -> Estimate:
    """``estimate`` within what a rate can be: its value and interval within
    [0, 1]; its difference to the logged rate ``logged`` recomputed from the
    clipped value when that moved, and every difference bound within [-1, 1]
    and within the interval's own clipped difference range, so that the point
    lies in its interval and the two columns say the same thing."""
    value = _clamp(estimate.value, 0.0, 1.0)
    low, high = _clamp(estimate.low, 0.0, 1.0), _clamp(estimate.high, 0.0, 1.0)
    if estimate.estimator == "logged":
        return replace(estimate, value=value, low=low, high=high)
    difference = estimate.difference
    if value != estimate.value:
        difference = value - logged
    # the difference cannot be below what the lowest rate gives, nor above the highest
    floor, ceiling = max(-1.0, -logged), min(1.0, 1.0 - logged)
    return replace(
        estimate,
        value=value,
        low=low,
        high=high,
        difference=_clamp(difference, floor, ceiling),
        difference_low=_clamp(min(estimate.difference_low, difference), floor, ceiling),
        difference_high=_clamp(max(estimate.difference_high, difference), floor, ceiling),
    )


def effective_sample_size(w: FloatArray) -> float:
    sq = float((w * w).sum())
    return float(w.sum()) ** 2 / sq if sq > 0.0 else 0.0


@dataclass(frozen=True, slots=True)
class Evaluation:
    candidate: str
    level: float
    conversations: int
    with_decisions: int
    decisions: int
    estimates: tuple[Estimate, ...]  # over every conversation: logged, ips, snips, dr
    decided: tuple[Estimate, ...]  # over conversations with at least one decision
    ess: float  # over conversations with at least one decision
    max_weight: float
    zero_support: float  # share of decisions whose logged edge the candidate never takes
    warnings: tuple[str, ...]
    dr_clip: float = math.inf  # DR's largest cumulative weight
    dr_clipped: int = 0  # conversations with decisions whose DR weight was clipped
    dr_clipped_weight: float = 0.0  # their share of the total weight
    clipped: tuple[str, ...] = ()  # rows whose value or interval was clipped to [0, 1]

    def estimate(self, name: str, decided: bool = False) -> Estimate:
        for e in self.decided if decided else self.estimates:
            if e.estimator == name:
                return e
        raise KeyError(name)


def evaluate(
    trajectories: Sequence[Trajectory],
    candidate: Candidate,
    level: float = 0.95,
    folds: int = DEFAULT_FOLDS,
    assisted: bool = True,
    clip: float = DR_CLIP,
) -> Evaluation:
    """Every estimate of ``candidate``'s value on ``trajectories`` (all of which
    it must cover), clipped to [0, 1]. :class:`NoDecisions` when none has a decision."""
    return summarize(terms(trajectories, candidate, folds, clip), candidate.name, level, assisted)


def _clip_all(
    rows: tuple[Estimate, ...], where: str, warnings: list[str], notes: list[str]
) -> tuple[Estimate, ...]:
    """Every row :func:`clipped`; a warning for each point estimate that was outside
    [0, 1], a note in ``notes`` for each row whose interval ran past it."""
    logged = rows[0].value  # the logged rate: a mean of 0/1 rewards, always within [0, 1]
    out = []
    for row in rows:
        fixed = clipped(row, logged)
        if fixed.value != row.value:
            warnings.append(
                f"{_LABELS[row.estimator]} over {where} came out at {row.value:.2%}, outside"
                f" what a rate can be; it is shown as {fixed.value:.2%}: too few conversations"
                " for weights this heavy"
            )
        if (fixed.low, fixed.high) != (row.low, row.high):
            notes.append(
                f"{_LABELS[row.estimator]} ({where}) [{row.low:.2%}, {row.high:.2%}]"
                f" shown as [{fixed.low:.2%}, {fixed.high:.2%}]"
            )
        out.append(fixed)
    return tuple(out)


def refusal(evaluation: Evaluation, min_ess: float = MIN_ESS) -> str | None:
    """Why no estimate should be shown (None: it can be): an effective sample size
    below ``min_ess``. With so few effective conversations the normal intervals
    do not hold (a DR estimate of -53% with an ESS of 2.2 was printed once): the
    estimate would say more than the log knows."""
    if evaluation.ess >= min_ess:
        return None
    return (
        f"no estimate: the effective sample size is {evaluation.ess:,.1f} of"
        f" {evaluation.with_decisions:,} conversations with decisions, below the floor of"
        f" {min_ess:g} (--min-ess): the candidate is too far from the logging policy for"
        " this log to say what it would do"
    )


_LABELS = {"logged": "the logged rate", "ips": "IPS", "snips": "SNIPS", "dr": "DR"}


def summarize(
    t: Terms, candidate: str, level: float = 0.95, assisted: bool = True, clip: bool = True
) -> Evaluation:
    """The :class:`Evaluation` of one candidate's per-conversation terms; with
    ``clip`` (what users are shown) every rate within [0, 1] (:func:`clipped`),
    without it the estimators' own numbers (for the validation's bias)."""
    decided_mask = t.decided
    if not decided_mask.any():
        raise NoDecisions("no logged decisions in this range")
    sub = Terms(
        t.reward[decided_mask],
        t.weight[decided_mask],
        t.dr[decided_mask],
        t.expected[decided_mask],
        t.decided[decided_mask],
        t.decisions,
        t.zero_support,
        None if t.dr_slope is None else t.dr_slope[decided_mask],
        t.clip,
        None if t.dr_clipped is None else t.dr_clipped[decided_mask],
    )
    w = sub.weight
    ess = effective_sample_size(w)
    n = int(decided_mask.sum())
    warnings = []
    if ess < SMALL_ESS or ess < 0.05 * n:
        warnings.append(
            f"effective sample size {ess:,.0f} of {n:,} conversations with decisions: the"
            " candidate is far from the logging policy, the intervals are unreliable"
        )
    total_w = float(w.sum())
    if total_w > 0.0 and float(w.max()) > 0.1 * total_w:
        warnings.append(
            f"one conversation carries {float(w.max()) / total_w:.0%} of the total weight"
            " of the conversations with decisions"
        )
    if total_w == 0.0:
        warnings.append(
            "the candidate never takes a logged action in the conversations with decisions:"
            " there IPS is 0 and SNIPS undefined"
        )
    dr_clipped = 0 if sub.dr_clipped is None else int(sub.dr_clipped.sum())
    dr_clipped_weight = (
        float(w[sub.dr_clipped].sum()) / total_w
        if sub.dr_clipped is not None and total_w > 0.0
        else 0.0
    )
    if dr_clipped:
        warnings.append(
            f"DR clipped the importance weight of {dr_clipped:,} conversations at"
            f" {t.clip:g} ({dr_clipped_weight:.0%} of the total weight): DR is biased there"
            " by the model's error, IPS and SNIPS are not clipped"
        )
    every, decided = estimates(t, level, assisted), estimates(sub, level, assisted)
    notes: list[str] = []
    if clip:
        every = _clip_all(every, "all conversations", warnings, notes)
        decided = _clip_all(decided, "the conversations with decisions", warnings, notes)
    if notes:
        warnings.append("intervals clipped to [0%, 100%]: " + "; ".join(notes))
    return Evaluation(
        candidate=candidate,
        level=level,
        conversations=len(t.reward),
        with_decisions=n,
        decisions=t.decisions,
        estimates=every,
        decided=decided,
        ess=ess,
        max_weight=float(w.max()),
        zero_support=t.zero_support / t.decisions,
        warnings=tuple(warnings),
        dr_clip=t.clip,
        dr_clipped=dr_clipped,
        dr_clipped_weight=dr_clipped_weight,
        clipped=tuple(notes),
    )
