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
   (:func:`policy.evaluation.summary.evaluate`);
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
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from policy.sim.solar import load_flow, solar_quote
from policy.thompson import ThompsonPolicy
from policy.uniform import UniformPolicy

from .candidates import Candidate, FixedCandidate, SnapshotCandidate, UniformCandidate
from .conversation_terms import DR_CLIP, terms
from .estimators import ESTIMATORS
from .propensities import with_holdouts
from .summary import Evaluation, summarize
from .trajectories import Trajectory
from .truth import (
    Chooser,
    check_points_do_not_depend_on_edges,
    ignoring_propensities,
    logged_run,
    snapshot_near_truth,
    true_value,
    visitors_met,
)

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
    holdout: float = 0.0  # of the Thompson logging snapshot and the candidate snapshot
    clip: float = DR_CLIP  # DR's weight clipping


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
        holdout=config.holdout,
    )
    candidate_snapshot = snapshot_near_truth(
        population,
        version="solar-quote@1#candidate",
        noise=config.candidate_noise,
        seed=config.seed + 1,
        draws=config.draws,
        min_exploration=config.min_exploration,
        holdout=config.holdout,
    )
    holdouts = {logging_snapshot.version: config.holdout}
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

    met = visitors_met(
        population, population.visitors(config.truth_visitors, seed=10**6 + config.seed)
    )
    check_points_do_not_depend_on_edges(population, met[:500])
    truths = {name: true_value(population, c, met) for name, c in candidates.items()}
    logging_truth = {name: true_value(population, c, met)[0] for name, (_, c) in loggers.items()}
    log(f"true values: { {k: round(v[0], 4) for k, v in truths.items()} }")

    def both(trajectories: Sequence[Trajectory], c: str) -> tuple[Evaluation, Evaluation]:
        t = terms(trajectories, candidates[c], clip=config.clip)
        return (
            summarize(t, c, config.level, assisted=True, clip=False),
            summarize(t, c, config.level, assisted=False, clip=False),
        )

    evaluations: dict[tuple[str, str, str], list[tuple[Evaluation, Evaluation]]] = {}
    for r in range(config.runs):
        for lg, (choose, _) in loggers.items():
            logged = logged_run(population, choose, config.conversations, config.seed + r)
            trajectories = list(with_holdouts(logged, holdouts).trajectories)
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
        f" {c.conversations} --seed {c.seed} --level {c.level} --holdout {c.holdout}`:"
        f" {c.runs} runs of {c.conversations:,}"
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
    parser.add_argument("--holdout", type=float, default=d.holdout, help="of the snapshots (0)")
    parser.add_argument("--loggers", default=",".join(d.loggers), help="thompson,uniform")
    parser.add_argument("--out", type=Path, default=RESULTS / "policy_ope")
    parser.add_argument("--no-write", action="store_true", help="print only")
    a = parser.parse_args(argv)
    config = ValidationConfig(
        runs=a.runs,
        conversations=a.conversations,
        seed=a.seed,
        level=a.level,
        truth_visitors=a.truth_visitors,
        holdout=a.holdout,
        loggers=tuple(a.loggers.split(",")),
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
