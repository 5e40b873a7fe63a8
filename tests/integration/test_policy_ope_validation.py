"""Off-policy estimates against the simulator's known truth (a smaller run of
``python -m policy.evaluation.validate``): 40 independent logs of 2,000
conversations each, decided by the real ThompsonPolicy on a snapshot with the
5% exploration floor; two candidates (another snapshot, uniform).

Guards the issue's requirement: the true value lies within the estimate's 95%
interval in at least 90% of the runs, for IPS, SNIPS and DR; and the check can
fail: IPS fed the wrong propensities (1/k) misses the truth in most runs."""

from __future__ import annotations

import pytest

from policy.evaluation.validate import BROKEN, Validation, ValidationConfig, run


@pytest.fixture(scope="module")
def validation() -> Validation:
    return run(
        ValidationConfig(
            runs=40,
            conversations=2_000,
            truth_visitors=10_000,
            loggers=("thompson",),
            candidates=("snapshot", "uniform"),
        )
    )


@pytest.mark.parametrize("candidate", ["snapshot", "uniform"])
@pytest.mark.parametrize("estimator", ["ips", "snips", "dr"])
def test_95_percent_intervals_hold_the_true_value_in_90_percent_of_runs(
    validation: Validation, candidate: str, estimator: str
) -> None:
    cell = validation.cell("thompson", candidate, estimator)
    assert cell.runs == 40
    assert cell.coverage >= 0.9, cell
    assert abs(cell.bias) < 0.01, cell  # unbiased: well within a run's interval half-width
    assert cell.difference_coverage >= 0.85, cell


def test_an_estimator_that_ignores_the_logged_propensities_fails_the_check(
    validation: Validation,
) -> None:
    cell = validation.cell("thompson", "snapshot", BROKEN)
    assert cell.coverage < 0.5, cell


@pytest.mark.parametrize("holdout", [0.0, 0.2])
def test_90_percent_intervals_hold_the_truth_in_85_percent_of_20_seeds_with_a_holdout(
    holdout: float,
) -> None:
    """The issue's target: with holdout 0 and 0.2 (of the logging snapshot and the
    candidate snapshot), 90% intervals cover the true value in at least 85% of 20
    seeds for uniform, the default edge and a candidate snapshot. Regression: with
    a holdout, the product of the logged (marginal) propensities overweighted the
    held-out conversations' default paths (0% coverage)."""
    v = run(
        ValidationConfig(
            runs=20,
            conversations=3_000,
            truth_visitors=10_000,
            level=0.9,
            loggers=("thompson",),
            holdout=holdout,
        )
    )
    for candidate in ("snapshot", "uniform", "default"):
        for estimator in ("ips", "snips", "dr"):
            cell = v.cell("thompson", candidate, estimator)
            assert cell.runs == 20
            assert cell.coverage >= 0.85, cell
