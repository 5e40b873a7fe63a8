"""Context interactions (pair features, snapshot format v4): the learner's symmetric
coding maps exactly onto the snapshot's, a v4 snapshot round-trips and decides by
the documented sum in both of ThompsonPolicy's paths, its compact archive form
regenerates the exact bytes (tests/integration/test_policy_pairs_learning.py: a
learner with pairs learns an interaction that additive slopes cannot express)."""

from __future__ import annotations

import numpy as np
import pytest

from policy import pair_design
from policy.features import (
    CELLS,
    FEATURE_NAMES,
    PAIR_NAMES,
    PAIR_SEPARATOR,
    Cell,
    cell_pairs,
    features,
)
from policy.snapshot import (
    PAIRS_VERSION,
    PointPosterior,
    PolicySnapshot,
    SnapshotError,
    decode_snapshot,
    encode_snapshot,
)
from policy.winners import cell_logits, winners

KEY = ("q", "b")
EDGES = ("x", "y")
F = len(FEATURE_NAMES)


def test_pair_names_are_products_of_two_factors() -> None:
    assert len(PAIR_NAMES) == 50
    assert "device=mobile*source=paid" in PAIR_NAMES
    assert not any(n.startswith("device=mobile*device=") for n in PAIR_NAMES)
    cell = next(c for c in CELLS if (c.device, c.source, c.hour) == ("mobile", "paid", "night"))
    active = {PAIR_NAMES[i] for i in np.flatnonzero(cell_pairs(cell))}
    expected = {"device=mobile*source=paid"}
    if cell.language == "other":
        expected |= {"device=mobile*language=other", "source=paid*language=other"}
    assert active == expected


def test_the_learners_coding_gives_every_cell_the_published_logit() -> None:
    rng = np.random.default_rng(3)
    w = rng.normal(size=pair_design.SIZE)
    published = pair_design.TRANSFORM @ w
    for c, cell in enumerate(CELLS):
        mine = pair_design.ROWS[c] @ w
        theirs = published[0] + features(cell) @ published[1 : 1 + F]
        theirs += cell_pairs(cell) @ published[1 + F :]
        assert mine == pytest.approx(theirs, abs=1e-12)


def _posterior(rng: np.random.Generator, draws: int = 40) -> PointPosterior:
    return PointPosterior(
        node_id=KEY[0],
        button_id=KEY[1],
        candidates=EDGES,
        base=rng.normal(size=(draws, 2)).astype(np.float32),
        slopes=rng.normal(0, 0.3, size=(draws, 2, F)).astype(np.float32),
        pairs=("device=mobile*source=paid", "source=search*hour=evening"),
        pair_slopes=rng.normal(0, 2.0, size=(draws, 2, 2)).astype(np.float32),
    )


def _snapshot(point: PointPosterior, version: str = "f@1#p") -> PolicySnapshot:
    return PolicySnapshot("f", 1, version, 1.0, {KEY: point})


def test_each_published_pair_slope_depends_on_its_own_pair_of_factors_alone() -> None:
    """What leaving a faded pair out of a snapshot rests on (policy.online_publishing):
    a snapshot pair slope's row of TRANSFORM is 0 outside its block, and its block
    is the pair of factors of its two features."""
    first_pair = 1 + len(FEATURE_NAMES)
    for p, (name, g) in enumerate(zip(PAIR_NAMES, pair_design.PAIR_BLOCK_OF, strict=True)):
        start, stop = pair_design.PAIR_BLOCKS[g]
        row = pair_design.TRANSFORM[first_pair + p]
        assert np.any(row[start:stop]) and not np.any(np.delete(row, range(start, stop)))
        factors = {label.partition("=")[0] for label in name.split(PAIR_SEPARATOR)}
        i, j = pair_design.FACTOR_PAIRS[g]
        assert factors == {Cell._fields[i], Cell._fields[j]}


def test_a_snapshot_with_pairs_is_v4_and_round_trips() -> None:
    snapshot = _snapshot(_posterior(np.random.default_rng(1)))
    data = encode_snapshot(snapshot)
    assert decode_snapshot(data).points[KEY].pairs == snapshot.points[KEY].pairs
    assert b'"v":4' in data and PAIRS_VERSION == 4
    again = decode_snapshot(data)
    np.testing.assert_array_equal(again.points[KEY].pair_slopes, snapshot.points[KEY].pair_slopes)
    assert encode_snapshot(again) == data


def test_unknown_or_repeated_pairs_are_refused() -> None:
    point = _posterior(np.random.default_rng(1))
    with pytest.raises(SnapshotError, match="not a pair feature"):
        PointPosterior(
            KEY[0], KEY[1], EDGES, point.base, point.slopes,
            pairs=("device=mobile*device=tablet", "source=search*hour=evening"),
            pair_slopes=point.pair_slopes,
        )  # fmt: skip
    with pytest.raises(SnapshotError, match="wrong shape"):
        PointPosterior(
            KEY[0], KEY[1], EDGES, point.base, point.slopes,
            pairs=("device=mobile*source=paid",), pair_slopes=point.pair_slopes,
        )  # fmt: skip


def test_the_compiled_cells_and_the_row_path_sum_alike() -> None:
    point = _posterior(np.random.default_rng(2))
    xs = np.array([features(c) for c in CELLS])
    logits = cell_logits(point)
    np.testing.assert_array_equal(np.argmax(logits, axis=2), winners(point, xs))
    # the pair's slope reaches exactly the cells that have it
    without = PointPosterior(KEY[0], KEY[1], EDGES, point.base, point.slopes)
    moved = np.any(cell_logits(without) != logits, axis=(1, 2))
    has = np.array([cell_pairs(c)[[PAIR_NAMES.index(n) for n in point.pairs]].any() for c in CELLS])
    np.testing.assert_array_equal(moved, has)
