"""What the production learner's estimates cost (``python -m bench.policy.sim_bounds
estimation``; docs/policy-simulation.md, *How far the targets are*).

In a stationary world (no change, no hidden type: the true best edge at a point
depends on the visitor's context alone), the production learner runs alone
(every fit refused) for some conversations, then is frozen and played on fresh
visitors beside the oracle:

* ``published``: the snapshot it published last (Thompson draws at production's spread);
* ``mean``: the same posterior with no spread (greedy on its mean);
* ``truth``: the world's true edge effects at each point, knowing the truth but
  not the visitor's later answers;

all three under the exploration floor. The gap between ``mean`` and ``truth`` is
what the learner's estimates cost; per point, the share of decisions that took
another edge than the truth's (the floor's own share included) and the true
logit those decisions lost.
"""

from __future__ import annotations

import dataclasses
import random
import time

from bench.policy.sim_hooks import simulate_without_fits
from policy.online import OnlineLearner
from policy.sim.config import SimConfig
from policy.sim.conversations import Chooser, Visitor
from policy.sim.population import Population
from policy.sim.solar import load_flow
from policy.sim.worlds import world
from policy.snapshot import Guardrails, PolicySnapshot
from policy.thompson import ThompsonPolicy
from services.policy_port import DecisionPoint


def mean_snapshot(learner: OnlineLearner, rails: Guardrails) -> PolicySnapshot:
    """The learner's snapshot with every draw at its posterior mean (no spread)."""
    models = [m for m in (learner, learner.additive) if m is not None]
    configs = [m.config for m in models]
    for model in models:
        model.config = dataclasses.replace(model.config, draw_scale=0.0)
    try:
        return learner.snapshot("estimation#mean", time.time(), rails)
    finally:
        for model, config in zip(models, configs, strict=True):
            model.config = config


@dataclasses.dataclass
class Played:
    """One frozen policy's play on the fresh visitors."""

    expected: float = 0.0  # true lead probabilities, summed
    by_point: dict[tuple[str, str], list[float]] = dataclasses.field(default_factory=dict)

    def note(self, key: tuple[str, str], wrong: bool, lost: float) -> None:
        """One decision: whether it took another edge than the truth's, and the
        true logit that cost."""
        tally = self.by_point.setdefault(key, [0, 0, 0.0])
        tally[0] += 1
        tally[1] += wrong
        tally[2] += lost


STATIONARY = ("baseline", "interactions", "sparse")
"""Worlds whose true best edge depends on the context alone (no change, no type)."""


def estimation_shares(
    name: str, conversations: int, visitors: int, floor: float = 0.05
) -> tuple[float, dict[str, Played]]:
    """The learner alone for ``conversations`` in world ``name``, then frozen: the
    oracle's expected leads and each frozen policy's play (see the module's docstring)."""
    population = world(name).build(load_flow(), conversations)
    config = SimConfig(conversations=conversations, min_exploration=floor)
    _, arm = simulate_without_fits(population, config, name)
    assert arm.learner is not None, "the learner saw no outcome"
    rails = Guardrails(min_exploration=floor)
    mean = ThompsonPolicy()
    mean.install(mean_snapshot(arm.learner, rails))
    rnd = random.Random(f"estimation/{name}")

    def truth(point: DecisionPoint, visitor: Visitor) -> str:
        if rnd.random() < len(point.candidates) * floor:
            return rnd.choice(point.candidates)
        key = (point.node_id, point.button_id)
        return population.best_edge(key, point.candidates, visitor.cell)

    players = {
        "published": lambda point, _: arm.policy.choose(point).chosen,
        "mean": lambda point, _: mean.choose(point).chosen,
        "truth": truth,
    }
    played = {label: Played() for label in players}
    oracle = 0.0
    for visitor in population.visitors(visitors, seed=99):
        oracle += population.best_path(visitor)[1]
        for label, choose in players.items():
            play(population, visitor, choose, played[label])
    return oracle, played


def play(population: Population, visitor: Visitor, choose: Chooser, record: Played) -> None:
    """Walk ``visitor``'s conversation with ``choose``, noting each decision against
    the world's true best edge at its point."""

    def noted(point: DecisionPoint, v: Visitor) -> str:
        edge = choose(point, v)
        key = (point.node_id, point.button_id)
        best = population.best_edge(key, point.candidates, v.cell)
        lost = population.edge_logit(key, best, v.cell) - population.edge_logit(key, edge, v.cell)
        record.note(key, edge != best, lost)
        return edge

    conversation = population.walk(visitor, noted)
    record.expected += population.lead_probability(visitor, conversation)


def print_estimation(name: str, conversations: int, visitors: int) -> None:
    oracle, played_by = estimation_shares(name, conversations, visitors)
    print(f"{name}, the learner alone after {conversations:,} conversations, then frozen:")
    for label, played in played_by.items():
        print(f"  {label}: {played.expected / oracle:.1%} of the oracle")
        for key, (n, wrong, lost) in sorted(played.by_point.items()):
            n = int(n)
            print(
                f"    {key[0]}.{key[1]}: {n:,} decisions, {wrong / n:.0%} on another edge"
                f" than the truth's, {lost / n:.3f} of true logit lost per decision"
            )
