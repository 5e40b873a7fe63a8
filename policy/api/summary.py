"""The per-flow summary ``GET /flows/{flow_id}/summary`` answers (pure: no I/O).

Per decision point, each candidate edge's conversion estimate (posterior mean)
with its central 90% credible interval, the share of traffic the policy now sends
it, and the outcomes counted for it. Estimates and shares are averaged over the
visitor contexts the flow's outcomes were counted in (its traffic mix), or taken
at the baseline context when nothing was counted.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from policy.features import cell_from_key, features
from policy.optimisation import traffic_mix
from policy.point_policy import Distribution
from policy.reward_counts import FlowCounts
from policy.snapshot import Guardrails, PointPosterior, PolicySnapshot
from policy.winners import win_shares

CREDIBLE = 0.9


def _sigmoid(x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    out: npt.NDArray[np.float64] = 1.0 / (1.0 + np.exp(-x))
    return out


def point_summary(
    posterior: PointPosterior,
    rails: Guardrails,
    mix: Mapping[str, float],
    counts: FlowCounts | None = None,
) -> dict[str, Any]:
    """Each candidate's conversion (posterior mean and central 90% interval of the
    traffic-weighted conversion probability) and its share of traffic under the
    policy (the logged propensities, averaged over the same mix)."""
    if mix:
        cells = [cell_from_key(c) for c in mix]
        weights = np.array(list(mix.values()), dtype=np.float64)
        xs = np.stack([features(c) for c in cells])  # (C, F)
    else:
        weights = np.ones(1)
        xs = np.zeros((1, posterior.slopes.shape[2]))
    base = posterior.base.astype(np.float64)
    slopes = posterior.slopes.astype(np.float64)
    logits = base[:, :, None] + slopes @ xs.T  # (draws, k, C)
    conversion = _sigmoid(logits) @ weights  # (draws, k)
    tail = (1.0 - CREDIBLE) / 2.0
    low, high = np.quantile(conversion, [tail, 1.0 - tail], axis=0)
    mean = conversion.mean(axis=0)
    k = len(posterior.candidates)
    edge = rails.promoted_edges().get(posterior.key)
    promoted = posterior.candidates.index(edge) if edge in posterior.candidates else None
    share = np.zeros(k)
    for x, w in zip(xs, weights, strict=True):
        dist = Distribution(
            thompson=tuple(float(s) for s in win_shares(posterior, x)),
            explore=min(1.0, k * rails.min_exploration),
            holdout=rails.holdout,
            killed=rails.killed,
            promoted=promoted,
        )
        share += w * np.array(dist.probabilities())
    observed: dict[str, tuple[int, int]] = {}
    if counts is not None:
        for key, tally in counts.tallies.items():
            if (key.node_id, key.button_id) == posterior.key:
                trials, successes = observed.get(key.edge, (0, 0))
                observed[key.edge] = (trials + tally.trials, successes + tally.successes)
    edges = []
    for i, edge in enumerate(posterior.candidates):
        trials, successes = observed.get(edge, (0, 0))
        edges.append(
            {
                "edge": edge,
                "default": i == 0,
                "conversion": round(float(mean[i]), 6),
                "interval": [round(float(low[i]), 6), round(float(high[i]), 6)],
                "share": round(float(share[i]), 6),
                "outcomes": trials,
                "leads": successes,
            }
        )
    return {
        "node_id": posterior.node_id,
        "button_id": posterior.button_id,
        "draws": int(posterior.base.shape[0]),
        "contexts": len(mix),
        "edges": edges,
    }


def flow_summary(snapshot: PolicySnapshot, counts: FlowCounts | None = None) -> dict[str, Any]:
    """The flow's summary: its snapshot's versions, guardrails and diagnostics, and
    each decision point's :func:`point_summary` over that point's traffic mix."""
    points = [
        point_summary(p, snapshot.guardrails, traffic_mix(counts, key), counts)
        for key, p in sorted(snapshot.points.items())
    ]
    return {
        "flow_id": snapshot.flow_id,
        "flow_version": snapshot.flow_version,
        "policy_version": snapshot.version,
        "created_at": snapshot.created_at,
        "credible_interval": CREDIBLE,
        "guardrails": snapshot.guardrails.to_dict(),
        "diagnostics": dict(snapshot.diagnostics),
        "decision_points": points,
    }
