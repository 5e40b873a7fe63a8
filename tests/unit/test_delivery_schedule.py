"""The retry schedule: full jitter, about three days, Retry-After, 410 (pure).

A wrong schedule either hammers a struggling receiver or gives up on a lead
too early; both are lost leads.
"""

from __future__ import annotations

import random
from dataclasses import replace
from email.utils import formatdate

import pytest

from services.delivery.config import Destination
from services.delivery.model import Delivery
from services.delivery.schedule import (
    DAY,
    DEFAULT_STEPS,
    Result,
    RetrySchedule,
    after_attempt,
    http_result,
    parse_retry_after,
    resent,
)
from tests.support import leads

T0 = leads.CAPTURED_AT
HOOK = Destination("demo", "crm", "webhook", url="https://x.example/", secrets=())


def fresh() -> Delivery:
    return leads.delivery(HOOK)


def test_full_jitter_stays_within_each_step() -> None:
    schedule, rng = RetrySchedule(), random.Random(7)
    for failures, ceiling in enumerate(DEFAULT_STEPS, start=1):
        waits = [schedule.wait(failures, rng) for _ in range(300)]
        assert all(schedule.min_wait <= w <= max(ceiling, schedule.min_wait) for w in waits)
        assert max(waits) > ceiling * 0.8  # spread over the whole range, not a fixed value
    assert schedule.step(50) == DEFAULT_STEPS[-1]


def test_failures_retry_until_about_three_days_then_the_delivery_is_dead() -> None:
    schedule, rng = RetrySchedule(), random.Random(1)
    delivery, now, attempts = fresh(), T0, 0
    while delivery.status == "pending":
        delivery = after_attempt(
            delivery, Result("retry", 500, "HTTP 500"), now, 1.0, schedule, rng
        )
        attempts += 1
        now = delivery.next_at if delivery.status == "pending" else now
        assert attempts < 100
    assert delivery.status == "dead" and delivery.reason == "retries_exhausted"
    assert 3 * DAY <= delivery.attempts[-1].at - T0 <= 3 * DAY + DEFAULT_STEPS[-1] + 1


def test_retry_after_is_honoured_and_capped() -> None:
    schedule, rng = RetrySchedule(), random.Random(1)
    slow = after_attempt(fresh(), Result("retry", 429, "", 3600.0), T0, 0.5, schedule, rng)
    assert slow.next_at == pytest.approx(T0 + 0.5 + 3600.0)
    huge = after_attempt(fresh(), Result("retry", 503, "", 10 * DAY), T0, 0.5, schedule, rng)
    assert huge.next_at == pytest.approx(T0 + 0.5 + schedule.max_retry_after)


def test_http_results() -> None:
    assert http_result(204, None, T0) == Result("delivered", 204)
    assert http_result(410, None, T0).outcome == "gone"
    assert http_result(429, "30", T0) == Result("retry", 429, "HTTP 429", 30.0)
    assert http_result(503, "30", T0).retry_after == 30.0
    assert http_result(500, "30", T0).retry_after is None  # only 429 and 503 say when
    assert http_result(302, None, T0).detail == "HTTP 302: redirects are not followed"


def test_retry_after_as_seconds_and_as_http_date() -> None:
    assert parse_retry_after("120", T0) == 120.0
    assert parse_retry_after(formatdate(T0 + 90, usegmt=True), T0) == pytest.approx(90, abs=1)
    assert parse_retry_after(formatdate(T0 - 90, usegmt=True), T0) == 0.0
    assert parse_retry_after("soon", T0) is None
    assert parse_retry_after(None, T0) is None


def test_410_kills_the_delivery_at_once() -> None:
    dead = after_attempt(
        fresh(), http_result(410, None, T0), T0, 0.1, RetrySchedule(), random.Random()
    )
    assert (dead.status, dead.reason) == ("dead", "destination_gone")


def test_resent_starts_a_new_series_and_counts_replays() -> None:
    delivered = replace(fresh(), status="delivered", delivered_at=T0 + 1)
    again = resent(delivered, T0 + 100)
    assert (again.status, again.next_at, again.series_at, again.replays) == (
        "pending", T0 + 100, T0 + 100, 1,
    )  # fmt: skip
    dead = replace(fresh(), status="dead", reason="retries_exhausted")
    assert resent(dead, T0 + 5).replays == 0 and resent(dead, T0 + 5).reason == ""


def test_bad_schedules_are_refused() -> None:
    with pytest.raises(ValueError, match="positive"):
        RetrySchedule(steps=())
    with pytest.raises(ValueError, match="positive"):
        RetrySchedule(give_up_after=0)
