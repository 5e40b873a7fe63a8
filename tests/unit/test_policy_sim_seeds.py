"""The simulator's metrics over seeds (policy/sim/seeds.py): each seed's row, the
mean with its Student-t interval, the recovery counted as seeds back or never."""

from __future__ import annotations

import math
from typing import Any

import pytest

from policy.sim.seeds import interval, markdown, seed_row, summarise

T_975_3 = 3.182446305284263  # the 97.5% quantile of Student's t with 3 degrees of freedom


def metrics(share: float, margin: float, recovery: int | None, flip: int | None) -> dict[str, Any]:
    """The shape policy.sim.report.metrics returns."""
    return {
        "summary": {
            "production_share_of_oracle": share,
            "best_simple_baseline": "cell_bb",
            "production_minus_best_simple_points": margin,
            "first_half_share_of_oracle": {"thompson": share - 0.02},
            "second_half_share_of_oracle": {"thompson": share + 0.02},
        },
        "versus_uniform": {"expected": {"points": margin / 10}, "leads": {"points": margin / 5}},
        "recovery": {"flip_at": flip, "conversations": {"thompson": recovery}},
    }


def test_a_seed_row_takes_the_production_arm_s_numbers_in_percent() -> None:
    row = seed_row(9, metrics(0.881, 3.5, 2_900, 10_000))
    assert row["seed"] == 9
    assert row["share"] == pytest.approx(88.1)
    assert row["first_half"] == pytest.approx(86.1)
    assert row["second_half"] == pytest.approx(90.1)
    assert row["margin"] == 3.5
    assert row["versus_uniform_expected"] == pytest.approx(0.35)
    assert row["versus_uniform_leads"] == pytest.approx(0.7)
    assert row["recovery"] == 2_900
    assert seed_row(9, metrics(0.881, 3.5, None, None))["recovery"] is None


def test_the_interval_of_the_mean_is_student_s_t_over_the_seeds() -> None:
    out = interval([1.0, 2.0, 3.0, 4.0])
    sd = math.sqrt(5.0 / 3.0)
    assert out["n"] == 4
    assert out["mean"] == 2.5
    assert out["sd"] == pytest.approx(sd)
    half = T_975_3 * sd / 2.0
    assert out["ci95"] == pytest.approx([2.5 - half, 2.5 + half])
    # wider than a normal interval would be with four seeds
    assert half > 1.96 * sd / 2.0


def test_one_seed_has_a_mean_but_no_interval() -> None:
    assert interval([88.0]) == {"n": 1, "mean": 88.0, "sd": None, "ci95": None}


def test_the_recovery_counts_the_seeds_that_never_got_back() -> None:
    rows = [
        seed_row(s, metrics(0.88, 1.0, r, 10_000)) for s, r in ((7, 3_000), (8, None), (9, 5_000))
    ]
    out = summarise(rows, changes=True)
    assert out["recovery"] == {"recovered": 2, "never": 1, "mean": 4_000.0, "max": 5_000}
    assert out["share"]["mean"] == pytest.approx(88.0)
    assert out["best_simple_baseline"] == ["cell_bb"] * 3
    assert "recovery" not in summarise(rows, changes=False)


def test_the_table_has_a_row_per_seed_and_the_mean() -> None:
    rows = [seed_row(s, metrics(0.8 + s / 100, 1.0, None, None)) for s in (1, 2)]
    text = markdown("answers", rows, summarise(rows, changes=False))
    lines = [line for line in text.splitlines() if line.startswith("| ")]
    assert [line.split(" | ")[0] for line in lines] == [
        "| seed",
        "| 1",
        "| 2",
        "| mean (95% interval)",
    ]
    assert "| 81.0 |" in lines[1] and "| 82.0 |" in lines[2]
    assert "back to 90%" not in text
    assert "| never |" in markdown("drift", rows, summarise(rows, changes=True))
