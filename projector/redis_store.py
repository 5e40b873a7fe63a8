"""The read-model store in Redis (the distributed mode's adapter of :class:`ReadModelStore`).

The adapter keeps the namespace bookkeeping (pointer, serial, frontier, drop)
and the reads of one key; the rest lives beside it:

* :mod:`projector.redis_keys`: the keys and their layout;
* :mod:`projector.redis_scripts`: the Lua scripts, what the apply script does
  atomically, and why a replayed write set leaves every key as it was;
* :mod:`projector.redis_projection`: the writes. A batch of write sets is one
  pipelined round trip, one ``EVALSHA`` of the apply script per write set,
  packed and streamed without redis-py's ``Pipeline``; a ``NOSCRIPT`` reply
  loads the script and re-sends only the write sets that got it;
* :mod:`projector.redis_queries`: the page of a site's leads, and the decoding
  of replies.

Standalone Redis (or a primary with replicas, Sentinel) only, since a write
set's keys span several hash slots (:mod:`projector.redis_scripts`); Redis
Cluster is not supported. Redis 7.0 or later (``SET NX GET``).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any, cast

import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError

from projector.redis_keys import ReadModelKeys, glob_escape
from projector.redis_projection import apply_packed, load_views, pack_write_sets
from projector.redis_queries import fields, leads_page, text
from projector.redis_scripts import APPLY_LUA, ERASE_LUA, FRONTIER_LUA
from projector.store import LeadsPage, Outcome, decode_cursor
from projector.views import (
    ConversationView,
    LeadView,
    lead_from_fields,
    view_from_fields,
)
from projector.write_set import WriteSet

_SCAN_BATCH = 1000
# Per-namespace key kinds that count as entries of ``drop_namespace`` (as the fake counts).
_COUNTED = frozenset({b"conv", b"transcript", b"lead", b"c"})


class RedisReadModel:
    """Read models in one standalone Redis; the client (decode_responses=False)
    is the caller's to close."""

    def __init__(self, redis: Redis, prefix: str = "leadflow:") -> None:
        self._redis = redis
        self._keys = ReadModelKeys.under(prefix)
        self._apply_script = redis.register_script(APPLY_LUA)
        self._erase_script = redis.register_script(ERASE_LUA)
        self._frontier_script = redis.register_script(FRONTIER_LUA)

    # -- writing -------------------------------------------------------------
    async def current_namespace(self) -> str:
        name = await self._redis.get(self._keys.pointer)
        if name is not None:
            return text(name)
        candidate = await self.new_namespace()
        # SET NX GET: concurrent first users agree on one namespace
        previous = await self._redis.set(self._keys.pointer, candidate, nx=True, get=True)
        return candidate if previous is None else text(previous)

    async def load_views(
        self, namespace: str, conversation_ids: Collection[str]
    ) -> dict[str, ConversationView]:
        return await load_views(self._redis, self._keys, namespace, conversation_ids)

    async def apply(
        self, namespace: str, write_sets: Sequence[WriteSet], *, live: bool
    ) -> list[Outcome]:
        if not write_sets:
            return []
        commands = pack_write_sets(self._apply_script.sha, self._keys, namespace, write_sets, live)
        return await apply_packed(self._redis, commands)

    # -- rebuilding ----------------------------------------------------------
    async def new_namespace(self) -> str:
        return f"n{await self._redis.incr(self._keys.serial)}"

    async def set_frontier(
        self, namespace: str, frontier: Mapping[str, int], *, live: bool = False
    ) -> None:
        if not frontier:
            return
        key = f"{self._keys.root}{namespace}:frontier"
        pairs = [x for k, v in frontier.items() for x in (k, str(v))]
        if live:  # only while current, atomically with the check
            await self._frontier_script(keys=[self._keys.pointer, key], args=[namespace, *pairs])
        else:
            await self._redis.hset(key, items=pairs)

    async def frontier(self, namespace: str) -> dict[str, int]:
        raw = await self._redis.hgetall(f"{self._keys.root}{namespace}:frontier")
        return {k: int(v) for k, v in fields(raw).items()}

    async def switch_to(self, namespace: str) -> str:
        previous = await self._redis.set(self._keys.pointer, namespace, get=True)
        if previous is None:  # there was none: the fake creates one to return
            return await self.new_namespace()
        return text(previous)

    async def drop_namespace(self, namespace: str) -> int:
        current = await self._redis.get(self._keys.pointer)
        if current is not None and text(current) == namespace:
            raise ValueError(f"namespace {namespace!r} is current; switch away first")
        head = f"{self._keys.root}{namespace}:".encode()
        pattern = glob_escape(head) + b"*"
        dropped = 0
        cursor = 0
        while True:
            cursor, found = await self._redis.scan(cursor, match=pattern, count=_SCAN_BATCH)
            keys = cast(list[bytes], found)
            counted: list[bytes] = []
            others: list[bytes] = []
            for key in keys:  # {head}{kind}:...
                kind = key[len(head) :].split(b":", 1)[0]
                (counted if kind in _COUNTED else others).append(key)
            if counted:
                # UNLINK counts keys it removed: a key SCAN returns twice counts once
                dropped += await self._redis.unlink(*counted)
            if others:
                await self._redis.unlink(*others)
            if cursor == 0:
                return dropped

    # -- reading (the current namespace) --------------------------------------
    async def _key(self, kind: str, name: str) -> str:
        return f"{self._keys.root}{await self.current_namespace()}:{kind}:{name}"

    async def conversation(self, conversation_id: str) -> ConversationView | None:
        raw = await self._redis.hgetall(await self._key("conv", conversation_id))
        return view_from_fields(fields(raw)) if raw else None

    async def transcript(
        self, conversation_id: str, after_seq: int = 0, limit: int = 100
    ) -> list[dict[str, Any]]:
        raw = await self._redis.lrange(await self._key("transcript", conversation_id), 0, -1)
        entries = [orjson.loads(e) for e in raw]
        return [e for e in entries if e["seq"] > after_seq][:limit]

    async def lead(self, conversation_id: str) -> LeadView | None:
        raw = await self._redis.hgetall(await self._key("lead", conversation_id))
        return lead_from_fields(fields(raw)) if raw else None

    async def leads(self, site_id: str, cursor: str | None = None, limit: int = 50) -> LeadsPage:
        position = None if cursor is None else decode_cursor(cursor)
        if limit < 1:
            raise ValueError("limit must be at least 1")
        namespace = await self.current_namespace()
        return await leads_page(self._redis, self._keys, namespace, site_id, position, limit)

    async def counters(self, key: str) -> dict[str, int]:
        raw = await self._redis.hgetall(await self._key("c", key))
        return {k: int(v) for k, v in fields(raw).items()}

    async def mark_erased(self, conversation_id: str) -> bool:
        key = await self._key("lead", conversation_id)
        return bool(await self._erase_script(keys=[key]))

    async def ping(self) -> bool:
        try:
            return bool(await self._redis.ping())
        except (RedisError, OSError):
            return False
