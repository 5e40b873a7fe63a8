"""The simulated world of the off-policy validation (:mod:`policy.evaluation.validate`):
snapshots around the population's truth, logged runs under a logging policy, and a
candidate's true value computed exactly per visitor.

The true value is exact because, in the solar-quote population, the decision points
a visitor meets do not depend on the edges taken; :func:`true_value` checks that on a
sample before relying on it.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace

import numpy as np

from policy.features import FEATURE_NAMES, cell_from_labels, cell_index
from policy.sim.conversations import Conversation, Visitor
from policy.sim.population import Population
from policy.snapshot import Guardrails, PointPosterior, PolicySnapshot
from services.policy_port import DecisionPoint, EdgeChoice

from .candidates import Candidate
from .trajectories import Decision, Trajectory

# -- snapshots around the truth ------------------------------------------------


def snapshot_near_truth(
    population: Population,
    *,
    version: str,
    noise: float,
    seed: int,
    draws: int = 100,
    min_exploration: float = 0.05,
    holdout: float = 0.0,
) -> PolicySnapshot:
    """A snapshot whose draws scatter (sd 0.3 per draw) around the true edge
    effects plus one systematic error per term (sd ``noise``): a stand-in for a
    fit, built without PyMC."""
    rng = np.random.default_rng(seed)
    flow = population.flow
    scale = population.edge_scale
    points: dict[tuple[str, str], PointPosterior] = {}
    f = len(FEATURE_NAMES)
    for key in flow.decision_points():
        button = flow.node(key[0]).button(key[1])
        assert button is not None
        candidates = button.next
        k = len(candidates)
        true_base = np.zeros(k)
        true_slopes = np.zeros((k, f))
        for e, edge in enumerate(candidates):
            effect = population.edge_effects[key].get(edge)
            if effect is not None:
                true_base[e] = effect.base * scale
                for name, w in effect.slopes.items():
                    true_slopes[e, FEATURE_NAMES.index(name)] = w * scale
        base = true_base + rng.normal(0.0, noise, size=k) + rng.normal(0.0, 0.3, size=(draws, k))
        slopes = (
            true_slopes
            + rng.normal(0.0, noise, size=(k, f))
            + rng.normal(0.0, 0.3, size=(draws, k, f))
        )
        points[key] = PointPosterior(
            key[0], key[1], candidates, (base - 1.2).astype(np.float32), slopes.astype(np.float32)
        )
    return PolicySnapshot(
        flow_id=flow.id,
        flow_version=flow.version,
        version=version,
        created_at=1.0,
        points=points,
        guardrails=Guardrails(min_exploration=min_exploration, holdout=holdout),
    )


# -- logging ---------------------------------------------------------------------


Chooser = Callable[[DecisionPoint], EdgeChoice]


def logged_run(
    population: Population, choose: Chooser, conversations: int, seed: int
) -> list[Trajectory]:
    """``conversations`` visitors' conversations under ``choose``, as the log holds them."""
    flow = population.flow
    out = []
    for visitor in population.visitors(conversations, seed):
        decisions: list[Decision] = []

        def chooser(point: DecisionPoint, _: Visitor, decisions: list[Decision] = decisions) -> str:
            choice = choose(point)
            cell = (
                cell_index_of_labels(choice.features)
                if choice.features
                else cell_index(point.context, point.at)
            )
            decisions.append(
                Decision(
                    point.node_id,
                    point.button_id,
                    point.candidates,
                    point.candidates.index(choice.chosen),
                    choice.propensity,
                    cell,
                    choice.policy_version,
                    answers=point.answers,
                )
            )
            return choice.chosen

        conversation = population.walk(visitor, chooser)
        lead = visitor.draw < population.lead_probability(visitor, conversation)
        out.append(
            Trajectory(
                visitor.conversation_id,
                flow.id,
                flow.version,
                visitor.started_at,
                tuple(decisions),
                1.0 if lead else 0.0,
            )
        )
    return out


_CELLS_BY_LABELS: dict[tuple[str, ...], int] = {}


def cell_index_of_labels(labels: tuple[str, ...]) -> int:
    cached = _CELLS_BY_LABELS.get(labels)
    if cached is None:
        from policy.features import CELLS

        cached = CELLS.index(cell_from_labels(labels))
        _CELLS_BY_LABELS[labels] = cached
    return cached


# -- the truth ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Met:
    visitor: Visitor
    conversation: Conversation  # under the default edges
    points: tuple[DecisionPoint, ...]


def visitors_met(population: Population, visitors: Iterator[Visitor]) -> list[Met]:
    out = []
    for visitor in visitors:
        points: list[DecisionPoint] = []

        def default(point: DecisionPoint, _: Visitor, points: list[DecisionPoint] = points) -> str:
            points.append(point)
            return point.candidates[0]

        out.append(Met(visitor, population.walk(visitor, default), tuple(points)))
    return out


def check_points_do_not_depend_on_edges(population: Population, met: Sequence[Met]) -> None:
    """The exact truth below assumes it; check it on ``met`` with the last edges."""
    for m in met:
        last = population.walk(m.visitor, lambda p, _: p.candidates[-1])
        if [d[0] for d in last.decisions] != [(p.node_id, p.button_id) for p in m.points]:
            raise AssertionError(f"decision points depend on the edges for {m.visitor}")
        shortcut = Conversation(m.conversation.answered, last.decisions, last.end_node)
        exact = population.lead_probability(m.visitor, last)
        if not math.isclose(population.lead_probability(m.visitor, shortcut), exact):
            raise AssertionError(f"the answers after an edge change P(lead) for {m.visitor}")


def true_value(
    population: Population, candidate: Candidate, met: Sequence[Met]
) -> tuple[float, float]:
    """The candidate's expected lead rate over ``met`` visitors, and its standard error."""
    values = np.empty(len(met))
    for i, m in enumerate(met):
        trajectory = Trajectory(
            m.visitor.conversation_id, population.flow.id, population.flow.version, 0.0, (), 0.0
        )
        options = []
        for p in m.points:
            decision = Decision(
                p.node_id,
                p.button_id,
                p.candidates,
                0,
                1.0,
                cell_index(p.context, p.at),
                "",
                answers=p.answers,
            )
            probs = candidate.probabilities(trajectory, decision)
            options.append([(e, pr) for e, pr in zip(p.candidates, probs, strict=True) if pr > 0])
        total = 0.0
        for combo in itertools.product(*options):
            weight = math.prod(pr for _, pr in combo)
            decisions = tuple(
                ((p.node_id, p.button_id), e) for p, (e, _) in zip(m.points, combo, strict=True)
            )
            conversation = Conversation(m.conversation.answered, decisions, m.conversation.end_node)
            total += weight * population.lead_probability(m.visitor, conversation)
        values[i] = total
    return float(values.mean()), float(values.std(ddof=1) / math.sqrt(len(values)))


# -- the broken estimator (the check must be able to fail) --------------------------------


def ignoring_propensities(trajectories: Sequence[Trajectory]) -> list[Trajectory]:
    """The log as if every decision had been uniform: what an estimator that
    ignores the logged propensities assumes."""
    return [
        replace(
            t,
            decisions=tuple(replace(d, propensity=1.0 / len(d.candidates)) for d in t.decisions),
        )
        for t in trajectories
    ]


# -- the experiment --------------------------------------------------------------------------
