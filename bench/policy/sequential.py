"""The answers world's best type-blind policy that decides as a policy must: with
the answers so far (``python -m bench.policy.sim_bounds sequential``;
docs/policy-simulation.md, *How far the targets are*).

``type-blind`` (:func:`bench.policy.sim_bounds.type_blind_share`) picks each
visitor's path knowing every answer the path asks, later ones included: more
than any policy knows when it decides. Here the policy knows the world's true
model (edge effects, answer shares per hidden type, the types' shares) and the
visitor's context, and at each decision point takes the edge with the largest
expected lead probability given the answers so far: the type's posterior from
them, the answers still to come drawn from it, and its own later decisions
taken the same way (backward induction over the flow, exact: the solar flow is
small). That is the Bayes-optimal policy for a visitor whose type it cannot
see; it is played on fresh visitors (their true type and answers), with and
without the exploration floor (uniform with probability ``k * floor`` at a
``k``-way point; the plan does not plan for it).
"""

from __future__ import annotations

import random
from collections.abc import Mapping

from policy.features import Cell
from policy.sim.conversations import Conversation, Visitor
from policy.sim.population import Population
from policy.sim.solar import load_flow
from policy.sim.worlds import world
from schemas.commands import VisitorContext
from schemas.flow import NodeKind
from services.conversation.state import INPUT_ANSWERED
from services.policy_port import DecisionPoint

Answered = tuple[tuple[str, str], ...]
PlanKey = tuple[Cell, str, str, Answered]  # cell, decision point, answers so far


class SequentialPlanner:
    """The plan per context cell, made on first use."""

    def __init__(self, population: Population) -> None:
        self.population = population
        self.shares = {kind: population.answer_shares_of(kind) for kind in population.kinds}
        self.plan: dict[PlanKey, str] = {}
        self._planned: set[Cell] = set()

    def edge(self, cell: Cell, point: DecisionPoint) -> str:
        if cell not in self._planned:
            self._planned.add(cell)
            prior = dict(self.population.kinds)
            self._value(cell, self.population.flow.start, (), (), (), prior)
        return self.plan[(cell, point.node_id, point.button_id, tuple(point.answers))]

    def _value(
        self,
        cell: Cell,
        node_id: str,
        answered: Answered,
        decisions: tuple[tuple[tuple[str, str], str], ...],
        at: tuple[int, ...],
        weights: Mapping[str, float],
    ) -> float:
        """Sum over types of P(type, answers so far) times the expected lead
        probability of the rest of the walk from ``node_id``, deciding optimally."""
        flow = self.population.flow
        node = flow.node(node_id)
        while node.kind in (NodeKind.MESSAGE, NodeKind.INPUT):  # as Population.walk
            if node.kind is NodeKind.INPUT:
                answered = (*answered, (node.id, INPUT_ANSWERED))
            assert node.next is not None
            node = flow.node(node.next)
        if node.kind is not NodeKind.QUESTION:
            conversation = Conversation(answered, decisions, node.id, at)
            return sum(
                w * self.population.lead_probability(_visitor(cell, kind), conversation)
                for kind, w in weights.items()
            )
        total = 0.0
        for button in node.buttons:
            given = {k: w * self.shares[k][node.id].get(button.id, 0.0) for k, w in weights.items()}
            if not any(given.values()):
                continue
            now = (*answered, (node.id, button.id))
            if not button.is_decision_point:
                total += self._value(cell, button.next[0], now, decisions, at, given)
                continue
            values = {
                target: self._value(
                    cell,
                    target,
                    now,
                    (*decisions, ((node.id, button.id), target)),
                    (*at, len(now)),
                    given,
                )
                for target in button.next
            }
            best = max(button.next, key=lambda t: values[t])  # ties: the first
            self.plan[(cell, node.id, button.id, now)] = best
            total += values[best]
        return total


def _visitor(cell: Cell, kind: str) -> Visitor:
    """What ``Population.lead_probability`` reads of a visitor: cell, type, index."""
    return Visitor(0, "", 0.0, VisitorContext(), cell, {}, 1.0, 0.0, kind)


def sequential_shares(
    visitors: int, floors: tuple[float, ...] = (0.05, 0.0), seed: int = 7
) -> dict[float, float]:
    """Per floor, the sequential type-blind policy's share of the oracle's expected
    leads over ``visitors`` fresh visitors of the answers world."""
    population = world("answers").build(load_flow(), 20_000)
    planner = SequentialPlanner(population)
    out: dict[float, float] = {}
    for floor in floors:
        rnd = random.Random(f"sequential/{floor}")
        oracle = played = 0.0
        for visitor in population.visitors(visitors, seed):
            oracle += population.best_path(visitor)[1]

            def choose(
                point: DecisionPoint, v: Visitor, floor: float = floor, rnd: random.Random = rnd
            ) -> str:
                if rnd.random() < len(point.candidates) * floor:
                    return rnd.choice(point.candidates)
                return planner.edge(v.cell, point)

            played += population.lead_probability(visitor, population.walk(visitor, choose))
        out[floor] = played / oracle
    return out
