"""The simple arms every simulation runs beside the production policy. Pure.

Each is a small policy-like object: ``choose(point) -> edge`` on the same
:class:`~services.policy_port.DecisionPoint` the production policy gets, and
``learn(decisions, lead)`` with the decisions of one finished conversation and
whether it ended in a lead (every decision of a conversation is credited with
its outcome, as the reward ledger does). Randomness is seeded by the arm's seed,
the conversation id and the command seq: the same point gives the same choice
for the same counts.

* :class:`DefaultEdge`: the decision point's first candidate (what a holdout or
  the kill switch does);
* :class:`BetaBernoulli`: Thompson sampling with an independent Beta(1, 1)
  prior per (key, candidate), the key being the decision point and the visitor's
  context cell (:func:`cell_key`, 192 cells) or the decision point and every
  answer given so far (:func:`answers_key`);
* :class:`Oracle`: the edges of the visitor's best path, told by the runner
  (it knows the true probabilities).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Hashable, Mapping, Sequence

from policy.features import cell_of
from policy.sim.conversations import PointKey
from services.policy_port import DecisionPoint

Key = Callable[[DecisionPoint], Hashable]
Decisions = Sequence[tuple[DecisionPoint, str]]


def cell_key(point: DecisionPoint) -> Hashable:
    """The decision point and the visitor's context cell at the decision (as production
    classifies it)."""
    return (point.node_id, point.button_id, cell_of(point.context, point.at).key)


def answers_key(point: DecisionPoint) -> Hashable:
    """The decision point and the answers given so far, in order (its own included)."""
    return (point.node_id, point.button_id, point.answers)


class DefaultEdge:
    name = "default"

    def choose(self, point: DecisionPoint) -> str:
        return point.candidates[0]

    def learn(self, decisions: Decisions, lead: bool) -> None:
        return None


class BetaBernoulli:
    """Thompson sampling on independent Beta-Bernoulli arms per ``key(point)``."""

    def __init__(self, name: str, key: Key, seed: int = 0) -> None:
        self.name = name
        self.key = key
        self.seed = seed
        self.counts: dict[tuple[Hashable, str], list[int]] = {}  # -> [leads, no leads]

    def posterior(self, point: DecisionPoint, edge: str) -> tuple[int, int]:
        """Beta(alpha, beta) of ``edge`` at this point's key."""
        leads, misses = self.counts.get((self.key(point), edge), (0, 0))
        return 1 + leads, 1 + misses

    def choose(self, point: DecisionPoint) -> str:
        rnd = random.Random(f"{self.name}/{self.seed}/{point.conversation_id}/{point.command_seq}")
        draws = [rnd.betavariate(*self.posterior(point, edge)) for edge in point.candidates]
        return point.candidates[max(range(len(draws)), key=draws.__getitem__)]

    def learn(self, decisions: Decisions, lead: bool) -> None:
        for point, edge in decisions:
            tally = self.counts.setdefault((self.key(point), edge), [0, 0])
            tally[0 if lead else 1] += 1

    def keys(self) -> int:
        return len({key for key, _ in self.counts})


class Oracle:
    """Takes the edges of the plan set for the current visitor (:meth:`plan`)."""

    name = "oracle"

    def __init__(self) -> None:
        self._plan: Mapping[PointKey, str] = {}

    def plan(self, edges: Mapping[PointKey, str]) -> None:
        self._plan = edges

    def choose(self, point: DecisionPoint) -> str:
        return self._plan[(point.node_id, point.button_id)]

    def learn(self, decisions: Decisions, lead: bool) -> None:
        return None
