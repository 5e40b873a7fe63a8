"""The online learner's change detector: scoring a batch, the CUSUM's bookkeeping and
adopting the shadow's posterior. Pure numpy.

Forgetting alone (:meth:`~policy.online.OnlineLearner.forget`) relearns a changed
world slowly. At steady traffic the posterior holds about ``half_life / ln 2``
conversations' worth of evidence; after the world changes, evidence from before
the change weighs half after one half-life and a quarter after two. When the
best edge flips (its rate and the runner-up's swapped), the traffic-averaged
posterior means cross after about one half-life, and after two (the *relearning
horizon*, :attr:`~policy.online_config.OnlineConfig.horizon`, 2,000 conversations by
default) the new best edge wins in most draws (about 70% averaged over the traffic in
tests/integration/test_policy_online_learning.py's world, about 80% after three), while a
learner that never forgets still prefers the old edge. A shorter half-life
relearns sooner and explores more (fewer conversations' worth of evidence).

With ``change_half_life`` the learner keeps a shadow (the same model with that
short half-life) and, per batch before either learns it, :func:`detect` runs
Page's CUSUM of the shadow's :func:`log_likelihood` minus the learner's
(:mod:`policy.change_detection`); a point whose world changed takes the
shadow's posterior (:func:`adopt`). The same score weighs a learner's pairs
against its additive twin (:meth:`~policy.online.OnlineLearner.observe`).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from policy import change_detection, laplace
from policy.change_detection import ADOPTED_EVIDENCE
from policy.features import earlier_answers

if TYPE_CHECKING:
    from policy.online import OnlineLearner, PointState
    from policy.online_config import Outcome, PointKey


def log_likelihood(learner: OnlineLearner, batch: Sequence[Outcome]) -> dict[PointKey, float]:
    """Per point, the batch's log-likelihood under ``learner``'s posterior
    predictive (:func:`policy.laplace.predictive_log_likelihood`): a
    prequential score, called before the batch is learned."""
    groups: dict[tuple[PointKey, str], list[Outcome]] = {}
    for o in batch:
        point = learner.points.get(o.point)
        if point is not None and o.edge in point.edges:
            groups.setdefault((o.point, o.edge), []).append(o)
    out: dict[PointKey, float] = {}
    for (key, edge_id), outcomes in groups.items():
        point = learner.points[key]
        edge = point.edges[edge_id]
        rows = np.zeros((len(outcomes), len(edge.h)))
        for r, o in enumerate(outcomes):
            given = earlier_answers(o.answers, o.node_id, o.button_id)
            active = (i for i in (point.index.get(a) for a in given) if i is not None)
            learner.fill_row(rows[r], o.cell, active)
        score = laplace.predictive_log_likelihood(edge, rows, [o.success for o in outcomes])
        out[key] = out.get(key, 0.0) + score
    return out


def detect(
    learner: OnlineLearner, batch: Sequence[Outcome], mine: dict[PointKey, float] | None
) -> None:
    """Page's CUSUM, per point, of the shadow's (short half-life) predictive
    log-likelihood minus ``learner``'s (:mod:`policy.change_detection`): a
    point whose world changed takes the shadow's posterior, tempered to
    :data:`~policy.change_detection.ADOPTED_EVIDENCE` of its evidence (the
    evidence from before the change is dropped at once instead of decaying at
    the long half-life). ``mine``: ``learner``'s score of the batch, if it has one."""
    shadow = learner.shadow
    assert shadow is not None
    if mine is None:  # not scored yet (it is when pairs are weighed)
        mine = log_likelihood(learner, batch)
    theirs = log_likelihood(shadow, batch)
    learner.cusum, changed = change_detection.cusum_step(
        learner.cusum, mine, theirs, learner.config.change_threshold
    )
    for key in changed:
        learner.points[key] = adopt(learner, shadow.points[key], shadow)
        learner.changes += 1
        learner.changed_at = learner.conversations


def adopt(learner: OnlineLearner, point: PointState, other: OnlineLearner) -> PointState:
    """A copy of ``other``'s point (same features) keeping :data:`ADOPTED_EVIDENCE`
    of its evidence over the prior (``learner`` and ``other`` share the prior)."""
    assert other.fixed == learner.fixed
    adopted = copy.deepcopy(point)
    prior = learner.point_prior(adopted, learner.fixed + len(adopted.answers))
    for edge in adopted.edges.values():
        laplace.toward_prior(edge, *prior, ADOPTED_EVIDENCE)
    return adopted
