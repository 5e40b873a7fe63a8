"""Per-conversation keys in Redis, for processors that share conversations.

Run Redis with persistence (AOF) for this: a key lost before its lead is read
means that lead is unreadable, exactly as if it had been erased.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from redis.asyncio import Redis

from services.conversation.sealing import KEY_BYTES

GET_MANY_CHUNK = 500


class RedisKeyStore:
    def __init__(self, redis: Redis, prefix: str = "leadflow:") -> None:
        self._redis = redis
        self._prefix = f"{prefix}key:"

    async def get_or_create(self, conversation_id: str) -> bytes:
        candidate = os.urandom(KEY_BYTES)
        # SET NX GET: one round trip, and concurrent creators agree on one key
        previous = await self._redis.set(
            self._prefix + conversation_id, candidate, nx=True, get=True
        )
        return candidate if previous is None else _as_bytes(previous)

    async def get(self, conversation_id: str) -> bytes | None:
        value = await self._redis.get(self._prefix + conversation_id)
        return None if value is None else _as_bytes(value)

    async def get_many(self, conversation_ids: Sequence[str]) -> dict[str, bytes]:
        """MGET in chunks: one round trip per ``GET_MANY_CHUNK`` conversations."""
        wanted = list(dict.fromkeys(conversation_ids))
        out: dict[str, bytes] = {}
        for start in range(0, len(wanted), GET_MANY_CHUNK):
            chunk = wanted[start : start + GET_MANY_CHUNK]
            values = await self._redis.mget([self._prefix + cid for cid in chunk])
            out.update((cid, _as_bytes(v)) for cid, v in zip(chunk, values, strict=True) if v)
        return out

    async def delete(self, conversation_id: str) -> bool:
        return bool(await self._redis.delete(self._prefix + conversation_id))


def _as_bytes(value: object) -> bytes:
    if not isinstance(value, bytes):  # a client configured with decode_responses
        raise TypeError("the Redis client must return bytes (decode_responses=False)")
    return value
