"""The read-model store in Redis (the distributed mode's adapter of :class:`ReadModelStore`).

The keys and their layout: :mod:`projector.redis_keys`.

A batch of write sets is one pipelined round trip: one ``EVALSHA`` of the apply
script per write set. What the scripts do atomically, and why a replay leaves
every key as it was: :mod:`projector.redis_scripts`.

The commands are packed here and streamed on one pooled connection in chunks
(Redis runs one chunk while the next is read), not through redis-py's
``Pipeline``: its per-argument packing cost as much as the rest of a write
set, and with a script it asks ``SCRIPT EXISTS`` first, a second round trip.
Instead a ``NOSCRIPT`` reply (after a restart or ``SCRIPT FLUSH``) loads the
script and re-sends only the write sets that got it (they wrote nothing).

Standalone Redis (or a primary with replicas, Sentinel) only, since a write
set's keys span several hash slots (:mod:`projector.redis_scripts`); Redis
Cluster is not supported. Redis 7.0 or later (``SET NX GET``).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from itertools import chain
from typing import Any, cast

import orjson
from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import NoScriptError, RedisError, ResponseError

from projector.plan import WriteSet
from projector.redis_keys import ReadModelKeys, glob_escape
from projector.redis_queries import fields, leads_page, text
from projector.redis_scripts import APPLY_LUA, ERASE_LUA, FRONTIER_LUA
from projector.store import LeadsPage, Outcome, decode_cursor
from projector.views import (
    ConversationView,
    LeadView,
    lead_fields,
    lead_from_fields,
    view_from_fields,
)

_OUTCOMES: dict[object, Outcome] = {int(o): o for o in Outcome}
_NOSCRIPT_ROUNDS = 3
_CHUNK = 256  # write sets per socket write
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
        ids = list(conversation_ids)
        if not ids:
            return {}
        base = f"{self._keys.root}{namespace}:conv:"
        pipe = self._redis.pipeline(transaction=False)
        for cid in ids:
            pipe.hgetall(base + cid)
        rows = await pipe.execute()
        return {
            cid: view_from_fields(fields(raw)) for cid, raw in zip(ids, rows, strict=True) if raw
        }

    async def apply(
        self, namespace: str, write_sets: Sequence[WriteSet], *, live: bool
    ) -> list[Outcome]:
        if not write_sets:
            return []
        commands = self._commands(namespace, write_sets, live)
        results: list[Outcome | None] = [None] * len(commands)
        pending = list(range(len(commands)))
        for _ in range(_NOSCRIPT_ROUNDS):
            replies = await self._exchange([commands[i] for i in pending])
            missing: list[int] = []
            for i, reply in zip(pending, replies, strict=True):
                if isinstance(reply, NoScriptError):
                    missing.append(i)  # not run at all: safe to send again
                elif isinstance(reply, Exception):
                    raise reply
                else:
                    results[i] = _OUTCOMES[reply]
            if not missing:
                return cast(list[Outcome], results)
            await self._redis.script_load(APPLY_LUA)  # same sha: it is the text's SHA1
            pending = missing
        raise RedisError("the apply script kept disappearing (NOSCRIPT) from Redis")

    def _commands(self, namespace: str, write_sets: Sequence[WriteSet], live: bool) -> list[bytes]:
        """Each write set's ``EVALSHA sha numkeys keys... payload entries...``, packed.

        Packed here rather than by redis-py's pipeline: its per-argument packing
        cost as much as everything else a write set costs in Python."""
        base = f"{self._keys.root}{namespace}:".encode()
        pointer, flag = _bulk(self._keys.pointer.encode()), 1 if live else 0
        evalsha = b"$7\r\nEVALSHA\r\n" + _bulk(self._apply_script.sha.encode())
        dumps, flat = orjson.dumps, chain.from_iterable
        commands: list[bytes] = []
        for ws in write_sets:
            cid, lead = ws.conversation_id, ws.lead
            tail = b":" + cid.encode()
            keys = [
                base + b"conv" + tail,
                base + b"transcript" + tail,
                base + b"lead" + tail,
                base + b"leads:" + (ws.site_id if lead is None else lead.site_id).encode(),
            ]
            slots: dict[str, int] = {}
            incs: list[Any] = []
            for inc in ws.increments:
                slot = slots.get(inc.key)
                if slot is None:
                    keys.append(base + b"c:" + inc.key.encode())
                    slot = slots[inc.key] = len(keys) + 1  # KEYS[1] is the pointer
                incs += (slot, inc.field, str(inc.delta))
            payload = dumps(
                [
                    flag,
                    namespace,
                    ws.base_seq,
                    ws.new_seq,
                    list(flat(ws.fields.items())),
                    [] if lead is None else list(flat(lead_fields(lead).items())),
                    "" if lead is None else repr(lead.captured_at),
                    cid,
                    incs,
                ]
            )
            numkeys = len(keys) + 1
            commands.append(
                b"".join(
                    [
                        b"*%d\r\n" % (numkeys + len(ws.transcript) + 4),
                        evalsha,
                        _bulk(b"%d" % numkeys),
                        pointer,
                        *[_bulk(k) for k in keys],
                        _bulk(payload),
                        *[_bulk(e) for e in ws.transcript],
                    ]
                )
            )
        return commands

    async def _exchange(self, commands: list[bytes]) -> list[object]:
        """Send packed commands on one pooled connection and read every reply
        (an error reply comes back as its exception); retried as the client's
        retry policy says on a connection error (a resent write set comes back
        DUPLICATE if the first attempt applied it)."""
        pool = self._redis.connection_pool
        conn: AbstractConnection = await pool.get_connection()  # type: ignore[no-untyped-call]
        try:
            replies: list[object] = await conn.retry.call_with_retry(
                lambda: _stream(conn, commands), lambda _error: conn.disconnect()
            )
            return replies
        except BaseException:
            await conn.disconnect()  # replies may be left unread: never reuse it
            raise
        finally:
            await pool.release(conn)

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


def _bulk(arg: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(arg), arg)


async def _stream(conn: AbstractConnection, commands: list[bytes]) -> list[object]:
    """Pipelined: a chunk is sent before the replies of the previous one are
    read, so Redis works on one chunk while this process parses another."""
    replies: list[object] = []
    unread = 0
    for start in range(0, len(commands), _CHUNK):
        chunk = commands[start : start + _CHUNK]
        await conn.send_packed_command(b"".join(chunk), check_health=start == 0)
        await _read(conn, unread, replies)
        unread = len(chunk)
    await _read(conn, unread, replies)
    return replies


async def _read(conn: AbstractConnection, count: int, into: list[object]) -> None:
    for _ in range(count):
        try:
            into.append(await conn.read_response())
        except ResponseError as error:
            into.append(error)
