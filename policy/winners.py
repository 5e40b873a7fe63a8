"""Which candidate wins each posterior draw, per context cell (and answers). Pure numpy.

A draw ``s`` of a point's posterior gives candidate ``e`` the logit
``base[s, e] + slopes[s, e] @ x`` (plus the point's pair slopes the cell has, and
the slopes of the visitor's known answers); the winner is the candidate with the
highest, ties to the lowest index. The sum is taken in float64 in a fixed order
(``base``, then each active feature's slope in ``FEATURE_NAMES`` order, then each
of the point's pair features the cell has in the order of
``PointPosterior.pairs``, then each active answer feature's slope in the order of
``PointPosterior.answers``), element-wise, so it does not depend on a BLAS
library's summation order or the CPU: :func:`winners` row by row,
:func:`cell_logits` for every cell at once (the same adds, broadcast).
:func:`win_shares` is the share of draws each candidate wins (the Thompson part
of a logged propensity, and the API's P(best)).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from policy.features import CELLS, FACTOR_LEVELS, FEATURE_NAMES, PAIR_INDEX, PAIR_INDICES, features
from policy.snapshot import PointPosterior


def winners(
    posterior: PointPosterior,
    xs: npt.NDArray[np.float64],
    ys: npt.NDArray[np.float64] | None = None,
) -> npt.NDArray[np.intp]:
    """For each row of ``xs`` (cell feature vectors; ``ys``: answer feature
    vectors, none by default), the winning candidate of every draw: ``(rows,
    draws)``. Element-wise float64 sums in a fixed order."""
    base = np.asarray(posterior.base, dtype=np.float32).astype(np.float64)  # (n, k)
    slopes = np.asarray(posterior.slopes, dtype=np.float32).astype(np.float64)  # (n, k, f)
    logits = np.repeat(base[np.newaxis], len(xs), axis=0)  # (rows, n, k)
    for f in range(len(FEATURE_NAMES)):
        weights = xs[:, f]
        rows = np.flatnonzero(weights)
        if rows.size:
            logits[rows] += weights[rows, np.newaxis, np.newaxis] * slopes[np.newaxis, :, :, f]
    if posterior.pairs:
        pairs = np.asarray(posterior.pair_slopes, dtype=np.float32).astype(np.float64)
        for p, name in enumerate(posterior.pairs):
            i, j = PAIR_INDICES[PAIR_INDEX[name]]
            weights = xs[:, i] * xs[:, j]
            rows = np.flatnonzero(weights)
            if rows.size:
                logits[rows] += weights[rows, np.newaxis, np.newaxis] * pairs[np.newaxis, :, :, p]
    if ys is not None:
        extra = np.asarray(posterior.answer_slopes, dtype=np.float32).astype(np.float64)
        for a in range(len(posterior.answers)):
            weights = ys[:, a]
            rows = np.flatnonzero(weights)
            if rows.size:
                logits[rows] += weights[rows, np.newaxis, np.newaxis] * extra[np.newaxis, :, :, a]
    winners: npt.NDArray[np.intp] = np.argmax(logits, axis=2)
    return winners


def cell_winners(posterior: PointPosterior) -> npt.NDArray[np.intp]:
    """:func:`winners` of every cell's features, ``(len(CELLS), draws)``."""
    winners: npt.NDArray[np.intp] = np.argmax(cell_logits(posterior), axis=2)
    return winners


def cell_logits(posterior: PointPosterior) -> npt.NDArray[np.float64]:
    """Every cell's logits ``(len(CELLS), draws, k)``, computed factor by factor:
    each cell has one level per factor (the baseline level adds 0.0), so this is
    the same sum in the same order as :func:`winners`, broadcast; then each of the
    point's pairs' slopes added to the cells that have the pair, in order."""
    base = np.asarray(posterior.base, dtype=np.float32).astype(np.float64)  # (n, k)
    slopes = np.asarray(posterior.slopes, dtype=np.float32).astype(np.float64)  # (n, k, f)
    n, k = base.shape
    logits = base
    first = 0
    for position, levels in enumerate(FACTOR_LEVELS):
        # this factor's effect per level, (levels, n, k): 0 for the baseline level
        effect = np.zeros((len(levels), n, k))
        effect[1:] = np.moveaxis(slopes[:, :, first : first + len(levels) - 1], 2, 0)
        first += len(levels) - 1
        shape = [1] * len(FACTOR_LEVELS) + [n, k]
        shape[position] = len(levels)
        logits = logits + effect.reshape(shape)
    out: npt.NDArray[np.float64] = np.ascontiguousarray(logits.reshape(len(CELLS), n, k))
    if posterior.pairs:
        pairs = np.asarray(posterior.pair_slopes, dtype=np.float32).astype(np.float64)
        for p, name in enumerate(posterior.pairs):
            # each cell once per pair: the same float64 adds, in the point's order
            out[_PAIR_CELLS[PAIR_INDEX[name]]] += pairs[np.newaxis, :, :, p]
    return out


_CELL_FEATURES = [features(cell) for cell in CELLS]
_PAIR_CELLS: tuple[npt.NDArray[np.intp], ...] = tuple(
    np.array([c for c, x in enumerate(_CELL_FEATURES) if x[i] and x[j]], dtype=np.intp)
    for i, j in PAIR_INDICES
)
"""Per pair feature (PAIR_NAMES order), the cells that have it."""


def win_shares(
    posterior: PointPosterior,
    x: npt.NDArray[np.float64],
    y: npt.NDArray[np.float64] | None = None,
) -> npt.NDArray[np.float64]:
    """For each candidate, the share of posterior draws in which it is the best
    for cell features ``x`` (and answer features ``y``, in ``posterior.answers``
    order; none given: no answers)."""
    ys = None if y is None else np.asarray(y, dtype=np.float64)[np.newaxis]
    drawn = winners(posterior, np.asarray(x, dtype=np.float64)[np.newaxis], ys)[0]
    counts = np.bincount(drawn, minlength=len(posterior.candidates))
    shares: npt.NDArray[np.float64] = counts / float(len(drawn))
    return shares
