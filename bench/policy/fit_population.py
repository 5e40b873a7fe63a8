"""The synthetic population ``python -m bench.policy.fit`` fits on, and its counts.

The fit benchmark (bench/policy/fit.py, whose docstring describes the population
in full) needs sufficient statistics with a known truth, so that it can say how
well a fit recovers the true edge ranking, and counts worth 10k or 1M
conversations that are built in milliseconds rather than by simulating a million
conversations. This module holds both:

* ``load_flow`` and ``flow_points``: the decision points and candidate edges of
  an example flow (``examples/flows``);
* ``Truth`` and ``make_truth``: the population drawn from a seed, per point a
  reach, an intercept, edge effects with a best edge ahead by at least
  ``MIN_GAP`` on the logit scale, and context slopes; ``traffic_mix`` gives
  every context cell's share of the traffic (``MIX``, in ``policy.features``
  order);
* ``make_counts``: the ``FlowCounts`` (trials and successes per point, edge and
  cell) worth a number of conversations, drawn directly from the truth, so that
  their size depends on the cells seen and not on the conversations.

The same flow, seed and number of conversations give the same counts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from policy.features import CELLS, DEVICES, FEATURE_NAMES, HOURS, LANGUAGES, SOURCES, features
from policy.reward_counts import FlowCounts, OutcomeKey, Tally
from schemas.flow import Flow
from services.catalog import EXAMPLE_FLOWS_DIR, FlowCatalog

MIN_GAP = 0.1  # the true best edge beats the second by at least this much (logit)

FloatArray = npt.NDArray[np.float64]
PointKey = tuple[str, str]

# traffic mix per factor, in policy.features order (DEVICES, SOURCES, HOURS, LANGUAGES)
MIX = {
    "device": (0.34, 0.56, 0.07, 0.03),
    "source": (0.22, 0.30, 0.22, 0.14, 0.07, 0.05),
    "hour": (0.05, 0.28, 0.32, 0.35),
    "language": (0.9, 0.1),
}


@dataclass(frozen=True, slots=True)
class Truth:
    """The population: per point, reach, intercept, edge effects and slopes."""

    points: tuple[PointKey, ...]
    candidates: tuple[tuple[str, ...], ...]
    reach: FloatArray  # (P,) share of conversations that reach each point
    intercept: FloatArray  # (P,)
    edge: tuple[FloatArray, ...]  # per point, (k,)
    slopes: tuple[FloatArray, ...]  # per point, (k, F): shared + edge-specific
    mix: FloatArray  # (cells,) traffic share of every cell in CELLS order
    cell_x: FloatArray  # (cells, F)

    def probabilities(self, p: int) -> FloatArray:
        """(k, cells): the lead probability of each edge in each cell."""
        eta = self.intercept[p] + self.edge[p][:, None] + self.slopes[p] @ self.cell_x.T
        out: FloatArray = 1.0 / (1.0 + np.exp(-eta))
        return out

    def average(self, p: int) -> FloatArray:
        """(k,): each edge's lead probability over the traffic mix."""
        out: FloatArray = self.probabilities(p) @ self.mix
        return out


def flow_points(flow: Flow) -> list[tuple[PointKey, tuple[str, ...]]]:
    result = []
    for node_id, button_id in flow.decision_points():
        button = flow.node(node_id).button(button_id)
        assert button is not None
        result.append(((node_id, button_id), tuple(button.next)))
    return result


def traffic_mix() -> FloatArray:
    factors = [
        np.array(MIX["device"]),
        np.array(MIX["source"]),
        np.array(MIX["hour"]),
        np.array(MIX["language"]),
    ]
    assert [len(f) for f in factors] == [len(DEVICES), len(SOURCES), len(HOURS), len(LANGUAGES)]
    joint = np.einsum("a,b,c,d->abcd", *factors).ravel()  # CELLS order: device slowest
    out: FloatArray = joint / joint.sum()
    return out


def make_truth(flow: Flow, seed: int) -> Truth:
    rng = np.random.default_rng(seed)
    listed = flow_points(flow)
    f = len(FEATURE_NAMES)
    shared = rng.normal(0.0, 0.3, f)
    edges, slopes = [], []
    for _, candidates in listed:
        k = len(candidates)
        while True:
            effect = rng.normal(0.0, 0.3, k)
            top = np.sort(effect)[::-1]
            if top[0] - top[1] >= MIN_GAP:
                break
        edges.append(effect - effect.mean())
        slopes.append(shared[None, :] + rng.normal(0.0, 0.15, (k, f)))
    return Truth(
        points=tuple(key for key, _ in listed),
        candidates=tuple(c for _, c in listed),
        reach=rng.uniform(0.25, 0.8, len(listed)),
        intercept=rng.normal(-1.4, 0.25, len(listed)),
        edge=tuple(edges),
        slopes=tuple(slopes),
        mix=traffic_mix(),
        cell_x=np.array([features(c) for c in CELLS]),
    )


def make_counts(truth: Truth, conversations: int, seed: int) -> FlowCounts:
    """Counts worth ``conversations`` conversations: each reaches point p with
    probability ``reach[p]`` and takes one of its candidates uniformly."""
    rng = np.random.default_rng(seed)
    counts = FlowCounts(conversations=conversations)
    keys = [c.key for c in CELLS]
    for p, (key, candidates) in enumerate(zip(truth.points, truth.candidates, strict=True)):
        counts.candidates[key] = candidates
        reached = rng.binomial(conversations, truth.reach[p])
        per_cell = rng.multinomial(reached, truth.mix)
        k = len(candidates)
        per_edge = np.stack([rng.multinomial(n, np.full(k, 1.0 / k)) for n in per_cell], axis=1)
        successes = rng.binomial(per_edge, truth.probabilities(p))
        for e, edge in enumerate(candidates):
            for c in np.flatnonzero(per_edge[e]):
                counts.tallies[OutcomeKey(key[0], key[1], edge, keys[c])] = Tally(
                    int(per_edge[e, c]), int(successes[e, c])
                )
    return counts


def load_flow(flow_id: str) -> Flow:
    flow = FlowCatalog.from_directory(EXAMPLE_FLOWS_DIR).latest(flow_id)
    if flow is None:
        raise SystemExit(f"no example flow {flow_id!r} in {EXAMPLE_FLOWS_DIR}")
    return flow
