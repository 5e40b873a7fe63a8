"""Seeding the online learner from a fit's snapshot (the periodic full fit stays the anchor).
Pure numpy.

Each edge's draws in the snapshot are moment-matched to a mean and a
covariance (``Q_fit``, ``h_fit``); the fit is tempered to what forgetting would
have kept, ``t = min(1, (half_life / ln 2) / conversations)``,
``Q = (1 - t) Q0 + t Q_fit`` and ``h = (1 - t) h0 + t h_fit``, so a fit over a
long history does not outweigh the forgetting. Answer features the fit does not
know start at the prior. With context pairs the fit's Gaussian over the weights
it publishes is taken as a tempered observation of the learner's weights
through the publishing map (:func:`seed_pairs`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from policy.features import FEATURE_NAMES, PAIR_INDEX, PAIR_NAMES
from policy.laplace import EdgeGaussian, FloatArray
from policy.online_publishing import publish_map
from policy.snapshot import PointPosterior, PolicySnapshot

if TYPE_CHECKING:
    from policy.online import OnlineLearner, PointState

F = len(FEATURE_NAMES)
P = len(PAIR_NAMES)
MIN_VARIANCE = 1e-6  # of a moment-matched weight: a fit's draws never pin one exactly


def seed(learner: OnlineLearner, snapshot: PolicySnapshot, conversations: int | None) -> None:
    """Set a fresh ``learner``'s posterior to ``snapshot``'s, tempered (``conversations``:
    what the fit saw; by default its diagnostics' ``conversations``)."""
    learner.anchor = str(snapshot.diagnostics.get("fit_version", snapshot.version))
    seen = conversations
    if seen is None:
        raw = snapshot.diagnostics.get("conversations")
        seen = int(raw) if isinstance(raw, int | float) and not isinstance(raw, bool) else 0
    kept = learner.config.half_life / math.log(2.0)
    temper = 1.0 if seen <= 0 or seen <= kept else kept / seen
    for key, posterior in snapshot.points.items():
        point = learner.points[key]
        names = answer_pairs(posterior.answers)
        learner.register(point, names)
        for name in names:  # the fit's answers stay published
            i = point.index[name]
            point.support[i] = max(point.support[i], learner.config.min_answer_support)
        for e, edge_id in enumerate(posterior.candidates):
            _seed_edge(learner, point, posterior, e, point.edges[edge_id], temper)


def _seed_edge(
    learner: OnlineLearner,
    point: PointState,
    posterior: PointPosterior,
    e: int,
    edge: EdgeGaussian,
    temper: float,
) -> None:
    pairs = learner.config.pairs
    draws = np.concatenate(
        [
            posterior.base[:, e, None].astype(np.float64),
            posterior.slopes[:, e, :].astype(np.float64),
            _pairs_aligned(posterior, e, P if pairs else 0),
            _aligned(posterior, point, e),
        ],
        axis=1,
    )
    known = np.ones(draws.shape[1], dtype=bool)
    known[1 + F :] = False
    if pairs:
        for pair in posterior.pairs:
            known[1 + F + PAIR_INDEX[pair]] = True
    for name in answer_pairs(posterior.answers):
        known[learner.published_fixed + point.index[name]] = True
    if pairs:
        seed_pairs(learner, edge, draws, known, temper)
        return
    q0, h0 = learner.prior(draws.shape[1])
    mean = np.where(known, draws.mean(axis=0), np.linalg.solve(q0, h0))
    size = int(known.sum())
    cov: FloatArray = np.zeros((size, size))
    if len(draws) > 1:
        cov = np.atleast_2d(np.cov(draws[:, known], rowvar=False))
    cov = cov + MIN_VARIANCE * np.eye(size)
    q_fit = q0.copy()
    q_fit[np.ix_(known, known)] = np.linalg.inv(cov)
    q_fit = 0.5 * (q_fit + q_fit.T)
    edge.q = (1.0 - temper) * q0 + temper * q_fit
    edge.h = (1.0 - temper) * h0 + temper * (q_fit @ mean)


def seed_pairs(
    learner: OnlineLearner,
    edge: EdgeGaussian,
    draws: FloatArray,
    known: npt.NDArray[np.bool_],
    temper: float,
) -> None:
    """With pairs: the fit's moment-matched Gaussian over the published weights it
    knows, ``N(mean, cov)``, is taken as a tempered Gaussian observation of those
    weights (``B w``, B the publishing map): ``Q = Q0 + t B' cov^-1 B``,
    ``h = h0 + t B' cov^-1 mean``."""
    size = int(known.sum())
    cov: FloatArray = np.zeros((size, size))
    if len(draws) > 1:
        cov = np.atleast_2d(np.cov(draws[:, known], rowvar=False))
    cov = cov + MIN_VARIANCE * np.eye(size)
    precision = np.linalg.inv(cov)
    b = publish_map(learner, draws.shape[1] - learner.published_fixed)[known]
    q0, h0 = learner.prior(b.shape[1])
    edge.q = q0 + temper * (b.T @ precision @ b)
    edge.q = 0.5 * (edge.q + edge.q.T)
    edge.h = h0 + temper * (b.T @ (precision @ draws[:, known].mean(axis=0)))


def answer_pairs(names: Sequence[str]) -> list[tuple[str, str]]:
    """``answer:{node}={button}`` labels as (node, button)."""
    out = []
    for name in names:
        node, _, button = name.partition(":")[2].partition("=")
        out.append((node, button))
    return out


def _pairs_aligned(posterior: PointPosterior, e: int, width: int) -> FloatArray:
    """The posterior's pair slopes of edge ``e`` in PAIR_NAMES order (``width``
    columns: P, or 0 for a learner without pairs; zeros for pairs it does not know)."""
    out = np.zeros((posterior.base.shape[0], width))
    if width:
        for j, name in enumerate(posterior.pairs):
            out[:, PAIR_INDEX[name]] = posterior.pair_slopes[:, e, j]
    return out


def _aligned(posterior: PointPosterior, point: PointState, e: int) -> FloatArray:
    """The posterior's answer slopes of edge ``e`` in the learner's answer order
    (zeros for answers the snapshot does not know)."""
    out = np.zeros((posterior.base.shape[0], len(point.answers)))
    for j, name in enumerate(answer_pairs(posterior.answers)):
        out[:, point.index[name]] = posterior.answer_slopes[:, e, j]
    return out
