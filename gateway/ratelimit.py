"""A token bucket per connection: ``rate`` frames per second, bursts of ``burst``."""

from __future__ import annotations


class TokenBucket:
    __slots__ = ("_last", "_tokens", "burst", "rate")  # two per socket

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate = rate
        self.burst = float(burst)
        self._tokens = float(burst)
        self._last = now

    def allow(self, now: float) -> bool:
        elapsed = max(0.0, now - self._last)
        self._last = now
        self._tokens = min(self.burst, self._tokens + elapsed * self.rate)
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False
