"""How much each group of weights matters, learnt from the data: automatic relevance
determination (ARD) of the prior scales of blocks of weights. Pure numpy.

The online learner's context interactions are random effects: each combination of
two factors' levels (device x source, source x hour, ...) has a weight with a
prior ``N(0, sd_g^2)`` per pair of factors ``g``. With one fixed ``sd`` for every
pair, either the pairs that matter are shrunk too hard or the many that do not
add noise; which pairs matter differs from one decision point to the next. So
each point learns its own ``sd_g`` (*hierarchical pooling with learnt scales*,
MacKay 1992's evidence fixed point, the relevance vector machine's rule): with
``alpha = 1 / sd_g^2``, the posterior means ``m_i`` and variances ``S_ii`` of the
block's weights (over every edge of the point, which share the scale),

    gamma = sum_i (1 - alpha S_ii)    (how many weights the data determine)
    alpha_new = gamma / sum_i m_i^2,

one step per batch, clamped to ``bounds``. A pair the data do not support
shrinks toward 0 (the model tends to the additive one); one they do keeps or
grows its scale. The posterior then follows the new prior exactly in natural
parameters: the data's part ``Q - Q0`` is kept and the block's prior precision
is swapped (``h0`` of a slope is 0, so ``h`` is unchanged).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from policy.laplace import EdgeGaussian, FloatArray

Block = tuple[int, int]  # [start, stop) of a group of weights


def with_scales(q0: FloatArray, blocks: Sequence[Block], sds: Sequence[float]) -> FloatArray:
    """``q0`` (a diagonal prior precision, changed in place and returned) with each
    block's diagonal set to ``1 / sd^2`` (blocks without a learnt scale: as they were)."""
    for (start, stop), sd in zip(blocks, sds, strict=False):
        q0[range(start, stop), range(start, stop)] = 1.0 / sd**2
    return q0


def relevance_step(
    edges: Sequence[EdgeGaussian],
    blocks: Sequence[Block],
    sds: Sequence[float],
    bounds: tuple[float, float],
) -> list[float]:
    """One fixed-point step of every block's scale, shared by ``edges``; the edges'
    posteriors are moved to the new prior in place. Returns the new scales."""
    low, high = bounds
    stats = [(edge.mean, np.diag(np.linalg.inv(edge.q))) for edge in edges]
    out = []
    for (start, stop), sd in zip(blocks, sds, strict=True):
        alpha = 1.0 / sd**2
        gamma = sum(float(np.sum(1.0 - alpha * v[start:stop])) for _, v in stats)
        power = sum(float(np.sum(m[start:stop] ** 2)) for m, _ in stats)
        learnt = math.sqrt(power / gamma) if gamma > 0.0 and power > 0.0 else low
        learnt = min(max(learnt, low), high)
        change = 1.0 / learnt**2 - alpha
        for edge in edges:
            edge.q[range(start, stop), range(start, stop)] += change
        out.append(learnt)
    return out
