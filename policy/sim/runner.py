"""The simulation loop: six arms, one stream of visitors, outcomes at conversation end.

Every arm plays every visitor (the same context, the same answers and the same
uniform draw deciding the lead: common random numbers, so the differences
between arms are the differences between their edges, not luck):

* ``thompson``: the real :class:`~policy.thompson.ThompsonPolicy` (uniform until
  its first snapshot) on snapshots from the real :func:`policy.model.fit_flow`,
  refitted on the counts so far at conversation ``first_fit`` and then every
  ``refit_every`` conversations; between fits (``between_fits``), as the policy
  service's :class:`~policy.fitting.FitScheduler` does:

  - ``online`` (production's default, ``LEADFLOW_POLICY_ONLINE``): the online
    learner (:class:`~policy.online.OnlineLearner`) learns from every
    conversation's final outcomes, each decision with the visitor's cell and the
    answers it saw (``DecisionPoint.answers``, the press at the point last), and
    its posterior is published every ``update_every`` conversations; each
    installed fit re-seeds it (:meth:`~policy.online.OnlineLearner.from_snapshot`,
    tempered to the forgetting horizon); a fit refused by its checks goes
    through :func:`policy.fit_verdict.verdict_from_diagnostics`, which may
    publish the online posterior instead;
  - ``conjugate``: the conjugate update of the fit with the counts since it
    (:func:`policy.fitting.conjugate_update`) every ``update_every`` conversations;
  - ``none``: the fits alone;
* ``uniform``: the real :class:`~policy.uniform.UniformPolicy`;
* ``default``: always the decision point's first candidate (the flow's default edge);
* ``cell_bb`` and ``answers_bb``: Beta-Bernoulli Thompson sampling per (decision
  point, context cell) and per (decision point, answers so far)
  (:mod:`policy.sim.baselines`), learning after every conversation;
* ``oracle``: the edges of the visitor's path with the largest true lead
  probability (:meth:`~policy.sim.population.Population.best_path`).

Outcomes are known when a conversation ends (no reward delay): the Thompson
arm's counts get one outcome per decision taken, keyed like the reward
ledger's, by (decision point, edge, context cell the decision logged).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from policy.features import Cell
from policy.sim.arms import Arm, ArmStats, SimpleArm, ThompsonArm, UniformArm
from policy.sim.baselines import BetaBernoulli, DefaultEdge, Oracle, answers_key, cell_key
from policy.sim.config import FitRecord, Fitter, SimConfig, Updater, conjugate_updater, model_fitter
from policy.sim.conversations import PointKey
from policy.sim.population import Population

ARMS = ("thompson", "uniform", "default", "cell_bb", "answers_bb", "oracle")
SIMPLE = ("uniform", "default", "cell_bb", "answers_bb")  # the simple baselines


@dataclass
class SimResult:
    config: SimConfig
    arms: dict[str, ArmStats]
    fits: list[FitRecord]
    conjugate_updates: int  # publications between fits (conjugate or online)
    conjugate_seconds: float
    series_at: list[int]
    seconds: float
    fit_seconds: float
    best_edges: dict[str, dict[str, int]]  # point -> oracle edge -> visitors
    mix: dict[str, dict[str, int]]  # factor -> level -> visitors (cells at the start)
    decisions_met: dict[int, int]  # decision points met (on the oracle's path) -> visitors
    world: str = "baseline"
    flip_at: int | None = None  # the visitor from whom the world changed, if it did
    keys: dict[str, int] = field(default_factory=dict)  # Beta-Bernoulli arm -> keys it saw
    learn_seconds: float = 0.0  # the online learner's observe, in total
    changes: list[tuple[int, int]] = field(default_factory=list)  # the learner's detections
    pair_points: list[str] = field(default_factory=list)  # points publishing pairs at the end


def point_name(key: PointKey) -> str:
    return f"{key[0]}.{key[1]}"


def points_publishing_pairs(thompson: ThompsonArm) -> list[str]:
    """The points whose installed snapshot (the last published) has pair slopes."""
    return [
        point_name(key)
        for snapshot in thompson.policy.installed()
        for key, posterior in sorted(snapshot.points.items())
        if posterior.pairs
    ]


def make_arms(
    population: Population,
    config: SimConfig,
    fitter: Fitter,
    updater: Updater | None,
    log: Callable[[str], None],
) -> tuple[ThompsonArm, list[Arm]]:
    thompson = ThompsonArm(population, config, fitter, updater, log, config.online_config())
    arms: list[Arm] = [
        thompson,
        UniformArm(),
        SimpleArm(DefaultEdge()),
        SimpleArm(BetaBernoulli("cell_bb", cell_key, config.seed)),
        SimpleArm(BetaBernoulli("answers_bb", answers_key, config.seed)),
        SimpleArm(Oracle()),
    ]
    assert tuple(a.name for a in arms) == ARMS
    return thompson, arms


def simulate(
    population: Population,
    config: SimConfig,
    fitter: Fitter | None = None,
    updater: Updater | None = None,
    *,
    use_conjugate: bool = True,
    world: str = "baseline",
    log: Callable[[str], None] = lambda _: None,
) -> SimResult:
    """Run every arm over ``config.conversations`` visitors in arrival order.
    ``use_conjugate=False``: nothing between fits, whatever ``config.between_fits``
    says (the fits alone)."""
    started = time.perf_counter()
    if not use_conjugate:
        config = dataclasses.replace(config, between_fits="none")
    if fitter is None:
        fitter = model_fitter(population, config)
    if updater is None and config.between_fits == "conjugate":
        updater = conjugate_updater()
    between = config.between_fits
    if between == "conjugate" and updater is None:
        between = "none"
    elif between == "online":
        between = f"online (half-life {config.half_life:g} conversations)"
    log(f"world {world}: between fits {between}, every {config.update_every} conversations")
    thompson, arms = make_arms(population, config, fitter, updater, log)
    stats = {arm.name: ArmStats() for arm in arms}
    series_at: list[int] = []
    best_edges: dict[str, dict[str, int]] = {}
    mix: dict[str, dict[str, int]] = {name: {} for name in Cell._fields}
    decisions_met: dict[int, int] = {}
    for visitor in population.visitors(config.conversations, config.seed):
        for name, level in zip(Cell._fields, visitor.cell, strict=True):
            mix[name][level] = mix[name].get(level, 0) + 1
        plan, _ = population.best_path(visitor)
        decisions_met[len(plan)] = decisions_met.get(len(plan), 0) + 1
        for key, edge in plan.items():
            per_point = best_edges.setdefault(point_name(key), {})
            per_point[edge] = per_point.get(edge, 0) + 1
        for arm in arms:
            arm.begin(visitor, plan)
            conversation = population.walk(visitor, arm.choose)
            p = population.lead_probability(visitor, conversation)
            lead = visitor.draw < p
            arm.observe(visitor, conversation, lead)
            s = stats[arm.name]
            s.leads += lead
            s.expected += p
            s.p.append(p)
            s.lead.append(lead)
            for key, edge in conversation.decisions:
                s.decisions += 1
                best = plan.get(key)
                if best is None:
                    continue  # a point off the oracle's path: no edge to agree with
                agreed = int(edge == best)
                s.oracle_agreement += agreed
                tally = s.by_point.setdefault(point_name(key), [0, 0])
                tally[0] += 1
                tally[1] += agreed
        done = visitor.index + 1
        for arm in arms:
            arm.after(done)
        if done % config.series_every == 0 or done == config.conversations:
            series_at.append(done)
            for s in stats.values():
                s.leads_series.append(s.leads)
                s.expected_series.append(s.expected)
        if done % 10_000 == 0:
            log(f"{done} conversations, {time.perf_counter() - started:.0f} s")
    keys = {
        arm.name: arm.policy.keys()
        for arm in arms
        if isinstance(arm, SimpleArm) and isinstance(arm.policy, BetaBernoulli)
    }
    return SimResult(
        config=config,
        arms=stats,
        fits=thompson.fits,
        conjugate_updates=thompson.updates,
        conjugate_seconds=thompson.update_seconds,
        series_at=series_at,
        seconds=time.perf_counter() - started,
        fit_seconds=sum(f.seconds for f in thompson.fits),
        best_edges=best_edges,
        mix=mix,
        decisions_met=dict(sorted(decisions_met.items())),
        world=world,
        flip_at=population.flip_at,
        keys=keys,
        learn_seconds=thompson.learn_seconds,
        changes=thompson.changes,
        pair_points=points_publishing_pairs(thompson),
    )
