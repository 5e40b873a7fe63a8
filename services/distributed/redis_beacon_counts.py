"""The distributed mode's beacon counters (services.beacons) in Redis: one hash per
counter key, ``{prefix}beacons:{key}`` (field ``viewed`` or ``opened``), written by
the projector's ``POST /beacon`` and read by its read API. Outside the read models'
namespaces (``{prefix}rm:…``): beacons are not events, so a rebuild of the read
models from the log leaves them as they are. On a Redis Cluster the keys of one
beacon may live on different slots; they are written in one pipeline, not one
transaction (counts, not money: a failed write loses a view, never double-counts)."""

from __future__ import annotations

from redis.asyncio import Redis


class RedisBeaconCounts:
    """:class:`services.beacons.BeaconCounts` on Redis (HINCRBY, HGETALL)."""

    def __init__(self, redis: Redis, prefix: str = "leadflow:") -> None:
        self._redis = redis
        self._prefix = f"{prefix}beacons:"

    async def add(self, counters: list[tuple[str, str]]) -> None:
        async with self._redis.pipeline(transaction=False) as pipe:
            for key, field in counters:
                pipe.hincrby(self._prefix + key, field, 1)
            await pipe.execute()

    async def counters(self, key: str) -> dict[str, int]:
        raw = await self._redis.hgetall(self._prefix + key)
        return {_text(k): int(v) for k, v in raw.items()}


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
