"""How much of the oracle's leads a policy can get at all in the simulator's worlds
(issue 16's target: >= 92% of the oracle at 20,000 conversations).

The oracle (``policy.sim``) knows every visitor's lead probability on every path,
including the answers world's hidden visitor type, and never explores. Three
measurements, shares of the oracle's expected leads::

    python -m bench.policy.sim_bounds floor            # the exploration floor's cost
    python -m bench.policy.sim_bounds type-blind       # the answers world's hidden type
    python -m bench.policy.sim_bounds sequential       # ... deciding with the answers so far
    python -m bench.policy.sim_bounds structure        # a learner told the truth's structure
    python -m bench.policy.sim_bounds estimation       # what the learner's estimates cost
    python -m bench.policy.sim_bounds change           # the drift learner told the change

* ``floor``: the oracle itself with production's exploration floor
  (``min_exploration`` 0.05: with probability ``k * 0.05`` a uniformly random
  candidate at every decision), per world: what any policy under that guardrail
  can reach at best;
* ``type-blind``: in the answers world, per visitor, the path that maximises the
  lead probability averaged over the hidden type's posterior given *every*
  answer that path asks (later ones included: more than a policy knows when it
  decides), i.e. an upper bound for any policy that cannot see the type;
* ``sequential``: in the answers world, the Bayes-optimal type-blind policy that
  decides with the answers so far, knowing the true model
  (:mod:`bench.policy.sequential`), with and without the floor: a tighter bound;
* ``structure``: in the interactions world, Thompson sampling on Beta-Bernoulli
  arms keyed by exactly the context levels the truth's interaction uses at each
  point (device x source at ``property.house``, ...), from the first
  conversation (no first-fit delay), with and without the floor: a learner
  that knows which interactions matter and only has to learn their signs;
* ``estimation``: the production learner alone in a stationary world
  (``--world``, default baseline) for ``--conversations`` (10,000), frozen, and
  played on ``--visitors`` fresh visitors beside the true edge effects
  (:mod:`bench.policy.estimation`): what its estimates cost;
* ``change``: in the drift world, the production learner alone with its change
  detector, told when the world changes instead (its posterior dropped at the
  flip) and with neither, per ``--seeds`` (:mod:`bench.policy.change_told`):
  what perfect detection would give.
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import sys
from collections.abc import Hashable, Sequence

from bench.policy.change_told import print_change
from bench.policy.estimation import STATIONARY, print_estimation
from bench.policy.sequential import sequential_shares
from bench.policy.sim_hooks import simulate_without_fits
from policy.features import cell_of
from policy.sim.arms import Arm, SimpleArm, ThompsonArm
from policy.sim.baselines import BetaBernoulli
from policy.sim.config import SimConfig
from policy.sim.conversations import Conversation, Visitor
from policy.sim.population import Population, _Branch
from policy.sim.solar import load_flow
from policy.sim.worlds import world
from services.policy_port import DecisionPoint


def _paths(population: Population, visitor: Visitor) -> list[Conversation]:
    """Every path of the visitor's conversation (one per plan of the decision points met)."""
    out: list[Conversation] = []
    todo: list[dict[tuple[str, str], str]] = [{}]
    while todo:
        plan = todo.pop()

        def follow(
            point: DecisionPoint, _: Visitor, plan: dict[tuple[str, str], str] = plan
        ) -> str:
            key = (point.node_id, point.button_id)
            if key not in plan:
                raise _Branch(key, point.candidates)
            return plan[key]

        try:
            out.append(population.walk(visitor, follow))
        except _Branch as branch:
            todo.extend({**plan, branch.key: c} for c in branch.candidates)
    return out


def floor_share(name: str, visitors: int, floor: float = 0.05, seed: int = 7) -> float:
    population = world(name).build(load_flow(), 20_000)
    rnd = random.Random(1)
    oracle = floored = 0.0
    for visitor in population.visitors(visitors, seed):
        plan, p = population.best_path(visitor)
        oracle += p

        def choose(
            point: DecisionPoint, _: Visitor, plan: dict[tuple[str, str], str] = plan
        ) -> str:
            if rnd.random() < len(point.candidates) * floor:
                return rnd.choice(point.candidates)
            return plan.get((point.node_id, point.button_id), point.candidates[0])

        floored += population.lead_probability(visitor, population.walk(visitor, choose))
    return floored / oracle


def type_blind_share(visitors: int, seed: int = 7) -> float:
    population = world("answers").build(load_flow(), 20_000)
    kinds = dict(population.kinds)
    shares = population.answer_shares
    by_kind = {k: population.answer_shares_of(k) for k in kinds}
    oracle = blind = 0.0
    for visitor in population.visitors(visitors, seed):
        paths = _paths(population, visitor)
        oracle += max(population.lead_probability(visitor, c) for c in paths)
        as_kind = {k: dataclasses.replace(visitor, kind=k) for k in kinds}
        best: tuple[float, Conversation] | None = None
        for c in paths:
            weight = dict(kinds)
            for node, button in c.answered:
                if node not in shares:  # a typed answer: the same for every type
                    continue
                for k in kinds:
                    weight[k] *= by_kind[k][node][button]
            total = sum(weight.values())
            expected = sum(
                weight[k] / total * population.lead_probability(as_kind[k], c) for k in kinds
            )
            if best is None or expected > best[0]:
                best = (expected, c)
        assert best is not None
        blind += population.lead_probability(visitor, best[1])
    return blind / oracle


USES: dict[tuple[str, str], tuple[str, ...]] = {
    ("property", "house"): ("device", "source"),
    ("bill", "mid"): ("source", "hour"),
    ("bill", "high"): ("device", "source"),
    ("timeframe", "asap"): ("device", "hour"),
    ("timeframe", "researching"): ("device", "source", "language"),
}
"""The context levels the interactions world's edge effects depend on, per point."""


def _structure_key(point: DecisionPoint) -> Hashable:
    cell = cell_of(point.context, point.at)
    used = USES[(point.node_id, point.button_id)]
    return (point.node_id, point.button_id, *(getattr(cell, f) for f in used))


class _Floored(BetaBernoulli):
    def __init__(self, floor: float) -> None:
        super().__init__("answers_bb", _structure_key, 7)
        self.floor = floor

    def choose(self, point: DecisionPoint) -> str:
        rnd = random.Random(f"floor/{point.conversation_id}/{point.command_seq}")
        if rnd.random() < self.floor * len(point.candidates):
            return rnd.choice(point.candidates)
        return super().choose(point)


def structure_share(conversations: int, floor: float) -> tuple[float, list[int]]:
    """The structure-knowing learner's share (it takes the answers_bb arm's place;
    the production arm's fits are refused so that no PyMC runs), and its share per
    1,000 conversations."""

    def swap(_: ThompsonArm, arms: list[Arm]) -> None:
        arms[4] = SimpleArm(_Floored(floor))

    population = world("interactions").build(load_flow(), conversations)
    config = SimConfig(conversations=conversations, update_every=0)
    result, _ = simulate_without_fits(population, config, "interactions", swap)
    arm, oracle = result.arms["answers_bb"], result.arms["oracle"]
    windows = [
        round(100 * sum(arm.p[i : i + 1000]) / sum(oracle.p[i : i + 1000]))
        for i in range(0, conversations, 1000)
    ]
    return arm.expected / oracle.expected, windows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.policy.sim_bounds")
    parser.add_argument(
        "what",
        choices=("floor", "type-blind", "sequential", "structure", "estimation", "change"),
    )
    parser.add_argument("--visitors", type=int, default=5_000)
    parser.add_argument("--conversations", type=int, default=None)
    parser.add_argument("--world", default="baseline", choices=STATIONARY, help="for estimation")
    parser.add_argument("--seeds", type=int, nargs="+", default=[7, 8, 9, 10], help="for change")
    args = parser.parse_args(argv)
    if args.what == "change":
        print_change(args.conversations or 20_000, args.seeds)
        return 0
    if args.what == "estimation":
        print_estimation(args.world, args.conversations or 10_000, args.visitors)
        return 0
    args.conversations = args.conversations or 20_000
    if args.what == "floor":
        for name in ("interactions", "answers", "drift"):
            print(f"{name}: the oracle with the floor gets {floor_share(name, args.visitors):.1%}")
    elif args.what == "type-blind":
        print(f"answers: a type-blind policy gets at most {type_blind_share(args.visitors):.1%}")
    elif args.what == "sequential":
        for floor, share in sequential_shares(args.visitors).items():
            print(f"answers, the best type-blind policy as it decides, floor {floor}: {share:.1%}")
    else:
        for floor in (0.05, 0.0):
            share, windows = structure_share(args.conversations, floor)
            print(f"interactions, floor {floor}: {share:.1%}; per 1,000: {windows}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
