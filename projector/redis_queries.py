"""The Redis read models' reads that take more than one command, and the
decoding of what Redis replies (:class:`~projector.redis_store.RedisReadModel`
reads with ``decode_responses=False``: names and fields come back as bytes).

A site's leads are the ``leads:{site_id}`` zset (member cid, score
captured_at; :mod:`projector.redis_keys`), read newest first, score then
member descending, as ``ZRANGE REV`` orders ties; each lead's hash is then
read in one pipelined round trip.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from redis.asyncio import Redis

from projector.redis_keys import ReadModelKeys
from projector.store import LeadsPage, encode_cursor
from projector.views import decode_fields, lead_from_fields


async def leads_page(
    redis: Redis,
    keys: ReadModelKeys,
    namespace: str,
    site_id: str,
    position: tuple[float, str] | None,
    limit: int,
) -> LeadsPage:
    """Up to ``limit`` leads of ``site_id`` after the cursor's ``position``
    (none: from the newest), and the cursor of the next page if there is one."""
    index = f"{keys.root}{namespace}:leads:{site_id}"
    wanted = limit + 1  # one more than a page tells whether there is a next one
    ids = await _newest_ids(redis, index, position, wanted)
    more = len(ids) > limit
    base = f"{keys.root}{namespace}:lead:"
    pipe = redis.pipeline(transaction=False)
    for cid in ids[:limit]:
        pipe.hgetall(base + cid)
    page = [lead_from_fields(fields(raw)) for raw in await pipe.execute() if raw]
    last = page[-1] if more and page else None
    return LeadsPage(
        page, None if last is None else encode_cursor(last.captured_at, last.conversation_id)
    )


async def _newest_ids(
    redis: Redis, index: str, position: tuple[float, str] | None, wanted: int
) -> list[str]:
    """Up to ``wanted`` members of the ``index`` zset after ``position``, newest first."""
    top = "+inf" if position is None else repr(position[0])
    ids: list[str] = []
    offset = 0
    while len(ids) < wanted:
        # newest first: score desc, then member desc (ZRANGE REV on ties)
        batch = wanted - len(ids) + (0 if position is None else 16)
        rows = await redis.zrange(
            index,
            top,
            "-inf",
            desc=True,
            byscore=True,
            offset=offset,
            num=batch,
            withscores=True,
        )
        offset += len(rows)
        for member, score in cast(list[tuple[bytes, float]], rows):
            cid = text(member)
            if position is None or score < position[0] or cid < position[1]:
                ids.append(cid)
        if len(rows) < batch:
            break
    return ids[:wanted]


def text(value: object) -> str:
    """A name Redis replied (bytes, or str from a decoding client) as str."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, str):
        return value
    raise TypeError(f"unexpected reply from Redis: {value!r}")


def fields(raw: Mapping[Any, Any]) -> dict[str, str]:
    """An ``HGETALL`` reply (bytes to bytes) as str fields."""
    return decode_fields(cast(Mapping[bytes, bytes], raw))
