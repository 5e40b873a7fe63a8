"""What ``leadflow policy evaluate`` shows is a lead rate: every rate and interval
within [0, 1], every difference within what two rates can differ by, the point
inside its interval, and warnings that say what the table shows."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from policy.evaluation.conversation_terms import Terms
from policy.evaluation.estimators import Estimate
from policy.evaluation.report import Scope, render
from policy.evaluation.summary import Evaluation, clipped, summarize

SCOPE = Scope("quiz", (1,), 100, open=0, other_version=0, without_start=0, late_decisions=0)
ROW = re.compile(r"^(logging policy|IPS|SNIPS|DR)\s+(\S+)\s+\[(\S+), (\S+)\]")


def estimate(name: str, value: float, low: float, high: float, diff: float = 0.0) -> Estimate:
    half = (high - low) / 2
    return Estimate(name, value, half / 1.96, low, high, diff, diff - half, diff + half)


def make_terms(reward: list[float], weight: list[float], expected: list[float]) -> Terms:
    r, w = np.array(reward), np.array(weight)
    decided = w != 1.0
    return Terms(r, w, w * r, np.array(expected), decided, int(decided.sum()), 0)


def assert_within_bounds(ev: Evaluation) -> None:
    for rows in (ev.estimates, ev.decided):
        logged = rows[0].value
        for e in rows:
            if math.isnan(e.value):
                continue
            assert 0.0 <= e.low <= e.value <= e.high <= 1.0, e
            assert -1.0 <= e.difference_low <= e.difference <= e.difference_high <= 1.0, e
            if e.estimator != "logged":
                assert e.difference == pytest.approx(e.value - logged), e


def shown_rates(text: str) -> list[tuple[str, float, float, float]]:
    """(estimator, rate, low, high) of every table row, as printed (percent)."""
    rows = []
    for line in text.splitlines():
        match = ROW.match(line)
        if match and match.group(2) != "n/a":
            name, *numbers = match.groups()
            rate, low, high = (float(n.rstrip("%")) for n in numbers)
            rows.append((name, rate, low, high))
    return rows


def test_an_interval_past_100_percent_is_clipped_to_it() -> None:
    """The reported case: a rate of 100% with [90.63%, 109.37%]."""
    e = clipped(estimate("snips", 1.0, 0.9063, 1.0937, diff=0.1), logged=0.9)
    assert (e.value, e.low, e.high) == (1.0, 0.9063, 1.0)
    assert e.difference == pytest.approx(0.1)
    assert e.difference_high == pytest.approx(0.1)  # 1.0 - 0.9: the most it can be
    assert e.difference_low == pytest.approx(0.1 - 0.0937)


def test_a_point_estimate_above_1_is_shown_at_1_with_its_difference() -> None:
    e = clipped(estimate("ips", 1.25, 1.05, 1.45, diff=0.45), logged=0.8)
    assert (e.value, e.low, e.high) == (1.0, 1.0, 1.0)
    assert e.difference == pytest.approx(0.2)
    assert e.difference_low == e.difference_high == pytest.approx(0.2)


def test_a_rate_below_0_is_shown_at_0() -> None:
    e = clipped(estimate("dr", -0.05, -0.2, 0.1, diff=-0.35), logged=0.3)
    assert (e.value, e.low, e.high) == (0.0, 0.0, 0.1)
    assert e.difference == pytest.approx(-0.3)
    assert e.difference_low == pytest.approx(-0.3)  # 0 - 0.3: the least it can be
    assert e.difference_high == pytest.approx(-0.2)  # the raw bound: it was within range


def test_the_logged_rates_interval_is_clipped_and_nan_stays_nan() -> None:
    e = clipped(estimate("logged", 0.97, 0.92, 1.02), logged=0.97)
    assert (e.value, e.low, e.high) == (0.97, 0.92, 1.0)
    nan = clipped(Estimate("snips", *([math.nan] * 7)), logged=0.5)
    assert math.isnan(nan.value) and math.isnan(nan.low) and math.isnan(nan.difference_high)


def test_snips_of_conversations_without_decisions_agrees_with_the_warning() -> None:
    """The candidate never takes a logged action: among the conversations with
    decisions IPS is 0 and SNIPS undefined, as the warning says; over all
    conversations SNIPS is the rate of those without decisions (all leads here),
    within [0, 1] however wide its model-assisted interval."""
    t = make_terms(
        reward=[1.0, 1.0, 1.0, 1.0, 0.0, 1.0, 0.0, 0.0],
        weight=[1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0],
        expected=[0.7, 0.7, 0.7, 0.7, 0.5, 0.5, 0.5, 0.5],
    )
    ev = summarize(t, "default")
    assert_within_bounds(ev)
    assert ev.estimate("snips").value == 1.0
    assert ev.estimate("snips").high == 1.0
    assert ev.estimate("ips", decided=True).value == 0.0
    assert math.isnan(ev.estimate("snips", decided=True).value)
    [never] = [w for w in ev.warnings if "never takes" in w]
    assert "conversations with decisions" in never
    text = render(ev, SCOPE)
    decided_part = text.split("conversations with at least one decision:")[1]
    assert re.search(r"^SNIPS\s+n/a", decided_part, re.M)
    assert re.search(r"^IPS\s+0\.00%", decided_part, re.M)
    rows = shown_rates(text)
    assert len(rows) == 7  # both tables, SNIPS with decisions n/a
    for _, rate, low, high in rows:
        assert 0.0 <= low <= rate <= high <= 100.0


def test_an_ips_estimate_above_100_percent_is_clipped_and_warned_about() -> None:
    t = make_terms(
        reward=[1.0, 0.0, 0.0, 0.0],
        weight=[5.0, 0.5, 0.5, 0.5],
        expected=[0.5, 0.5, 0.5, 0.5],
    )
    raw = summarize(t, "heavy", clip=False)
    assert raw.estimate("ips").value == pytest.approx(1.25)  # what the estimator says
    ev = summarize(t, "heavy")
    assert_within_bounds(ev)
    assert ev.estimate("ips").value == 1.0
    [warning] = [w for w in ev.warnings if "IPS over all conversations" in w]
    assert "125.00%" in warning and "100.00%" in warning
    text = render(ev, SCOPE)
    assert f"warning: {warning}" in text
    for name, rate, low, high in shown_rates(text):
        assert 0.0 <= low <= rate <= high <= 100.0, name
    # the effective sample size of the warning is the one of the summary line
    ess = re.search(r"effective sample size (\S+) of", text)
    assert ess is not None
    assert any(w.startswith(f"effective sample size {ess.group(1)} of") for w in ev.warnings)


def test_every_reported_number_is_within_bounds() -> None:
    """Small random samples with heavy weights: whatever the estimators say, the
    summary stays within what rates and differences can be."""
    for seed in range(30):
        rng = np.random.default_rng(seed)
        n = int(rng.integers(2, 12))
        weight = rng.choice([0.0, 0.25, 1.0, 2.0, 8.0], size=n).astype(float)
        reward = (rng.random(n) < 0.6).astype(float)
        dr = weight * reward + rng.normal(0.0, 0.3, n)
        t = Terms(reward, weight, dr, rng.random(n), np.ones(n, dtype=bool), n, 0)
        ev = summarize(t, "random")
        assert_within_bounds(ev)
        for _, rate, low, high in shown_rates(render(ev, SCOPE)):
            assert 0.0 <= low <= rate <= high <= 100.0, seed
