"""What the change detector costs in the drift world (``python -m bench.policy.sim_bounds
change``; docs/policy-simulation.md, *How far the targets are*).

The production learner runs alone (every fit refused) through the drift world,
whose best edge flips everywhere at the middle visitor, three ways on the same
visitors:

* ``detector``: as production runs it (the change detector on);
* ``told``: no detector, but told when the world changes: at the flip its
  posterior is dropped and it learns again from the prior, as a detector that
  fired at the first changed visitor and kept nothing from before would;
* ``untold``: neither (the long half-life alone).

``told`` is what perfect detection gives this learner: the share of the oracle
over the run and the conversations after the flip until it is back to 90% of
the oracle are then limited by how fast the learner learns from scratch, not by
the detector.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from bench.policy.sim_hooks import ArmsEdit, simulate_without_fits
from policy.sim import report
from policy.sim.arms import Arm, ThompsonArm
from policy.sim.config import SimConfig
from policy.sim.solar import load_flow
from policy.sim.worlds import world

WAYS = ("detector", "told", "untold")


@dataclasses.dataclass(frozen=True)
class ChangeRun:
    """One way's run: its share of the oracle's expected leads, conversations after
    the flip until back to 90% of the oracle (None: never), its share per window,
    and the conversations its learner had learned from at the end."""

    way: str
    share: float
    recovery: int | None
    windows: list[int]
    learned: int


def _tell_at_flip(flip: int) -> ArmsEdit:
    """An edit that drops the production arm's learner at visitor ``flip``."""

    def edit(arm: ThompsonArm, _: list[Arm]) -> None:
        after = arm.after

        def told(done: int) -> None:
            if done == flip:
                arm._learn()  # the outcomes before the flip, then forgotten with them
                arm.learner = None
                arm.learned = 0
            after(done)

        arm.after = told  # type: ignore[method-assign]

    return edit


def change_run(way: str, conversations: int, seed: int, window: int = 1_000) -> ChangeRun:
    """The learner alone through ``conversations`` of the drift world, ``way`` (see the
    module's docstring)."""
    if way not in WAYS:
        raise ValueError(f"way must be one of {', '.join(WAYS)}")
    population = world("drift").build(load_flow(), conversations)
    config = SimConfig(conversations=conversations, seed=seed)
    if way != "detector":
        config = dataclasses.replace(config, change_half_life=0.0)
    flip = conversations // 2
    edit = _tell_at_flip(flip) if way == "told" else None
    result, arm = simulate_without_fits(population, config, "drift", edit)
    assert result.flip_at == flip, "the drift world flips at its middle visitor"
    _, shares = report.window_shares(result, "thompson", window)
    return ChangeRun(
        way=way,
        share=result.arms["thompson"].expected / result.arms["oracle"].expected,
        recovery=report.recovery(result, "thompson", window),
        windows=[round(100 * s) for s in shares],
        learned=arm.learner.conversations if arm.learner is not None else 0,
    )


def print_change(conversations: int, seeds: Sequence[int]) -> None:
    print(f"drift, the learner alone, {conversations:,} conversations (flip at the middle):")
    for seed in seeds:
        for way in WAYS:
            run = change_run(way, conversations, seed)
            back = "never" if run.recovery is None else f"{run.recovery:,}"
            print(
                f"  seed {seed}, {way}: {run.share:.1%} of the oracle, back to 90% after"
                f" {back}; per 1,000: {run.windows}"
            )
