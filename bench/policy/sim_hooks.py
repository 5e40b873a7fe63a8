"""The simulator run with every fit refused (no PyMC: the online learner alone) and a
hook on its arms, for the bounds of ``python -m bench.policy.sim_bounds``."""

from __future__ import annotations

from collections.abc import Callable

from policy.sim import runner
from policy.sim.arms import Arm, ThompsonArm
from policy.sim.config import FitOutcome, SimConfig
from policy.sim.population import Population

ArmsEdit = Callable[[ThompsonArm, list[Arm]], None]


def refuse_fit(counts: object, *, version: str, seed: int) -> FitOutcome:
    """A fitter that refuses every fit."""
    return FitOutcome(None, {}, "not fitted")


def simulate_without_fits(
    population: Population,
    config: SimConfig,
    world: str,
    edit: ArmsEdit | None = None,
) -> tuple[runner.SimResult, ThompsonArm]:
    """``runner.simulate`` with every fit refused, the arms passed through ``edit``
    once made (it may replace one); the result and the production arm."""
    made: list[ThompsonArm] = []
    original = runner.make_arms

    def make(*args: object, **kwargs: object) -> tuple[ThompsonArm, list[Arm]]:
        thompson, arms = original(*args, **kwargs)  # type: ignore[arg-type]
        if edit is not None:
            edit(thompson, arms)
        made.append(thompson)
        return thompson, arms

    runner.make_arms = make
    try:
        result = runner.simulate(population, config, fitter=refuse_fit, world=world)
    finally:
        runner.make_arms = original
    (thompson,) = made
    return result, thompson
