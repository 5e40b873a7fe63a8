"""The funnel report's Beta credible intervals (scipy's ``betaincinv``: about a
third of a second to import, so here rather than in the unit tier) against
closed-form quantiles, and the rows built on them: path grouping, node rows."""

from __future__ import annotations

import math

import pytest

from projector.report.fold import fold_funnel
from projector.report.model import build_report
from projector.report.stats import LEVEL, beta_interval, rate, top_paths
from tests.unit.test_report_fold import Conv


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


def test_top_paths_then_the_rest_grouped() -> None:
    counts = {("a", "b"): (50, 10), ("a",): (30, 0), ("a", "c"): (5, 1), ("a", "d"): (5, 2)}
    rows = top_paths(counts, 2)
    assert [r.nodes for r in rows] == [("a", "b"), ("a",), None]
    rest = rows[-1]
    assert (rest.conversion.n, rest.conversion.k, rest.paths) == (10, 3, 2)
    assert len(top_paths(counts, 10)) == 4  # nothing left to group: no "other" row


def test_without_the_flow_file_the_observed_graph_is_used() -> None:
    events = Conv("c1").start().enter("a", "b").events + Conv("c2").start().enter("a").events
    [stats] = fold_funnel([events], "f").values()
    report = build_report(stats, None)
    assert (report.start, report.has_flow) == ("a", False)
    assert dict(report.successors) == {"a": ("b",), "b": ()}
    assert [(n.id, n.entered, n.stopped) for n in report.nodes] == [("a", 2, 1), ("b", 1, 1)]
