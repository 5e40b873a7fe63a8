"""The beacon endpoint's rate limit: a token bucket per client address, bounded."""

from __future__ import annotations

from collections import OrderedDict

from gateway.ratelimit import TokenBucket

MAX_CLIENTS = 10_000


class BeaconLimiter:
    """A token bucket per client address; the least recently seen is forgotten first
    once MAX_CLIENTS are remembered (memory stays bounded under a spray of addresses)."""

    def __init__(self, rate: float, burst: int, max_clients: int = MAX_CLIENTS) -> None:
        self._rate = rate
        self._burst = burst
        self._max = max_clients
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def allow(self, client: str, now: float) -> bool:
        bucket = self._buckets.get(client)
        if bucket is None:
            bucket = TokenBucket(self._rate, self._burst, now)
            self._buckets[client] = bucket
            if len(self._buckets) > self._max:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(client)
        return bucket.allow(now)
