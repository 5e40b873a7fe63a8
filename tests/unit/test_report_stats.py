"""The funnel report's statistics and graph layout: refused counts, quantiles,
BFS layers. The Beta credible intervals themselves (scipy) and the rows built
on them are tested in tests/integration/test_report_intervals.py."""

from __future__ import annotations

import math

import numpy as np
import pytest

from projector.report.layout import depths, layered
from projector.report.stats import beta_interval, durations, quantile


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


def test_layers_by_bfs_depth_unreachable_last() -> None:
    graph = {"s": ("a", "b"), "a": ("c",), "b": ("c", "s"), "c": (), "orphan": ()}
    assert depths("s", graph) == {"s": 0, "a": 1, "b": 1, "c": 2}
    layout = layered("s", graph)
    ys = {node: y for node, (_, y) in layout.positions.items()}
    assert ys == {"s": 0.0, "a": -1.0, "b": -1.0, "c": -2.0, "orphan": -3.0}
    assert (layout.layers, layout.width) == (4, 2)
