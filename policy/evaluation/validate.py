"""Off-policy estimates against the simulator's known truth: coverage, bias, RMSE.

``python -m policy.evaluation.validate`` (``--help`` for the options) runs, for
``runs`` independent visitor streams of the synthetic solar-quote population
(:mod:`policy.sim.population`, known lead probabilities per context and edge):

1. ``conversations`` conversations under each *logging* policy: the real
   :class:`~policy.thompson.ThompsonPolicy` on a snapshot whose draws are
   sampled around a deliberately wrong guess of the truth (5% exploration
   floor, as in production), and the real :class:`~policy.uniform.UniformPolicy`;
   each decision as logged (propensity, cell), a lead drawn from its true
   probability;
2. every *candidate* (a snapshot close to the truth, uniform, the default
   edge) estimated on each log with IPS, SNIPS and DR
   (:func:`policy.evaluation.estimators.evaluate`);
3. the candidate's **true value**: the mean over ``truth_visitors`` other
   visitors of each one's exact expected lead probability under the candidate
   (every combination of the edges at the decision points the visitor meets,
   weighted by the candidate's probabilities). In this population the
   decision points a visitor meets do not depend on the edges taken (checked
   on a sample), so this is exact per visitor; the only error left is the
   visitor sample's (its standard error is reported, far below the intervals').

It reports, per logging policy, candidate and estimator, the share of runs whose
interval holds the true value (target: at least 90% for 95% intervals), the
bias, the RMSE and the mean interval width, and the same for a deliberately
broken estimator (IPS that takes every logged propensity to be ``1/k``) to
show that the check can fail. Results: ``bench/results/policy_ope.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import itertools
import math
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from policy.features import FEATURE_NAMES, cell_from_labels, cell_index
from policy.port import DecisionPoint, EdgeChoice
from policy.sim.population import Conversation, Population, Visitor, load_flow, solar_quote
from policy.snapshot import Guardrails, PointPosterior, PolicySnapshot
from policy.thompson import ThompsonPolicy
from policy.uniform import UniformPolicy

from .candidates import Candidate, FixedCandidate, SnapshotCandidate, UniformCandidate
from .estimators import ESTIMATORS, Evaluation, summarize, terms
from .trajectories import Decision, Trajectory

RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results"
BROKEN = "ips-ignoring-propensities"


@dataclass(frozen=True, slots=True)
class ValidationConfig:
    runs: int = 200
    conversations: int = 4_000
    seed: int = 1
    level: float = 0.95
    truth_visitors: int = 50_000
    min_exploration: float = 0.05
    logging_noise: float = 0.6  # systematic error of the logging snapshot's guess (logit sd)
    candidate_noise: float = 0.15  # ... and of the candidate snapshot's
    draws: int = 100
    loggers: tuple[str, ...] = ("thompson", "uniform")
    candidates: tuple[str, ...] = ("snapshot", "uniform", "default")


# -- snapshots around the truth ------------------------------------------------


def snapshot_near_truth(
    population: Population,
    *,
    version: str,
    noise: float,
    seed: int,
    draws: int = 100,
    min_exploration: float = 0.05,
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
        guardrails=Guardrails(min_exploration=min_exploration),
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
class _Met:
    visitor: Visitor
    conversation: Conversation  # under the default edges
    points: tuple[DecisionPoint, ...]


def _met(population: Population, visitors: Iterator[Visitor]) -> list[_Met]:
    out = []
    for visitor in visitors:
        points: list[DecisionPoint] = []

        def default(point: DecisionPoint, _: Visitor, points: list[DecisionPoint] = points) -> str:
            points.append(point)
            return point.candidates[0]

        out.append(_Met(visitor, population.walk(visitor, default), tuple(points)))
    return out


def _check_points_do_not_depend_on_edges(population: Population, met: Sequence[_Met]) -> None:
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
    population: Population, candidate: Candidate, met: Sequence[_Met]
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
                p.node_id, p.button_id, p.candidates, 0, 1.0, cell_index(p.context, p.at), ""
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


@dataclass(frozen=True, slots=True)
class Cell:
    """One (logging policy, candidate, estimator) over all runs."""

    logging: str
    candidate: str
    estimator: str
    truth: float
    truth_se: float
    runs: int
    coverage: float
    bias: float
    rmse: float
    mean_width: float
    mean_ess: float
    difference_truth: float
    difference_coverage: float
    coverage_plain: float  # with the plain empirical standard errors
    mean_width_plain: float
    difference_coverage_plain: float


def _summary(
    logging: str,
    candidate: str,
    estimator: str,
    truth: tuple[float, float],
    logging_truth: float,
    evaluations: Sequence[tuple[Evaluation, Evaluation]],
) -> Cell:
    name = "ips" if estimator == BROKEN else estimator
    est = [e.estimate(name) for e, _ in evaluations]
    plain = [p.estimate(name) for _, p in evaluations]
    values = np.array([e.value for e in est])
    covered = np.array([e.low <= truth[0] <= e.high for e in est])
    diff_truth = truth[0] - logging_truth
    diff_covered = np.array([e.difference_low <= diff_truth <= e.difference_high for e in est])
    plain_covered = np.array([e.low <= truth[0] <= e.high for e in plain])
    plain_diff = np.array([e.difference_low <= diff_truth <= e.difference_high for e in plain])
    return Cell(
        logging=logging,
        candidate=candidate,
        estimator=estimator,
        truth=truth[0],
        truth_se=truth[1],
        runs=len(est),
        coverage=float(covered.mean()),
        bias=float((values - truth[0]).mean()),
        rmse=float(np.sqrt(((values - truth[0]) ** 2).mean())),
        mean_width=float(np.mean([e.high - e.low for e in est])),
        mean_ess=float(np.mean([e.ess for e, _ in evaluations])),
        difference_truth=diff_truth,
        difference_coverage=float(diff_covered.mean()),
        coverage_plain=float(plain_covered.mean()),
        mean_width_plain=float(np.mean([e.high - e.low for e in plain])),
        difference_coverage_plain=float(plain_diff.mean()),
    )


@dataclass(frozen=True, slots=True)
class Validation:
    config: ValidationConfig
    cells: tuple[Cell, ...]
    seconds: float

    def cell(self, logging: str, candidate: str, estimator: str) -> Cell:
        for c in self.cells:
            if (c.logging, c.candidate, c.estimator) == (logging, candidate, estimator):
                return c
        raise KeyError((logging, candidate, estimator))


def run(config: ValidationConfig, log: Callable[[str], None] = lambda _: None) -> Validation:
    started = time.perf_counter()
    population = solar_quote(load_flow())
    logging_snapshot = snapshot_near_truth(
        population,
        version="solar-quote@1#logging",
        noise=config.logging_noise,
        seed=config.seed,
        draws=config.draws,
        min_exploration=config.min_exploration,
    )
    candidate_snapshot = snapshot_near_truth(
        population,
        version="solar-quote@1#candidate",
        noise=config.candidate_noise,
        seed=config.seed + 1,
        draws=config.draws,
        min_exploration=config.min_exploration,
    )
    thompson = ThompsonPolicy()
    thompson.install(logging_snapshot)
    uniform = UniformPolicy()
    loggers: Mapping[str, tuple[Chooser, Candidate]] = {
        "thompson": (thompson.choose, SnapshotCandidate(logging_snapshot)),
        "uniform": (uniform.choose, UniformCandidate()),
    }
    candidates: Mapping[str, Candidate] = {
        "snapshot": SnapshotCandidate(candidate_snapshot),
        "uniform": UniformCandidate(),
        "default": FixedCandidate(),
    }
    loggers = {name: loggers[name] for name in config.loggers}
    candidates = {name: candidates[name] for name in config.candidates}
    pairs = [(lg, c) for lg in loggers for c in candidates if (lg, c) != ("uniform", "uniform")]

    met = _met(population, population.visitors(config.truth_visitors, seed=10**6 + config.seed))
    _check_points_do_not_depend_on_edges(population, met[:500])
    truths = {name: true_value(population, c, met) for name, c in candidates.items()}
    logging_truth = {name: true_value(population, c, met)[0] for name, (_, c) in loggers.items()}
    log(f"true values: { {k: round(v[0], 4) for k, v in truths.items()} }")

    def both(trajectories: Sequence[Trajectory], c: str) -> tuple[Evaluation, Evaluation]:
        t = terms(trajectories, candidates[c])
        return (
            summarize(t, c, config.level, assisted=True),
            summarize(t, c, config.level, assisted=False),
        )

    evaluations: dict[tuple[str, str, str], list[tuple[Evaluation, Evaluation]]] = {}
    for r in range(config.runs):
        for lg, (choose, _) in loggers.items():
            trajectories = logged_run(population, choose, config.conversations, config.seed + r)
            broken = ignoring_propensities(trajectories) if lg == "thompson" else None
            for lg2, c in pairs:
                if lg2 != lg:
                    continue
                evaluations.setdefault((lg, c, "estimators"), []).append(both(trajectories, c))
                if broken is not None:
                    evaluations.setdefault((lg, c, BROKEN), []).append(both(broken, c))
        if (r + 1) % max(1, config.runs // 10) == 0:
            log(f"run {r + 1}/{config.runs} ({time.perf_counter() - started:.0f} s)")

    cells = []
    for (lg, c, kind), evs in evaluations.items():
        names = ESTIMATORS if kind == "estimators" else (BROKEN,)
        for name in names:
            cells.append(_summary(lg, c, name, truths[c], logging_truth[lg], evs))
    return Validation(config, tuple(cells), time.perf_counter() - started)


# -- report -------------------------------------------------------------------------------------


def _commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).parent,
        )
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def to_json(v: Validation) -> dict[str, Any]:
    return {
        "config": asdict(v.config),
        "commit": _commit(),
        "seconds": round(v.seconds, 1),
        "cells": [asdict(c) for c in v.cells],
    }


def to_markdown(v: Validation) -> str:
    c = v.config
    lines = [
        "# Off-policy evaluation against the simulator's truth",
        "",
        f"`python -m policy.evaluation.validate --runs {c.runs} --conversations"
        f" {c.conversations} --seed {c.seed}`: {c.runs} runs of {c.conversations:,}"
        f" conversations per logging policy, {c.level:.0%} intervals, true values over"
        f" {c.truth_visitors:,} other visitors; {v.seconds:.0f} s (commit {_commit()}).",
        "",
        "| logging | candidate | estimator | true value | coverage | bias | RMSE"
        " | mean width | mean ESS | difference coverage | coverage, plain SE"
        " | mean width, plain SE |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for x in v.cells:
        lines.append(
            f"| {x.logging} | {x.candidate} | {x.estimator} | {x.truth:.4f} | {x.coverage:.1%}"
            f" | {x.bias:+.4f} | {x.rmse:.4f} | {x.mean_width:.4f} | {x.mean_ess:,.0f}"
            f" | {x.difference_coverage:.1%} | {x.coverage_plain:.1%}"
            f" | {x.mean_width_plain:.4f} |"
        )
    lines += [
        "",
        "Coverage: the share of runs whose interval holds the true value (target: at least"
        " 90%). Difference coverage: the same for the interval of candidate minus logging"
        " policy. ESS: over the conversations with decisions. "
        f"`{BROKEN}` is IPS fed propensities of 1/k (a broken estimator): it must fail.",
        "",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m policy.evaluation.validate")
    d = ValidationConfig()
    parser.add_argument("--runs", type=int, default=d.runs)
    parser.add_argument("--conversations", type=int, default=d.conversations)
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--level", type=float, default=d.level)
    parser.add_argument("--truth-visitors", type=int, default=d.truth_visitors)
    parser.add_argument("--out", type=Path, default=RESULTS / "policy_ope")
    parser.add_argument("--no-write", action="store_true", help="print only")
    a = parser.parse_args(argv)
    config = ValidationConfig(
        runs=a.runs,
        conversations=a.conversations,
        seed=a.seed,
        level=a.level,
        truth_visitors=a.truth_visitors,
    )
    result = run(config, log=lambda m: print(m, flush=True))
    text = to_markdown(result)
    print(text)
    if not a.no_write:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.with_suffix(".json").write_bytes(
            orjson.dumps(to_json(result), option=orjson.OPT_INDENT_2)
        )
        a.out.with_suffix(".md").write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
