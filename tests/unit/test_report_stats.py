"""The funnel report's statistics and graph layout: Beta credible intervals
against closed-form quantiles, quantiles, path grouping, BFS layers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from projector.report.layout import depths, layered
from projector.report.stats import LEVEL, beta_interval, durations, quantile, rate, top_paths


def test_the_interval_is_equal_tailed_90_percent() -> None:
    assert LEVEL == 0.90
    low, high = beta_interval(0, 0)  # Beta(1, 1): uniform
    assert (low, high) == pytest.approx((0.05, 0.95))


@pytest.mark.parametrize(
    ("k", "n", "expected"),
    [
        # Beta(2, 1): CDF x^2, quantile sqrt(q)
        (1, 1, (math.sqrt(0.05), math.sqrt(0.95))),
        # Beta(1, 10): CDF 1 - (1 - x)^10, quantile 1 - (1 - q)^(1/10)
        (0, 9, (1 - 0.95**0.1, 1 - 0.05**0.1)),
        # Beta(10, 1): quantile q^(1/10)
        (9, 9, (0.05**0.1, 0.95**0.1)),
    ],
)
def test_known_beta_quantiles(k: int, n: int, expected: tuple[float, float]) -> None:
    assert beta_interval(k, n) == pytest.approx(expected, rel=1e-9)


def test_a_large_sample_narrows_around_the_rate() -> None:
    r = rate(3_000, 10_000)
    assert r.low < 0.3 < r.high
    assert r.high - r.low == pytest.approx(2 * 1.645 * math.sqrt(0.3 * 0.7 / 10_000), rel=0.02)


def test_impossible_counts_are_refused() -> None:
    with pytest.raises(ValueError, match="k <= n"):
        beta_interval(3, 2)


def test_quantiles_match_numpy() -> None:
    values = sorted(np.random.default_rng(1).exponential(60.0, 501).tolist())
    for q in (0.0, 0.1, 0.5, 0.9, 1.0):
        assert quantile(values, q) == pytest.approx(float(np.quantile(values, q)))
    d = durations([5.0, 1.0, 3.0])
    assert (d.count, d.median, d.values) == (3, 3.0, (1.0, 3.0, 5.0))
    assert math.isnan(durations([]).median)


def test_top_paths_then_the_rest_grouped() -> None:
    counts = {("a", "b"): (50, 10), ("a",): (30, 0), ("a", "c"): (5, 1), ("a", "d"): (5, 2)}
    rows = top_paths(counts, 2)
    assert [r.nodes for r in rows] == [("a", "b"), ("a",), None]
    rest = rows[-1]
    assert (rest.conversion.n, rest.conversion.k, rest.paths) == (10, 3, 2)
    assert len(top_paths(counts, 10)) == 4  # nothing left to group: no "other" row


def test_layers_by_bfs_depth_unreachable_last() -> None:
    graph = {"s": ("a", "b"), "a": ("c",), "b": ("c", "s"), "c": (), "orphan": ()}
    assert depths("s", graph) == {"s": 0, "a": 1, "b": 1, "c": 2}
    layout = layered("s", graph)
    ys = {node: y for node, (_, y) in layout.positions.items()}
    assert ys == {"s": 0.0, "a": -1.0, "b": -1.0, "c": -2.0, "orphan": -3.0}
    assert (layout.layers, layout.width) == (4, 2)
