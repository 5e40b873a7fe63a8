"""Optimisation that ends in a decision: which edge is best, what choosing it
costs, when to stop exploring, and the lift over the holdout. Pure (numpy).

Per decision point, from a snapshot's ``n`` joint posterior draws:

* the **traffic-weighted conversion** of each candidate ``e`` in draw ``s``,
  ``p[s, e] = sum_c w_c * sigmoid(base[s, e] + slopes[s, e] @ x_c)``, where the
  weights ``w_c`` are the shares of the point's counted outcomes per context
  cell in the reward ledger (:func:`traffic_mix`: the traffic the point really
  gets; the baseline cell alone when nothing was counted yet). A promotion is one
  edge for every visitor, so it is judged on the whole mix, not per cell. At a
  point whose posterior knows earlier answers, the answer slopes are left out
  (visitors who gave none of the answers the point knows);
* ``P(best)_e``: the share of draws in which ``e`` has the highest ``p[s, .]``
  (a tie shares the draw equally among the tied edges, so a posterior that says
  nothing, such as a uniform snapshot, gives every edge ``1/k``);
* the **expected loss** of choosing ``e``: ``mean_s(max_e' p[s, e'] - p[s, e])``,
  in lead-rate units (0.002 = 0.2 percentage points of leads among the point's
  conversations).

The **stopping rule** (:class:`StoppingRule`) recommends promoting the winner
(the highest ``P(best)``, ties to the lower expected loss) when ``P(best) >=
p_best`` (0.95) and its expected loss ``<= max_loss`` (0.002); otherwise it
says which condition failed.

The **lift over the holdout** (:func:`holdout_lift`) compares the lead rates of
the point's outcomes in the holdout (which always takes the default edge) and
outside it: independent ``Beta(1 + leads, 1 + outcomes - leads)`` posteriors,
``rest - holdout`` sampled with a fixed seed (the same tallies always give the
same numbers), its mean, central credible interval and ``P(lift > 0)``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from policy.features import cell_from_key, features
from policy.reward_counts import FlowCounts
from policy.snapshot import PointPosterior, PolicySnapshot

DEFAULT_P_BEST = 0.95
DEFAULT_MAX_LOSS = 0.002
DEFAULT_LEVEL = 0.9
LIFT_DRAWS = 20_000
LIFT_SEED = 20_160_404

Floats = npt.NDArray[np.float64]


def traffic_mix(counts: FlowCounts | None, point: tuple[str, str]) -> dict[str, float]:
    """Share of the point's counted outcomes per context cell (``{}`` when none)."""
    if counts is None:
        return {}
    trials: dict[str, int] = {}
    for key, tally in counts.tallies.items():
        if (key.node_id, key.button_id) == point:
            trials[key.cell] = trials.get(key.cell, 0) + tally.trials
    total = sum(trials.values())
    return {cell: n / total for cell, n in sorted(trials.items())} if total else {}


def point_tally(counts: FlowCounts | None, point: tuple[str, str]) -> tuple[int, int]:
    """(outcomes, leads) counted at the point, every edge and cell together."""
    trials = successes = 0
    if counts is not None:
        for key, tally in counts.tallies.items():
            if (key.node_id, key.button_id) == point:
                trials += tally.trials
                successes += tally.successes
    return trials, successes


def mixed_conversion(posterior: PointPosterior, mix: Mapping[str, float]) -> Floats:
    """``p[s, e]``: each draw's conversion of each candidate over the traffic mix
    (the baseline cell when ``mix`` is empty), shape (draws, k)."""
    if mix:
        xs = np.stack([features(cell_from_key(c)) for c in mix]).astype(np.float64)
        weights = np.array(list(mix.values()), dtype=np.float64)
        weights = weights / weights.sum()
    else:
        xs = np.zeros((1, posterior.slopes.shape[2]))
        weights = np.ones(1)
    logits = posterior.base.astype(np.float64)[:, :, None] + (
        posterior.slopes.astype(np.float64) @ xs.T
    )  # (draws, k, cells)
    out: Floats = (1.0 / (1.0 + np.exp(-logits))) @ weights
    return out


def best_and_loss(conversion: Floats) -> tuple[Floats, Floats]:
    """(P(best), expected loss) per candidate from draws ``conversion`` (draws, k)."""
    p = np.asarray(conversion, dtype=np.float64)
    top = p.max(axis=1, keepdims=True)
    winners = p == top  # ties share the draw
    p_best: Floats = (winners / winners.sum(axis=1, keepdims=True)).mean(axis=0)
    loss: Floats = (top - p).mean(axis=0)
    return p_best, loss


@dataclass(frozen=True, slots=True)
class StoppingRule:
    """Promote the winner once ``P(best) >= p_best`` and its expected loss is at
    most ``max_loss`` (lead-rate units)."""

    p_best: float = DEFAULT_P_BEST
    max_loss: float = DEFAULT_MAX_LOSS

    def __post_init__(self) -> None:
        if not 0.0 < self.p_best <= 1.0:
            raise ValueError("p_best must be within (0, 1]")
        if not 0.0 <= self.max_loss <= 1.0:
            raise ValueError("max_loss must be within [0, 1]")

    def verdict(self, p_best: float, loss: float) -> tuple[bool, str]:
        """(promote?, why) for the winner's P(best) and expected loss."""
        reasons = []
        if p_best < self.p_best:
            reasons.append(f"P(best) {p_best:.3f} < {self.p_best:g}")
        if loss > self.max_loss:
            reasons.append(f"expected loss {loss:.4f} > {self.max_loss:g}")
        if reasons:
            return False, "keep exploring: " + " and ".join(reasons)
        return True, (
            f"promote: P(best) {p_best:.3f} >= {self.p_best:g}"
            f" and expected loss {loss:.4f} <= {self.max_loss:g}"
        )


@dataclass(frozen=True, slots=True)
class Lift:
    """The rest's lead rate minus the holdout's at a point (posterior mean, central
    interval at ``level``, probability it is positive) and the tallies behind it."""

    holdout: tuple[int, int]  # (outcomes, leads)
    rest: tuple[int, int]
    mean: float
    interval: tuple[float, float]
    level: float
    p_positive: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "holdout": {"outcomes": self.holdout[0], "leads": self.holdout[1]},
            "rest": {"outcomes": self.rest[0], "leads": self.rest[1]},
            "lift": round(self.mean, 6),
            "interval": [round(self.interval[0], 6), round(self.interval[1], 6)],
            "level": self.level,
            "p_positive": round(self.p_positive, 4),
        }


def holdout_lift(
    holdout: tuple[int, int],
    rest: tuple[int, int],
    level: float = DEFAULT_LEVEL,
    draws: int = LIFT_DRAWS,
    seed: int = LIFT_SEED,
) -> Lift | None:
    """The lift of the rest over the holdout from (outcomes, leads) tallies, with
    uniform Beta(1, 1) priors; None when either side has no outcome."""
    if holdout[0] <= 0 or rest[0] <= 0:
        return None
    rng = np.random.default_rng(seed)
    h = rng.beta(1 + holdout[1], 1 + holdout[0] - holdout[1], draws)
    r = rng.beta(1 + rest[1], 1 + rest[0] - rest[1], draws)
    diff = r - h
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(diff, [tail, 1.0 - tail])
    return Lift(
        holdout=holdout,
        rest=rest,
        mean=float(diff.mean()),
        interval=(float(low), float(high)),
        level=level,
        p_positive=float((diff > 0).mean()),
    )


@dataclass(frozen=True, slots=True)
class EdgeValue:
    edge: str
    default: bool
    conversion: float  # posterior mean of the traffic-weighted conversion
    p_best: float
    expected_loss: float


@dataclass(frozen=True, slots=True)
class PointRecommendation:
    """One decision point: each edge's value, the winner, the stopping rule's verdict
    (``promote``, ``reason``), the edge promoted now (if any) and the lift."""

    node_id: str
    button_id: str
    edges: tuple[EdgeValue, ...]
    winner: str
    promote: bool
    reason: str
    contexts: int
    promoted: str | None = None
    lift: Lift | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "node_id": self.node_id,
            "button_id": self.button_id,
            "contexts": self.contexts,
            "edges": [
                {
                    "edge": e.edge,
                    "default": e.default,
                    "conversion": round(e.conversion, 6),
                    "p_best": round(e.p_best, 4),
                    "expected_loss": round(e.expected_loss, 6),
                }
                for e in self.edges
            ],
            "winner": self.winner,
            "promote": self.promote,
            "reason": self.reason,
            "promoted": self.promoted,
            "lift": self.lift.to_dict() if self.lift is not None else None,
        }


def recommend_point(
    posterior: PointPosterior,
    mix: Mapping[str, float],
    rule: StoppingRule,
    promoted: str | None = None,
    lift: Lift | None = None,
) -> PointRecommendation:
    """The point's table and the stopping rule's verdict. A point already promoted
    to the winner is not recommended again (``promote`` False, the reason says so)."""
    conversion = mixed_conversion(posterior, mix)
    p_best, loss = best_and_loss(conversion)
    means = conversion.mean(axis=0)
    edges = tuple(
        EdgeValue(e, i == 0, float(means[i]), float(p_best[i]), float(loss[i]))
        for i, e in enumerate(posterior.candidates)
    )
    best = min(range(len(edges)), key=lambda i: (-edges[i].p_best, edges[i].expected_loss, i))
    winner = edges[best]
    promote, reason = rule.verdict(winner.p_best, winner.expected_loss)
    if promote and promoted == winner.edge:
        promote, reason = False, f"already promoted ({reason.removeprefix('promote: ')})"
    return PointRecommendation(
        node_id=posterior.node_id,
        button_id=posterior.button_id,
        edges=edges,
        winner=winner.edge,
        promote=promote,
        reason=reason,
        contexts=len(mix),
        promoted=promoted,
        lift=lift,
    )


@dataclass(frozen=True, slots=True)
class FlowRecommendation:
    flow_id: str
    flow_version: int
    policy_version: str
    rule: StoppingRule
    holdout: float
    points: Sequence[PointRecommendation] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        return {
            "flow_id": self.flow_id,
            "flow_version": self.flow_version,
            "policy_version": self.policy_version,
            "rule": {"p_best": self.rule.p_best, "max_loss": self.rule.max_loss},
            "holdout": self.holdout,
            "decision_points": [p.to_dict() for p in self.points],
        }


def render(rec: FlowRecommendation) -> str:
    """The per-point table and each point's verdict, for a terminal."""
    lines = [
        f"flow {rec.flow_id} version {rec.flow_version}, snapshot {rec.policy_version}",
        f"stopping rule: P(best) >= {rec.rule.p_best:g} and expected loss"
        f" <= {rec.rule.max_loss:g}; holdout {rec.holdout:g}",
    ]
    for point in rec.points:
        promoted = f", promoted: {point.promoted}" if point.promoted else ""
        lines.append("")
        lines.append(f"{point.node_id}/{point.button_id} ({point.contexts} contexts{promoted})")
        lines.append(f"  {'edge':<24} {'conversion':>10} {'P(best)':>8} {'exp. loss':>10}")
        for e in point.edges:
            name = e.edge + (" (default)" if e.default else "")
            lines.append(
                f"  {name:<24} {e.conversion:>10.4f} {e.p_best:>8.3f} {e.expected_loss:>10.5f}"
            )
        lines.append(f"  winner {point.winner}: {point.reason}")
        lift = point.lift
        if lift is None:
            lines.append("  lift over the holdout: no outcomes in the holdout or outside it")
        else:
            lines.append(
                f"  lift over the holdout: {lift.mean:+.4f}"
                f" ({lift.level:.0%} interval {lift.interval[0]:+.4f} to {lift.interval[1]:+.4f},"
                f" P(>0) {lift.p_positive:.3f}; holdout {lift.holdout[1]}/{lift.holdout[0]},"
                f" rest {lift.rest[1]}/{lift.rest[0]})"
            )
    return "\n".join(lines)


def recommend_flow(
    snapshot: PolicySnapshot,
    counts: FlowCounts | None,
    rule: StoppingRule,
    holdout_counts: FlowCounts | None = None,
    rest_counts: FlowCounts | None = None,
) -> FlowRecommendation:
    """Every decision point of the snapshot: ``counts`` (the ledger's, for the
    traffic mix) and the holdout's and the rest's counts (for the lift)."""
    promoted = snapshot.guardrails.promoted_edges()
    points = []
    for key, posterior in sorted(snapshot.points.items()):
        lift = holdout_lift(point_tally(holdout_counts, key), point_tally(rest_counts, key))
        points.append(
            recommend_point(posterior, traffic_mix(counts, key), rule, promoted.get(key), lift)
        )
    return FlowRecommendation(
        flow_id=snapshot.flow_id,
        flow_version=snapshot.flow_version,
        policy_version=snapshot.version,
        rule=rule,
        holdout=snapshot.guardrails.holdout,
        points=tuple(points),
    )
