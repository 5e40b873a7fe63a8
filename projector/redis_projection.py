"""The Redis read models' writes: the views a batch is planned on, read in one
round trip, and its write sets applied by the apply script of
:mod:`projector.redis_scripts`.

A batch of write sets is one pipelined round trip: one ``EVALSHA`` of the apply
script per write set.

The commands are packed here and streamed on one pooled connection in chunks
(Redis runs one chunk while the next is read), not through redis-py's
``Pipeline``: its per-argument packing cost as much as the rest of a write
set, and with a script it asks ``SCRIPT EXISTS`` first, a second round trip.
Instead a ``NOSCRIPT`` reply (after a restart or ``SCRIPT FLUSH``) loads the
script and re-sends only the write sets that got it (they wrote nothing).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from itertools import chain
from typing import Any, cast

import orjson
from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import NoScriptError, RedisError, ResponseError

from projector.redis_keys import ReadModelKeys
from projector.redis_queries import fields
from projector.redis_scripts import APPLY_LUA
from projector.store import Outcome
from projector.views import ConversationView, lead_fields, view_from_fields
from projector.write_set import WriteSet

_OUTCOMES: dict[object, Outcome] = {int(o): o for o in Outcome}
_NOSCRIPT_ROUNDS = 3
_CHUNK = 256  # write sets per socket write


async def load_views(
    redis: Redis, keys: ReadModelKeys, namespace: str, conversation_ids: Collection[str]
) -> dict[str, ConversationView]:
    """The stored views of ``conversation_ids`` in ``namespace`` (those it holds),
    read in one pipelined round trip."""
    ids = list(conversation_ids)
    if not ids:
        return {}
    base = f"{keys.root}{namespace}:conv:"
    pipe = redis.pipeline(transaction=False)
    for cid in ids:
        pipe.hgetall(base + cid)
    rows = await pipe.execute()
    return {cid: view_from_fields(fields(raw)) for cid, raw in zip(ids, rows, strict=True) if raw}


def pack_write_sets(
    apply_sha: str,
    keys: ReadModelKeys,
    namespace: str,
    write_sets: Sequence[WriteSet],
    live: bool,
) -> list[bytes]:
    """Each write set's ``EVALSHA sha numkeys keys... payload entries...``, packed.

    Packed here rather than by redis-py's pipeline: its per-argument packing
    cost as much as everything else a write set costs in Python."""
    base = f"{keys.root}{namespace}:".encode()
    pointer, flag = _bulk(keys.pointer.encode()), 1 if live else 0
    evalsha = b"$7\r\nEVALSHA\r\n" + _bulk(apply_sha.encode())
    dumps, flat = orjson.dumps, chain.from_iterable
    commands: list[bytes] = []
    for ws in write_sets:
        cid, lead = ws.conversation_id, ws.lead
        tail = b":" + cid.encode()
        set_keys = [
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
                set_keys.append(base + b"c:" + inc.key.encode())
                slot = slots[inc.key] = len(set_keys) + 1  # KEYS[1] is the pointer
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
        numkeys = len(set_keys) + 1
        commands.append(
            b"".join(
                [
                    b"*%d\r\n" % (numkeys + len(ws.transcript) + 4),
                    evalsha,
                    _bulk(b"%d" % numkeys),
                    pointer,
                    *[_bulk(k) for k in set_keys],
                    _bulk(payload),
                    *[_bulk(e) for e in ws.transcript],
                ]
            )
        )
    return commands


async def apply_packed(redis: Redis, commands: list[bytes]) -> list[Outcome]:
    """Each packed write set's outcome, in order. The write sets that got
    ``NOSCRIPT`` (they wrote nothing) are sent again once the script is loaded."""
    results: list[Outcome | None] = [None] * len(commands)
    pending = list(range(len(commands)))
    for _ in range(_NOSCRIPT_ROUNDS):
        replies = await _exchange(redis, [commands[i] for i in pending])
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
        await redis.script_load(APPLY_LUA)  # same sha: it is the text's SHA1
        pending = missing
    raise RedisError("the apply script kept disappearing (NOSCRIPT) from Redis")


def _bulk(arg: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(arg), arg)


async def _exchange(redis: Redis, commands: list[bytes]) -> list[object]:
    """Send packed commands on one pooled connection and read every reply
    (an error reply comes back as its exception); retried as the client's
    retry policy says on a connection error (a resent write set comes back
    DUPLICATE if the first attempt applied it)."""
    pool = redis.connection_pool
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
