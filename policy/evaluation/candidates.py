"""Candidate policies: the probability each would give every candidate edge of a
logged decision. Pure.

A candidate is asked about a *logged* decision: its decision point, its
candidates, the context cell it logged (the cell a Thompson policy would
have conditioned on there) and the visitor's answers before it
(:attr:`~policy.evaluation.trajectories.Decision.answers`, what a Thompson
policy with answer features conditions on), in its conversation. Candidates:

* :class:`SnapshotCandidate`: the :class:`~policy.thompson.ThompsonPolicy` with
  one snapshot installed, exactly as a processor would run it (win shares of the
  draws, exploration floor, kill switch; decision points the snapshot does not
  know get the uniform fallback; a point that knows answer features is asked
  with the visitor's answers, as the decider would ask it). The holdout is a
  coin per conversation (a hash of its id,
  :func:`~policy.decision_draws.holdout_share`): a held-out conversation
  takes the default edge at every decision, as it would have;
* :class:`UniformCandidate`: each candidate ``1/k`` (the policy without snapshots);
* :class:`FixedCandidate`: always the default edge (the button's first ``next``)
  or, for the decision points it names, a fixed edge.

A snapshot belongs to one flow id and version: :meth:`Candidate.covers` says
which trajectories a candidate can be evaluated on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from policy.decision_draws import holdout_share
from policy.snapshot import PolicySnapshot
from policy.thompson import ThompsonPolicy
from policy.uniform import UniformPolicy
from schemas.commands import VisitorContext
from services.policy_port import DecisionPoint

from .trajectories import Decision, Trajectory

_NO_CONTEXT = VisitorContext()


class Candidate(Protocol):
    @property
    def name(self) -> str:
        """How reports name the candidate."""
        ...

    def covers(self, trajectory: Trajectory) -> bool:
        """Whether the candidate can be evaluated on this conversation (its flow)."""
        ...

    def probabilities(self, trajectory: Trajectory, decision: Decision) -> tuple[float, ...]:
        """The probability of each of ``decision.candidates`` in that conversation."""
        ...

    def split(self, trajectory: Trajectory, decision: Decision) -> Split:
        """The candidate's holdout share and its probabilities in a held-out
        conversation and in one that is not: the estimators integrate its
        per-conversation holdout coin out (:mod:`policy.evaluation.propensities`)."""
        ...


Split = tuple[float, tuple[float, ...], tuple[float, ...]]  # holdout, held, free


def _no_holdout(probabilities: tuple[float, ...]) -> Split:
    return (0.0, probabilities, probabilities)


@dataclass(frozen=True, slots=True)
class UniformCandidate:
    name: str = "uniform"

    def covers(self, trajectory: Trajectory) -> bool:
        return True

    def probabilities(self, trajectory: Trajectory, decision: Decision) -> tuple[float, ...]:
        k = len(decision.candidates)
        return (1.0 / k,) * k

    def split(self, trajectory: Trajectory, decision: Decision) -> Split:
        return _no_holdout(self.probabilities(trajectory, decision))


@dataclass(frozen=True, slots=True)
class FixedCandidate:
    """The default edge everywhere, except the decision points in ``edges``
    ((node id, button id) -> edge), which take that edge when it is a candidate."""

    edges: Mapping[tuple[str, str], str] = field(default_factory=dict)
    name: str = "default"

    def covers(self, trajectory: Trajectory) -> bool:
        return True

    def probabilities(self, trajectory: Trajectory, decision: Decision) -> tuple[float, ...]:
        edge = self.edges.get(decision.key)
        target = decision.candidates.index(edge) if edge in decision.candidates else 0
        return tuple(1.0 if i == target else 0.0 for i in range(len(decision.candidates)))

    def split(self, trajectory: Trajectory, decision: Decision) -> Split:
        return _no_holdout(self.probabilities(trajectory, decision))


class SnapshotCandidate:
    """The Thompson policy of ``snapshot``, for its flow id and version only."""

    def __init__(self, snapshot: PolicySnapshot) -> None:
        self.snapshot = snapshot
        self.name = snapshot.version
        self._policy = ThompsonPolicy(fallback=UniformPolicy())
        self._policy.install(snapshot)

    def covers(self, trajectory: Trajectory) -> bool:
        return (trajectory.flow_id, trajectory.flow_version) == (
            self.snapshot.flow_id,
            self.snapshot.flow_version,
        )

    def probabilities(self, trajectory: Trajectory, decision: Decision) -> tuple[float, ...]:
        holdout, held, free = self.split(trajectory, decision)
        return held if holdout_share(trajectory.conversation_id) < holdout else free

    def split(self, trajectory: Trajectory, decision: Decision) -> Split:
        point = DecisionPoint(
            conversation_id=trajectory.conversation_id,
            command_seq=0,
            flow_id=trajectory.flow_id,
            flow_version=trajectory.flow_version,
            node_id=decision.node_id,
            button_id=decision.button_id,
            candidates=decision.candidates,
            context=_NO_CONTEXT,
            answers=decision.answers,
        )
        dist = self._policy.cell_distribution(point, decision.cell)
        k = len(decision.candidates)
        if dist is None:  # the policy's fallback: uniform, held out or not
            return _no_holdout((1.0 / k,) * k)
        if dist.killed or dist.holdout <= 0.0:
            return _no_holdout(dist.probabilities(in_holdout=False))
        return (
            dist.holdout,
            dist.probabilities(in_holdout=True),
            dist.probabilities(in_holdout=False),
        )
