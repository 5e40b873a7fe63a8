"""The per-connection token bucket."""

from __future__ import annotations

from gateway.ratelimit import TokenBucket

T0 = 1000.0


def drain(bucket: TokenBucket, now: float) -> int:
    """How many frames the bucket allows at one instant (bounded, to fail not hang)."""
    allowed = 0
    while allowed < 1000 and bucket.allow(now):
        allowed += 1
    return allowed


def test_a_fresh_bucket_allows_exactly_the_burst() -> None:
    """Regression: a new connection may send `burst` frames at once, not one more."""
    bucket = TokenBucket(rate=10.0, burst=20, now=T0)
    assert drain(bucket, T0) == 20
    assert not bucket.allow(T0)


def test_tokens_refill_at_the_configured_rate() -> None:
    """Regression: after draining, `rate` frames per second become available again."""
    bucket = TokenBucket(rate=10.0, burst=20, now=T0)
    drain(bucket, T0)
    assert drain(bucket, T0 + 0.5) == 5
    assert not bucket.allow(T0 + 0.55)
    assert bucket.allow(T0 + 0.6)


def test_partial_tokens_accumulate_across_calls() -> None:
    """Regression: refused calls must not reset the fractional refill."""
    bucket = TokenBucket(rate=1.0, burst=1, now=T0)
    assert bucket.allow(T0)
    assert not bucket.allow(T0 + 0.4)
    assert not bucket.allow(T0 + 0.8)
    assert bucket.allow(T0 + 1.0)


def test_refill_is_capped_at_the_burst() -> None:
    """Regression: a long idle period must not bank more than `burst` tokens."""
    bucket = TokenBucket(rate=10.0, burst=5, now=T0)
    drain(bucket, T0)
    assert drain(bucket, T0 + 3600) == 5


def test_clock_going_backwards_neither_refills_nor_breaks_the_bucket() -> None:
    """Regression: a backwards clock step must not grant tokens or drive the bucket negative."""
    bucket = TokenBucket(rate=10.0, burst=3, now=T0)
    drain(bucket, T0)
    assert not bucket.allow(T0 - 100)
    assert not bucket.allow(T0 - 100)
    assert bucket.allow(T0 - 100 + 0.1)
    assert not bucket.allow(T0 - 100 + 0.1)
