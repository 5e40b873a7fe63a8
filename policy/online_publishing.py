"""Publishing the online learner's posterior as a policy snapshot. Pure numpy.

Per point, each edge's published weights are the marginal of the learner's
Gaussian over the snapshot's coding: the intercept and the cell's slopes (with
context pairs, the pair coding mapped through
:data:`policy.pair_design.TRANSFORM`), then the answers with enough support.
``draws`` joint draws per edge come from a generator seeded by the snapshot's
version, so the same learner state and version give the same bytes
(:func:`policy.archive.draw_points`); the spread is scaled by ``draw_scale``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from policy import pair_design
from policy.archive import GaussianPosterior, PointGaussian, draw_points
from policy.features import FEATURE_NAMES, PAIR_INDEX, PAIR_NAMES, answer_label
from policy.laplace import FloatArray
from policy.snapshot import Guardrails, PolicySnapshot

F = len(FEATURE_NAMES)

if TYPE_CHECKING:
    from policy.online import OnlineLearner
    from policy.online_config import PointKey


def snapshot_seed(version: str) -> int:
    return int.from_bytes(hashlib.sha256(f"online/{version}".encode()).digest()[:8], "big")


def publish_map(learner: OnlineLearner, answers: int) -> FloatArray:
    """(published_fixed + answers, fixed + answers): the snapshot's weights of the
    learner's (the pair coding's TRANSFORM, then the answers as they are)."""
    out = np.zeros((learner.published_fixed + answers, learner.fixed + answers))
    if learner.config.pairs:
        out[: learner.published_fixed, : learner.fixed] = pair_design.TRANSFORM
    else:
        out[: learner.fixed, : learner.fixed] = np.eye(learner.fixed)
    out[learner.published_fixed :, learner.fixed :] = np.eye(answers)
    return out


PUBLISHED_PAIR_SD = 0.05
"""A pair of factors whose learnt scale is below this is not published: its weights
are taken at 0 (the posterior conditional on them), which makes the snapshot's
pair slopes of that pair exactly 0, so they are left out of the snapshot (each
snapshot pair slope depends on its own pair's weights alone). With the scales
near their floor of 0.02 wherever a pair does not matter, an update's snapshot
stays near the size of one without pairs."""


def published_pairs(scales: Sequence[float]) -> tuple[tuple[str, ...], list[tuple[int, int]]]:
    """The snapshot's pair features to publish, in PAIR_NAMES order, and the
    learner's weight blocks left out, given a point's learnt pair scales (none
    learnt: every pair)."""
    dropped = [g for g, sd in enumerate(scales) if sd < PUBLISHED_PAIR_SD]
    if not dropped:
        return PAIR_NAMES, []
    names = tuple(
        name
        for name, g in zip(PAIR_NAMES, pair_design.PAIR_BLOCK_OF, strict=True)
        if g not in dropped
    )
    return names, [pair_design.PAIR_BLOCKS[g] for g in dropped]


def point_gaussian(learner: OnlineLearner, key: PointKey) -> PointGaussian:
    """The point's published weights' Gaussian, per edge (the marginal of the
    published answers; with pairs, mapped to the snapshot's coding)."""
    point = learner.points[key]
    keep = learner.published_answers(key)
    scale = learner.config.draw_scale
    means, factors = [], []
    pairs: tuple[str, ...] = ()
    if learner.config.pairs:
        pairs, dropped = published_pairs(point.pair_sd)
        published = learner.published_fixed
        rows = [
            *range(1 + F),
            *(1 + F + PAIR_INDEX[name] for name in pairs),
            *(published + a for a in keep),
        ]
        mapping = publish_map(learner, len(point.answers))[np.array(rows, dtype=np.intp)]
        columns = np.ones(mapping.shape[1], dtype=bool)
        for start, stop in dropped:
            columns[start:stop] = False
        kept = np.flatnonzero(columns)
        selected = mapping[:, kept]
        for edge_id in point.candidates:
            edge = point.edges[edge_id]
            # the published weights B w, the dropped pairs' weights at 0 (the posterior
            # conditional on them): N(B m_c, B Q_c^-1 B') with Q_c, h_c the kept block
            q = edge.q[np.ix_(kept, kept)] if dropped else edge.q
            mean = np.linalg.solve(q, edge.h[kept]) if dropped else edge.mean
            marginal = selected @ np.linalg.solve(q, selected.T)
            factors.append(np.linalg.cholesky(0.5 * (marginal + marginal.T)) * scale)
            means.append(selected @ mean)
    else:
        fixed = learner.fixed
        columns = np.array([0, *range(1, fixed), *(fixed + a for a in keep)], dtype=np.intp)
        for edge_id in point.candidates:
            edge = point.edges[edge_id]
            # the marginal of the published weights: N(m[c], (Q^-1)[c, c])
            marginal = np.linalg.inv(edge.q)[np.ix_(columns, columns)]
            factor = np.linalg.cholesky(0.5 * (marginal + marginal.T))
            factors.append(factor if scale == 1.0 else factor * scale)
            means.append(edge.mean[columns])
    return PointGaussian(
        node_id=key[0],
        button_id=key[1],
        candidates=point.candidates,
        answers=tuple(answer_label(*point.answers[a]) for a in keep),
        mean=np.array(means, dtype=np.float64),
        factor=np.array(factors, dtype=np.float64),
        pairs=pairs,
    )


def snapshot_of(
    learner: OnlineLearner,
    version: str,
    created_at: float,
    guardrails: Guardrails | None,
    gaussians: list[PointGaussian],
    seed: int | None,
) -> PolicySnapshot:
    """The snapshot of ``gaussians`` (one per point), with the learner's diagnostics."""
    draws = learner.config.draws
    source = GaussianPosterior(
        snapshot_seed(version) if seed is None else seed, draws, tuple(gaussians)
    )
    points = draw_points(source)
    diagnostics: dict[str, Any] = {
        "source": "online",
        "outcomes": learner.outcomes,
        "conversations": learner.conversations,
        "half_life_conversations": learner.config.half_life,
        "draws": draws,
        "answer_features": sum(len(p.answers) for p in points.values()),
    }
    if learner.config.pairs:
        diagnostics["pair_points"] = sum(1 for p in points.values() if p.pairs)
    if learner.shadow is not None:
        diagnostics["changes_detected"] = learner.changes
    if learner.anchor is not None:
        diagnostics["fit_version"] = learner.anchor
    return PolicySnapshot(
        flow_id=learner.flow_id,
        flow_version=learner.flow_version,
        version=version,
        created_at=created_at,
        points=points,
        guardrails=guardrails if guardrails is not None else Guardrails(),
        diagnostics=diagnostics,
        source=source,
    )
