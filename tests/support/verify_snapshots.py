"""Posterior snapshots for the example flows, built without PyMC (random draws)."""

from __future__ import annotations

import numpy as np

from policy.features import FEATURE_NAMES
from policy.flow_snapshots import decision_points
from policy.snapshot import Guardrails, PointPosterior, PolicySnapshot
from schemas.flow import Flow
from tests.support.examples import example_catalog

CATALOG = example_catalog()


def latest(flow_id: str) -> Flow:
    flow = CATALOG.latest(flow_id)
    assert flow is not None
    return flow


def snapshot(
    flow: Flow, version: str, seed: int, rails: Guardrails | None = None, created_at: float = 100.0
) -> PolicySnapshot:
    """A snapshot of ``flow``'s decision points with random posterior draws."""
    rng = np.random.default_rng(seed)
    points = {}
    for key, candidates in decision_points(flow).items():
        k, draws = len(candidates), 40
        points[key] = PointPosterior(
            node_id=key[0],
            button_id=key[1],
            candidates=candidates,
            base=rng.normal(-1.0, 1.0, size=(draws, k)).astype(np.float32),
            slopes=rng.normal(0.0, 0.5, size=(draws, k, len(FEATURE_NAMES))).astype(np.float32),
        )
    return PolicySnapshot(flow.id, flow.version, version, created_at, points, rails or Guardrails())
