"""When to try a delivery again, and what an attempt's result means (pure).

Retries back off exponentially with *full jitter* (each wait is drawn
uniformly between zero and the step, so a burst of failures does not come
back as a burst), over about three days: the steps run 5 s, 1 min, 5 min,
30 min, 2 h, 5 h, 10 h and the last one repeats until ``give_up_after``
seconds have passed since the lead was captured; the next failure after that
makes the delivery a dead letter. ``Retry-After`` on a 429 or 503 is honoured
(capped at ``max_retry_after``). A ``410 Gone`` kills the delivery and
disables the destination. Every other failure (timeouts, refused
connections, redirects, other statuses) is retried.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from datetime import datetime
from email.utils import parsedate_to_datetime

from services.delivery.model import Attempt, Delivery, Outcome

DEFAULT_STEPS = (5.0, 60.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0)
DAY = 86400.0


@dataclass(frozen=True, slots=True)
class RetrySchedule:
    steps: tuple[float, ...] = DEFAULT_STEPS
    give_up_after: float = 3 * DAY
    max_retry_after: float = DAY
    min_wait: float = 1.0  # a jittered wait is never shorter

    def __post_init__(self) -> None:
        if not self.steps or any(s <= 0 for s in self.steps):
            raise ValueError("retry steps must be positive seconds")
        if self.give_up_after <= 0:
            raise ValueError("give_up_after must be positive")

    def step(self, failures: int) -> float:
        """The ceiling of the wait after the ``failures``-th failed attempt (1-based)."""
        return self.steps[min(failures, len(self.steps)) - 1]

    def wait(self, failures: int, rng: random.Random) -> float:
        return max(self.min_wait, rng.uniform(0.0, self.step(failures)))


@dataclass(frozen=True, slots=True)
class Result:
    """What one attempt came to, before the schedule is applied."""

    outcome: Outcome
    status_code: int | None = None
    detail: str = ""
    retry_after: float | None = None  # seconds, from a Retry-After header


def http_result(status: int, retry_after: str | None, now: float) -> Result:
    """An HTTP status (and its Retry-After header) as a :class:`Result`."""
    if 200 <= status < 300:
        return Result("delivered", status)
    if status == 410:
        return Result("gone", status, "410 Gone: the receiver asked us to stop")
    wait = parse_retry_after(retry_after, now) if status in (429, 503) else None
    if 300 <= status < 400:
        return Result("retry", status, f"HTTP {status}: redirects are not followed")
    return Result("retry", status, f"HTTP {status}", wait)


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` value: delta-seconds or an HTTP date.
    None when absent or unreadable; a date in the past is 0."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(min(int(value), 10**9))
    try:
        when: datetime = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now)


def after_attempt(
    delivery: Delivery,
    result: Result,
    started: float,
    seconds: float,
    schedule: RetrySchedule,
    rng: random.Random,
) -> Delivery:
    """The delivery once an attempt started at ``started`` came to ``result``."""
    attempt = Attempt(
        at=started,
        seconds=round(seconds, 4),
        outcome=result.outcome,
        status_code=result.status_code,
        detail=result.detail[:200],
    )
    attempts = (*delivery.attempts, attempt)
    now = started + seconds
    if result.outcome == "delivered":
        return replace(delivery, status="delivered", attempts=attempts, delivered_at=now, reason="")
    if result.outcome == "gone":
        return replace(delivery, status="dead", attempts=attempts, reason="destination_gone")
    if result.outcome == "erased":
        return replace(delivery, status="erased", attempts=attempts, reason="lead_erased")
    began = max(delivery.lead.captured_at, delivery.series_at)
    failures = sum(1 for a in attempts if a.outcome == "retry" and a.at >= began)
    if now - began >= schedule.give_up_after and failures > 1:
        return replace(delivery, status="dead", attempts=attempts, reason="retries_exhausted")
    wait = schedule.wait(failures, rng)
    if result.retry_after is not None:
        wait = min(max(wait, result.retry_after), schedule.max_retry_after)
    return replace(delivery, status="pending", attempts=attempts, next_at=now + wait)


def deferred(delivery: Delivery, until: float) -> Delivery:
    """Not tried now (the destination's circuit is open or it is busy): due at ``until``."""
    return replace(delivery, next_at=until)


def resent(delivery: Delivery, now: float) -> Delivery:
    """Due again at once: an operator's ``retry`` of a dead letter or ``replay``."""
    replays = delivery.replays + (1 if delivery.status == "delivered" else 0)
    return replace(
        delivery, status="pending", next_at=now, reason="", replays=replays, series_at=now
    )
