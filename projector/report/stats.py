"""The report's statistics, pure: conversion rates with Beta credible intervals,
quantiles of the time to a lead, and the grouping of paths.

A conversion of ``k`` leads out of ``n`` conversations is summarised by the
posterior of its rate under a uniform prior, Beta(1 + k, 1 + n - k), and its
**equal-tailed 90% credible interval** (the 5% and 95% quantiles): the same
level as the policy service's ``/flows/{id}/summary``. The point shown is the
observed rate k / n (0 when n is 0).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

LEVEL = 0.90
"""Mass of every credible interval in the report (equal-tailed)."""


@dataclass(frozen=True, slots=True)
class Rate:
    """``k`` of ``n`` converted; ``low``/``high`` bound the 90% credible interval."""

    n: int
    k: int
    low: float
    high: float

    @property
    def rate(self) -> float:
        return self.k / self.n if self.n else 0.0


def beta_interval(k: int, n: int, level: float = LEVEL) -> tuple[float, float]:
    """Equal-tailed ``level`` interval of Beta(1 + k, 1 + n - k)."""
    if not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    # Imported here: scipy takes about 0.3 s to import, and only a rendered
    # report needs it (not the fold, not the unit tests of the rest).
    from scipy.special import betaincinv

    tail = (1.0 - level) / 2.0
    a, b = 1.0 + k, 1.0 + (n - k)
    return float(betaincinv(a, b, tail)), float(betaincinv(a, b, 1.0 - tail))


def rate(k: int, n: int) -> Rate:
    low, high = beta_interval(k, n)
    return Rate(n=n, k=k, low=low, high=high)


def quantile(sorted_values: Sequence[float], q: float) -> float:
    """Linear-interpolation quantile (numpy's default) of already sorted values."""
    if not sorted_values:
        return math.nan
    position = q * (len(sorted_values) - 1)
    lower = math.floor(position)
    upper = min(lower + 1, len(sorted_values) - 1)
    weight = position - lower
    return sorted_values[lower] * (1.0 - weight) + sorted_values[upper] * weight


@dataclass(frozen=True, slots=True)
class Durations:
    """Seconds from start to lead: how many, median, 90th percentile, sorted values."""

    count: int
    median: float
    p90: float
    values: tuple[float, ...]


def durations(values: Iterable[float]) -> Durations:
    ordered = tuple(sorted(values))
    return Durations(len(ordered), quantile(ordered, 0.5), quantile(ordered, 0.9), ordered)


@dataclass(frozen=True, slots=True)
class PathRow:
    """One path (``None``: every path outside the top ones, grouped) and its conversion."""

    nodes: tuple[str, ...] | None
    conversion: Rate
    paths: int = 1


def top_paths(counts: Mapping[tuple[str, ...], tuple[int, int]], top: int) -> list[PathRow]:
    """The ``top`` paths by conversations (ties by path), then the rest as one row.

    ``counts`` maps a path to (conversations, leads)."""
    ranked = sorted(counts.items(), key=lambda item: (-item[1][0], item[0]))
    rows = [PathRow(path, rate(k, n)) for path, (n, k) in ranked[:top]]
    rest = ranked[top:]
    if rest:
        n = sum(c for _, (c, _) in rest)
        k = sum(leads for _, (_, leads) in rest)
        rows.append(PathRow(None, rate(k, n), paths=len(rest)))
    return rows
