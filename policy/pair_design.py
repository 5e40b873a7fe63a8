"""The online learner's coding of context interactions: every level, every pair of
levels, each with its own shrinkage. Pure numpy.

The snapshot codes a cell the way the decision sums it (:mod:`policy.features`):
an intercept, a 0/1 slope per non-baseline level and, for context interactions,
a 0/1 slope per product of two non-baseline levels of different factors
(:data:`~policy.features.PAIR_NAMES`): 1 + 12 + 50 = 63 weights. That coding is
fine for summing but bad for shrinking: an effect of a *combination* such as
"mobile and paid" is, measured from the baselines (desktop, direct), the
combination minus two main effects plus the baseline's, up to four times the
size of the effect itself, and an independent ``N(0, sd^2)`` prior on it shrinks
the wrong thing (the interactions world's largest pair slope is 3.0 logits for
an effect of 1.2).

The learner therefore learns in a symmetric, over-complete coding (*hierarchical
pooling* with fixed scales, a random-effects model): an intercept, one weight per
level of every factor (16, ``N(0, level_sd^2)``) and one weight per combination
of levels of every pair of factors (92, ``N(0, pair_sd^2)``), so that a cell's
logit is the intercept plus its four levels' weights plus its six combinations'
weights. Each combination is shrunk toward the additive model, each level toward
the intercept, where the data are thin; where they are not, the data decide.
Every cell's logit in this coding is a linear function of the published one's:
``TRANSFORM`` (63 x 109) maps the learner's weights to the snapshot's exactly
(for every cell, the same logit), so a Gaussian posterior ``N(m, S)`` is
published as ``N(T m, T S T')``.
"""

from __future__ import annotations

import itertools

import numpy as np
import numpy.typing as npt

from policy.features import (
    CELLS,
    FACTOR_LEVELS,
    FEATURE_FACTORS,
    PAIR_INDICES,
    cell_pairs,
    features,
)

FloatArray = npt.NDArray[np.float64]

FACTORS = len(FACTOR_LEVELS)
_LEVEL_OFFSETS: tuple[int, ...] = tuple(
    1 + sum(len(levels) for levels in FACTOR_LEVELS[:i]) for i in range(FACTORS)
)
LEVELS = sum(len(levels) for levels in FACTOR_LEVELS)  # 16
FACTOR_PAIRS: tuple[tuple[int, int], ...] = tuple(itertools.combinations(range(FACTORS), 2))
_PAIR_OFFSETS: list[int] = []
_offset = 1 + LEVELS
for _i, _j in FACTOR_PAIRS:
    _PAIR_OFFSETS.append(_offset)
    _offset += len(FACTOR_LEVELS[_i]) * len(FACTOR_LEVELS[_j])
SIZE = _offset  # 109: intercept, levels, combinations


def _level_indices(c: int) -> tuple[int, ...]:
    """The level index of each factor in cell ``c`` (CELLS order: the last varies fastest)."""
    out = []
    rest = c
    for levels in reversed(FACTOR_LEVELS):
        out.append(rest % len(levels))
        rest //= len(levels)
    return tuple(reversed(out))


def _rows() -> FloatArray:
    rows = np.zeros((len(CELLS), SIZE))
    for c in range(len(CELLS)):
        level = _level_indices(c)
        rows[c, 0] = 1.0
        for f in range(FACTORS):
            rows[c, _LEVEL_OFFSETS[f] + level[f]] = 1.0
        for p, (i, j) in enumerate(FACTOR_PAIRS):
            rows[c, _PAIR_OFFSETS[p] + level[i] * len(FACTOR_LEVELS[j]) + level[j]] = 1.0
    rows.setflags(write=False)
    return rows


ROWS: FloatArray = _rows()
"""Each cell's 0/1 row in the learner's coding, (len(CELLS), SIZE)."""

PUBLISHED: FloatArray = np.array(
    [np.concatenate([[1.0], features(cell), cell_pairs(cell)]) for cell in CELLS]
)
"""Each cell's row in the snapshot's coding (intercept, cell features, pairs), (cells, 63)."""


def _transform() -> FloatArray:
    solution, *_ = np.linalg.lstsq(PUBLISHED, ROWS, rcond=None)
    # exact in theory (both codings span every sum of two-factor terms); the rounding
    # of the solve is removed: the entries are small integers
    t = np.round(solution)
    if not np.array_equal(PUBLISHED @ t, ROWS):
        raise AssertionError("the pair coding does not map onto the snapshot's")
    t.setflags(write=False)
    return t


TRANSFORM: FloatArray = _transform()
"""(63, SIZE): the snapshot's weights of the learner's weights ``w``: ``TRANSFORM @ w``."""


def prior_precision(intercept_sd: float, level_sd: float, pair_sd: float) -> FloatArray:
    """The diagonal of the prior precision, (SIZE,)."""
    diagonal = np.full(SIZE, 1.0 / pair_sd**2)
    diagonal[0] = 1.0 / intercept_sd**2
    diagonal[1 : 1 + LEVELS] = 1.0 / level_sd**2
    return diagonal


PAIR_BLOCKS: tuple[tuple[int, int], ...] = tuple(
    (offset, offset + len(FACTOR_LEVELS[i]) * len(FACTOR_LEVELS[j]))
    for offset, (i, j) in zip(_PAIR_OFFSETS, FACTOR_PAIRS, strict=True)
)
"""Each pair of factors' combinations in the learner's coding: [start, stop)."""

PAIR_BLOCK_OF: tuple[int, ...] = tuple(
    FACTOR_PAIRS.index((FEATURE_FACTORS[i], FEATURE_FACTORS[j])) for i, j in PAIR_INDICES
)
"""Each snapshot pair feature's pair of factors (PAIR_NAMES order; an index into
FACTOR_PAIRS and PAIR_BLOCKS): its slope depends on that block's weights alone."""
