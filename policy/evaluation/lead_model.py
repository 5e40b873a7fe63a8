"""The direct-method model of the doubly robust estimator: the lead probability
of each candidate edge at a decision point in a context cell.

Smoothed counts of the log, each level shrunk towards the next with
:data:`PRIOR_STRENGTH` pseudo-conversations (cell -> edge -> point -> overall),
and **cross-fitted**: conversations are split in folds by a hash of their id,
and each is scored by a model fitted on the other folds, so its own reward
never enters its model (:mod:`policy.evaluation.conversation_terms`).
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from .trajectories import Decision, Trajectory

PRIOR_STRENGTH = 10.0
DEFAULT_FOLDS = 5
K = TypeVar("K")

ModelKey = tuple[int, str, str]  # flow version, node id, button id


@dataclass
class _Tally:
    trials: float = 0.0
    leads: float = 0.0

    def add(self, trials: float, leads: float) -> None:
        self.trials += trials
        self.leads += leads


@dataclass
class LeadCounts:
    """Trials and leads of the logged decisions at four levels of detail."""

    overall: _Tally = field(default_factory=_Tally)
    points: dict[ModelKey, _Tally] = field(default_factory=dict)
    edges: dict[tuple[ModelKey, str], _Tally] = field(default_factory=dict)
    cells: dict[tuple[ModelKey, str, int], _Tally] = field(default_factory=dict)

    def add(self, trajectory: Trajectory, sign: float = 1.0) -> None:
        r = trajectory.reward * sign
        for d in trajectory.decisions:
            point = (trajectory.flow_version, d.node_id, d.button_id)
            edge = d.candidates[d.chosen]
            self.overall.add(sign, r)
            self.points.setdefault(point, _Tally()).add(sign, r)
            self.edges.setdefault((point, edge), _Tally()).add(sign, r)
            self.cells.setdefault((point, edge, d.cell), _Tally()).add(sign, r)

    def minus(self, other: LeadCounts) -> LeadCounts:
        return LeadCounts(
            _Tally(
                self.overall.trials - other.overall.trials,
                self.overall.leads - other.overall.leads,
            ),
            _sub(self.points, other.points),
            _sub(self.edges, other.edges),
            _sub(self.cells, other.cells),
        )


def _sub(a: Mapping[K, _Tally], b: Mapping[K, _Tally]) -> dict[K, _Tally]:
    empty = _Tally()
    return {
        key: _Tally(t.trials - b.get(key, empty).trials, t.leads - b.get(key, empty).leads)
        for key, t in a.items()
    }


def _shrunk(tally: _Tally | None, prior: float, strength: float = PRIOR_STRENGTH) -> float:
    if tally is None:
        return prior
    return (tally.leads + strength * prior) / (tally.trials + strength)


class LeadModel:
    """``q(flow_version, decision)``: the modelled lead probability of each candidate."""

    def __init__(self, counts: LeadCounts) -> None:
        self.counts = counts
        self._overall = (counts.overall.leads + 1.0) / (counts.overall.trials + 2.0)

    def q(self, flow_version: int, decision: Decision) -> tuple[float, ...]:
        c = self.counts
        point = (flow_version, decision.node_id, decision.button_id)
        p_point = _shrunk(c.points.get(point), self._overall)
        out = []
        for edge in decision.candidates:
            p_edge = _shrunk(c.edges.get((point, edge)), p_point)
            out.append(_shrunk(c.cells.get((point, edge, decision.cell)), p_edge))
        return tuple(out)


def fold_of(conversation_id: str, folds: int) -> int:
    return zlib.crc32(conversation_id.encode()) % folds


def cross_fitted_models(
    trajectories: Sequence[Trajectory], folds: int = DEFAULT_FOLDS
) -> tuple[list[LeadModel], list[int]]:
    """One model per fold, fitted on the other folds, and each trajectory's fold."""
    total = LeadCounts()
    per_fold = [LeadCounts() for _ in range(folds)]
    assignment = []
    for t in trajectories:
        f = fold_of(t.conversation_id, folds)
        assignment.append(f)
        total.add(t)
        per_fold[f].add(t)
    return [LeadModel(total.minus(part)) for part in per_fold], assignment
