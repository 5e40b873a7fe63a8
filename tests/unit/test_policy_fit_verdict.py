"""A fit with a few divergences never leaves the policy uniform (policy/fit_verdict.py)."""

from __future__ import annotations

import math

import pytest

from policy.fit_verdict import (
    RETRY_TARGET_ACCEPT,
    FitVerdict,
    fit_verdict,
    verdict_from_diagnostics,
)

RHAT, ESS = 1.003, 900.0  # a well-mixed fit


def test_a_converged_fit_is_published() -> None:
    verdict = fit_verdict(divergences=0, transitions=4000, rhat_max=RHAT, ess_bulk_min=ESS)
    assert verdict == FitVerdict("fit", False, None, "converged")


@pytest.mark.parametrize("divergences", [1, 11, 39])
def test_under_one_percent_divergent_falls_back_to_the_online_posterior(divergences: int) -> None:
    """15 of 103 fits were refused for 1-11 divergences in 4,000 transitions, holding
    the policy near uniform: now the online posterior is published and the fit retried."""
    verdict = fit_verdict(
        divergences=divergences,
        transitions=4000,
        online_available=True,
        rhat_max=RHAT,
        ess_bulk_min=ESS,
    )
    assert verdict.publish == "online"
    assert verdict.retry
    assert verdict.target_accept == RETRY_TARGET_ACCEPT
    assert f"{divergences} of 4000" in verdict.reason


def test_under_one_percent_without_an_online_posterior_publishes_the_fit() -> None:
    verdict = fit_verdict(
        divergences=3, transitions=4000, online_available=False, rhat_max=RHAT, ess_bulk_min=ESS
    )
    assert verdict.publish == "fit"
    assert "tolerated" in verdict.reason


def test_the_last_attempt_under_one_percent_publishes_without_retrying() -> None:
    verdict = fit_verdict(
        divergences=3,
        transitions=4000,
        online_available=True,
        attempt=2,
        rhat_max=RHAT,
        ess_bulk_min=ESS,
    )
    assert (verdict.publish, verdict.retry, verdict.target_accept) == ("online", False, None)


@pytest.mark.parametrize(
    ("online", "attempt", "expected"),
    [
        (True, 1, ("online", True)),
        (False, 1, ("none", True)),
        (True, 2, ("online", False)),
        (False, 2, ("none", False)),
    ],
)
def test_one_percent_or_more_divergent_is_retried_with_the_fallback_meanwhile(
    online: bool, attempt: int, expected: tuple[str, bool]
) -> None:
    verdict = fit_verdict(
        divergences=40,
        transitions=4000,
        online_available=online,
        attempt=attempt,
        rhat_max=RHAT,
        ess_bulk_min=ESS,
    )
    assert (verdict.publish, verdict.retry) == expected
    assert "40 of 4000" in verdict.reason


@pytest.mark.parametrize(
    ("rhat", "ess", "problem"),
    [(1.05, 900.0, "r-hat"), (1.001, 120.0, "bulk ESS"), (math.nan, 900.0, "r-hat")],
)
def test_poor_mixing_is_never_published_as_a_fit(rhat: float, ess: float, problem: str) -> None:
    verdict = fit_verdict(
        divergences=1, transitions=4000, rhat_max=rhat, ess_bulk_min=ess, online_available=True
    )
    assert verdict.publish == "online"
    assert verdict.retry
    assert problem in verdict.reason


def test_no_transitions_is_not_a_small_share() -> None:
    verdict = fit_verdict(
        divergences=1, transitions=0, online_available=False, rhat_max=RHAT, ess_bulk_min=ESS
    )
    assert verdict.publish == "none"


def test_the_verdict_reads_fit_flow_diagnostics() -> None:
    diagnostics = {
        "source": "fit",
        "draws": 2000,
        "chains": 2,
        "rhat_max": 1.004,
        "ess_bulk_min": 812.0,
        "divergences": 7,
        "max_rhat": 1.01,
        "min_ess_bulk": 400.0,
    }
    verdict = verdict_from_diagnostics(diagnostics, online_available=True)
    assert verdict.publish == "online"
    assert "7 of 4000" in verdict.reason
    strict = verdict_from_diagnostics(
        {**diagnostics, "min_ess_bulk": 1000.0}, online_available=False
    )
    assert strict.publish == "none"
    unsampled = verdict_from_diagnostics({"source": "fit"}, online_available=True)
    assert (unsampled.publish, unsampled.retry) == ("online", False)
