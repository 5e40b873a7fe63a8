"""Smoke version of the edge-selection simulation (docs/policy-simulation.md).

3,000 conversations of the solar-quote population with its edge effects
tripled (a large, known effect), real PyMC fits with few draws: Thompson
sampling on the fitted snapshots must take the oracle's edge far more often
than chance and earn clearly more (true expected) leads than uniform random.
A control run whose fits are all refused stays uniform, and the same checks
reject it: the assertions can fail.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from policy.reward_counts import FlowCounts
from policy.sim.config import FitOutcome, SimConfig
from policy.sim.population import Population
from policy.sim.report import markdown_table
from policy.sim.runner import SimResult, simulate
from policy.sim.solar import load_flow, solar_quote

SCALE = 3.0
CONFIG = SimConfig(
    conversations=3_000,
    seed=11,
    edge_scale=SCALE,
    first_fit=400,
    refit_every=1_000,
    update_every=100,
    draws=150,
    tune=150,
    chains=2,
    max_rhat=1.1,  # tiny fits: only a sampler that went wrong is refused
    min_ess=20.0,
    max_divergences=1_000,
)


@pytest.fixture(scope="module")
def population() -> Population:
    return solar_quote(load_flow(), edge_scale=SCALE)


def learned(result: SimResult) -> Mapping[str, Any]:
    """What the assertions look at: after the first fit, the Thompson arm vs uniform."""
    ts, uniform = result.arms["thompson"], result.arms["uniform"]
    return {
        "lift": ts.expected / uniform.expected - 1.0,
        "oracle_edges": ts.oracle_agreement / ts.decisions,
        "fits": [f.installed for f in result.fits],
    }


def passes(outcome: Mapping[str, Any]) -> bool:
    return bool(outcome["lift"] >= 0.12 and outcome["oracle_edges"] >= 0.62)


def test_thompson_on_real_fits_beats_uniform(population: Population) -> None:
    result = simulate(population, CONFIG)
    outcome = learned(result)
    print(markdown_table(result), outcome)
    # tiny fits (2 chains of 150 draws): one may miss the r-hat bar by chance; then the
    # learner's posterior must have been published in its place, as in production
    assert len(result.fits) == 3 and sum(outcome["fits"]) >= 2, result.fits
    assert all(f.installed or f.fallback == "online" for f in result.fits), result.fits
    uniform = result.arms["uniform"]
    assert 0.45 <= uniform.oracle_agreement / uniform.decisions <= 0.55
    oracle = result.arms["oracle"]
    assert all(oracle.expected >= arm.expected for arm in result.arms.values())
    assert passes(outcome), outcome
    assert result.arms["thompson"].leads > uniform.leads


def test_the_check_rejects_a_policy_that_learns_nothing(population: Population) -> None:
    def refuse(counts: FlowCounts, *, version: str, seed: int) -> FitOutcome:
        return FitOutcome(None, {}, "refused by the test")

    result = simulate(population, CONFIG, fitter=refuse, use_conjugate=False)
    outcome = learned(result)
    assert outcome["fits"] == [False, False, False]
    assert not passes(outcome), outcome
    first = result.arms["thompson"]
    again = simulate(population, CONFIG, fitter=refuse, use_conjugate=False).arms["thompson"]
    assert (again.leads, again.decisions) == (first.leads, first.decisions)  # seeded
