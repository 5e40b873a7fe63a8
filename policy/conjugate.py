"""Between fits: conjugate Beta updates of a fitted snapshot from the live counts. Pure numpy.

A fit (:func:`policy.model.fit_flow`) takes seconds and runs on a schedule; the
outcomes counted since then should still move the policy. For every decision
point and candidate edge ``e`` with outcomes since the fit (``S`` successes,
``F`` failures, ``n_c`` trials in context cell ``c``):

1. each of the snapshot's draws ``s`` implies the edge's average conversion
   probability over the traffic seen since the fit,
   ``p_s = sum_c w_c sigmoid(base[s, e] + slopes[s, e] . x_c)``, ``w_c = n_c / n``;
2. a Beta(a, b) is moment-matched to the ``p_s`` (mean ``m``, variance ``v``:
   ``a + b = m (1 - m) / v - 1``), the prior of the conjugate update;
3. the posterior Beta(a + S, b + F) is sampled, one value per draw (seeded),
   and the sorted values are given to the draws in the order of their ``p_s``
   (a rank-preserving coupling: a draw that was optimistic about the edge stays
   so, and the draws' joint structure across edges is kept);
4. each draw's ``base[s, e]`` is shifted by the ``d_s`` that makes its average
   probability the new value ``q_s`` (``sum_c w_c sigmoid(base + d_s + slopes . x_c)
   = q_s``, solved by Newton's method); its ``slopes`` are untouched, so the
   context structure the fit learnt is kept.

Edges without outcomes since the fit keep their draws. The result is a new
:class:`~policy.snapshot.PolicySnapshot` (the given version and creation time)
with ``diagnostics["source"] = "conjugate"``; it is deterministic for a seed
(derived from the new version unless given).

Always update the *fitted* snapshot with everything counted since its fit
(:meth:`policy.reward_counts.FlowCounts.since`), never an updated one with the
counts since the previous update: that would count the outcomes twice.
The update treats the outcomes since the fit as Binomial with the edge's
average probability over the new traffic: an approximation that is good while
the new counts are a small share of what the fit saw, which is what the refit
schedule keeps true.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from policy.features import cell_from_key, features
from policy.reward_counts import FlowCounts
from policy.snapshot import PointPosterior, PolicySnapshot

FloatArray = npt.NDArray[np.float64]

MAX_CONCENTRATION = 1e7  # a + b of the moment-matched Beta, at most
MIN_CONCENTRATION = 1e-3
NEWTON_STEPS = 50
NEWTON_TOLERANCE = 1e-12


@dataclass(frozen=True, slots=True)
class EdgeCounts:
    """The outcomes of one (point, edge) since the fit, by cell."""

    x: FloatArray  # (cells, F) features of the cells with trials
    trials: FloatArray  # (cells,)
    successes: int

    @property
    def total(self) -> int:
        return int(self.trials.sum())


def update_seed(version: str) -> int:
    return int.from_bytes(hashlib.sha256(f"conjugate/{version}".encode()).digest()[:8], "big")


def _sigmoid(z: FloatArray) -> FloatArray:
    out: FloatArray = 0.5 * (1.0 + np.tanh(0.5 * z))
    return out


def _logit(p: FloatArray) -> FloatArray:
    p = np.clip(p, 1e-12, 1.0 - 1e-12)
    out: FloatArray = np.log(p) - np.log1p(-p)
    return out


def edge_counts(
    since: FlowCounts,
) -> dict[tuple[str, str, str], EdgeCounts]:
    """The outcomes in ``since`` per (node id, button id, edge); tallies without
    trials or in a cell that does not parse are skipped."""
    rows: dict[tuple[str, str, str], list[tuple[str, int, int]]] = {}
    for key, tally in since.tallies.items():
        if tally.trials <= 0:
            continue
        rows.setdefault((key.node_id, key.button_id, key.edge), []).append(
            (key.cell, tally.trials, min(max(tally.successes, 0), tally.trials))
        )
    result = {}
    for edge, cells in rows.items():
        xs, ns, ys = [], [], 0
        for cell, n, y in sorted(cells):
            try:
                xs.append(features(cell_from_key(cell)))
            except ValueError:
                continue
            ns.append(float(n))
            ys += y
        if ns:
            result[edge] = EdgeCounts(np.array(xs), np.array(ns), ys)
    return result


def beta_moments(p: FloatArray) -> tuple[float, float]:
    """(a, b) of the Beta with the mean and variance of the values ``p`` (in (0, 1))."""
    m = float(np.clip(p.mean(), 1e-9, 1.0 - 1e-9))
    v = float(p.var(ddof=1)) if len(p) > 1 else 0.0
    bound = m * (1.0 - m)
    concentration = bound / v - 1.0 if v > 0.0 else MAX_CONCENTRATION
    concentration = min(max(concentration, MIN_CONCENTRATION), MAX_CONCENTRATION)
    return m * concentration, (1.0 - m) * concentration


def _shift(
    eta: FloatArray, weights: FloatArray, target: FloatArray, start: FloatArray
) -> FloatArray:
    """Per row ``s`` of ``eta`` (draws, cells), the ``d`` with
    ``sum_c weights_c sigmoid(eta[s, c] + d) = target[s]`` (Newton, from ``start``)."""
    d = start.copy()
    for _ in range(NEWTON_STEPS):
        p = _sigmoid(eta + d[:, None])
        value = p @ weights - target
        slope = (p * (1.0 - p)) @ weights
        step = np.clip(value / np.maximum(slope, 1e-300), -2.0, 2.0)
        d -= step
        if np.max(np.abs(value)) < NEWTON_TOLERANCE:
            break
    return d


def update_point(
    posterior: PointPosterior,
    outcomes: Mapping[str, EdgeCounts],
    rng: np.random.Generator,
) -> tuple[PointPosterior, dict[str, Any]]:
    """The point's posterior updated with the outcomes of its edges (by edge id)."""
    base = posterior.base.astype(np.float64)
    slopes = posterior.slopes.astype(np.float64)
    report: dict[str, Any] = {}
    for e, edge in enumerate(posterior.candidates):
        counts = outcomes.get(edge)
        if counts is None or counts.total == 0:
            continue
        weights = counts.trials / counts.trials.sum()
        eta = base[:, e, None] + slopes[:, e, :] @ counts.x.T  # (draws, cells)
        p = _sigmoid(eta) @ weights
        a, b = beta_moments(p)
        failures = counts.total - counts.successes
        fresh = np.sort(rng.beta(a + counts.successes, b + failures, size=len(p)))
        q = np.empty_like(p)
        q[np.argsort(p, kind="stable")] = fresh
        q = np.clip(q, 1e-9, 1.0 - 1e-9)
        shift = _shift(eta, weights, q, _logit(q) - _logit(p))
        base[:, e] += shift
        report[edge] = {
            "trials": counts.total,
            "successes": counts.successes,
            "prior_mean": round(a / (a + b), 6),
            "prior_concentration": round(a + b, 3),
            "posterior_mean": round((a + counts.successes) / (a + b + counts.total), 6),
        }
    if not report:
        return posterior, report
    updated = PointPosterior(
        node_id=posterior.node_id,
        button_id=posterior.button_id,
        candidates=posterior.candidates,
        base=base.astype(np.float32),
        slopes=posterior.slopes,
    )
    return updated, report


def update_snapshot(
    snapshot: PolicySnapshot,
    since: FlowCounts,
    version: str,
    created_at: float,
    *,
    seed: int | None = None,
) -> PolicySnapshot:
    """``snapshot`` (as fitted) updated with ``since`` (the outcomes counted since
    its fit), as a new snapshot ``version`` created at ``created_at``."""
    rng = np.random.default_rng(update_seed(version) if seed is None else seed)
    by_edge = edge_counts(since)
    points: dict[tuple[str, str], PointPosterior] = {}
    edges: dict[str, Any] = {}
    for key in sorted(snapshot.points):
        posterior = snapshot.points[key]
        outcomes = {
            edge: by_edge[(key[0], key[1], edge)]
            for edge in posterior.candidates
            if (key[0], key[1], edge) in by_edge
        }
        points[key], report = update_point(posterior, outcomes, rng)
        for edge, entry in report.items():
            edges[f"{key[0]}/{key[1]}/{edge}"] = entry
    # keep the snapshot's order of points (the codec writes them in this order)
    ordered = {key: points[key] for key in snapshot.points}
    fitted = snapshot.diagnostics.get("fit_version", snapshot.version)
    diagnostics = dict(snapshot.diagnostics)
    diagnostics.update(
        {
            "source": "conjugate",
            "fit_version": fitted,
            "since_trials": sum(e["trials"] for e in edges.values()),
            "since_successes": sum(e["successes"] for e in edges.values()),
            "updated_edges": edges,
        }
    )
    return PolicySnapshot(
        flow_id=snapshot.flow_id,
        flow_version=snapshot.flow_version,
        version=version,
        created_at=created_at,
        points=ordered,
        guardrails=snapshot.guardrails,
        diagnostics=diagnostics,
        feature_names=snapshot.feature_names,
    )
