"""The delivery workers' shared state in Redis (the distributed mode).

Key layout (``D`` is ``{prefix}delivery:``):

| key | type | holds |
|---|---|---|
| ``D d:{id}`` | hash | ``b`` the record (encode_delivery), ``s`` status, ``q`` its seq |
| ``D seq`` | string | the creation counter (INCR): the listing order, stable across pages |
| ``D due`` | zset | pending ids by ``next_at``; a claim moves the score to the lease's end |
| ``D ix:all``, ``D ix:site:{site}`` | zset | ids by creation seq (newest first: ZREVRANGE) |
| ``D ix:st:{status}``, ``D ix:st:{status}:site:{site}`` | zset | the same, per status |
| ``D pend:all``, ``D pend:site:{site}`` | zset | pending ids by lead capture time |
| ``D state:{conversation}`` | string | encode_state; expires ``states_ttl_seconds`` after a write |
| ``D states`` | zset | conversation ids by ``updated_at`` (for forget_states_before) |
| ``D pos`` | hash | partition -> next offset |
| ``D since`` | string | deliver_since, set once (SET NX) |
| ``D off`` | hash | ``[site, destination]`` (JSON) -> why it is disabled |

Counts per status are the cardinalities of the status indexes, per site or in
all, so one site's summary never counts another's.

Claims are one Lua script (:data:`CLAIM_LUA`): the due ids up to ``now``,
each re-scored to ``now + lease`` and returned with its record, atomically,
so workers sharing the store never take the same delivery; a claim simply
expires when its score comes due again. :meth:`take_in` is one MULTI/EXEC:
the states (SET EX / DEL), the deliveries through :data:`ADD_LUA` (a record
and its indexes only where the record key does not exist) and the positions.
:meth:`save` is :data:`PUT_LUA`: record, status indexes and due set together.

The scripts derive per-delivery key names from the prefix; on a Redis
Cluster give a hash-tagged prefix (``{leadflow}:``) so all keys share a slot.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import orjson
from redis.asyncio import Redis

from services.conversation.state import ConversationState
from services.conversation.state_codec import decode_state, encode_state
from services.delivery.model import STATUSES, Delivery, Status, decode_delivery, encode_delivery
from services.delivery.store import Page, Summary

STATES_TTL_SECONDS = 8 * 24 * 3600
GET_MANY_CHUNK = 500

# put(D, id, body, status, next_at, site, captured_at, only_new) -> 1 if the record is new.
PUT_FN = """
local function put(D, id, body, status, next_at, site, captured, only_new)
  local key = D .. 'd:' .. id
  local old = redis.call('HGET', key, 's')
  if old and only_new then return 0 end
  local seq = redis.call('HGET', key, 'q')
  if not seq then seq = redis.call('INCR', D .. 'seq') end
  if old ~= status then
    if old then
      redis.call('ZREM', D .. 'ix:st:' .. old, id)
      redis.call('ZREM', D .. 'ix:st:' .. old .. ':site:' .. site, id)
    else
      redis.call('ZADD', D .. 'ix:all', seq, id)
      redis.call('ZADD', D .. 'ix:site:' .. site, seq, id)
    end
    redis.call('ZADD', D .. 'ix:st:' .. status, seq, id)
    redis.call('ZADD', D .. 'ix:st:' .. status .. ':site:' .. site, seq, id)
  end
  if status == 'pending' then
    redis.call('ZADD', D .. 'due', next_at, id)
    redis.call('ZADD', D .. 'pend:all', captured, id)
    redis.call('ZADD', D .. 'pend:site:' .. site, captured, id)
  else
    redis.call('ZREM', D .. 'due', id)
    redis.call('ZREM', D .. 'pend:all', id)
    redis.call('ZREM', D .. 'pend:site:' .. site, id)
  end
  redis.call('HSET', key, 'b', body, 's', status, 'q', seq)
  return old and 0 or 1
end
"""
# ARGV: D, then per delivery: id, body, status, next_at, site, captured_at. -> how many new
ADD_LUA = (
    PUT_FN
    + """
local new = 0
for i = 2, #ARGV, 6 do
  new = new + put(ARGV[1], ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4],
                  ARGV[i + 5], true)
end
return new
"""
)
SAVE_LUA = (
    PUT_FN + "return put(ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], false)"
)
# KEYS[1]: due. ARGV: D, now, limit, until. -> the claimed records, oldest due first.
CLAIM_LUA = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[2], 'LIMIT', 0, ARGV[3])
local out = {}
for i, id in ipairs(ids) do
  redis.call('ZADD', KEYS[1], ARGV[4], id)
  out[i] = redis.call('HGET', ARGV[1] .. 'd:' .. id, 'b')
end
return out
"""
# KEYS[1]: an index. ARGV: D, below (exclusive; '+inf' for the top), count (-1: all)
# -> seq, record, seq, record, ... newest first.
RANGE_LUA = """
local below = ARGV[2] == '+inf' and '+inf' or '(' .. ARGV[2]
local ids = redis.call('ZREVRANGEBYSCORE', KEYS[1], below, '-inf', 'WITHSCORES',
                       'LIMIT', 0, ARGV[3])
local out = {}
for i = 1, #ids, 2 do
  out[#out + 1] = ids[i + 1]
  out[#out + 1] = redis.call('HGET', ARGV[1] .. 'd:' .. ids[i], 'b')
end
return out
"""
# KEYS[1]: states zset. ARGV: D .. 'state:', before -> how many states were dropped
FORGET_LUA = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[2])
local gone = 0
for _, id in ipairs(ids) do
  gone = gone + redis.call('DEL', ARGV[1] .. id)
  redis.call('ZREM', KEYS[1], id)
end
return gone
"""


class RedisDeliveryStore:
    """:class:`~services.delivery.store.DeliveryStore` shared by delivery workers."""

    def __init__(
        self,
        redis: Redis,
        prefix: str = "leadflow:",
        states_ttl_seconds: int = STATES_TTL_SECONDS,
    ) -> None:
        self._redis = redis
        self._d = f"{prefix}delivery:"
        self._ttl = states_ttl_seconds
        self._add = redis.register_script(ADD_LUA)
        self._save = redis.register_script(SAVE_LUA)
        self._claim = redis.register_script(CLAIM_LUA)
        self._range = redis.register_script(RANGE_LUA)
        self._forget = redis.register_script(FORGET_LUA)

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None  # the client belongs to the composition root

    async def deliver_since(self, now: float) -> float:
        previous = await self._redis.set(self._d + "since", repr(now), nx=True, get=True)
        return now if previous is None else float(previous)

    async def positions(self) -> dict[int, int]:
        raw = await self._redis.hgetall(self._d + "pos")
        return {int(p): int(o) for p, o in raw.items()}

    async def states(self, conversation_ids: Sequence[str]) -> dict[str, ConversationState]:
        wanted = list(dict.fromkeys(conversation_ids))
        out: dict[str, ConversationState] = {}
        for start in range(0, len(wanted), GET_MANY_CHUNK):
            chunk = wanted[start : start + GET_MANY_CHUNK]
            values = await self._redis.mget([self._d + "state:" + c for c in chunk])
            out.update(
                (c, decode_state(_as_bytes(v))) for c, v in zip(chunk, values, strict=True) if v
            )
        return out

    async def take_in(
        self,
        states: Mapping[str, ConversationState | None],
        deliveries: Sequence[Delivery],
        positions: Mapping[int, int],
    ) -> int:
        async with self._redis.pipeline(transaction=True) as pipe:
            for cid, state in states.items():
                if state is None:
                    pipe.delete(self._d + "state:" + cid)
                    pipe.zrem(self._d + "states", cid)
                else:
                    pipe.set(self._d + "state:" + cid, encode_state(state), ex=self._ttl)
                    pipe.zadd(self._d + "states", {cid: state.updated_at})
            if deliveries:
                args: list[str | bytes | float] = [self._d]
                for d in deliveries:
                    args.extend(self._put_args(d))
                await self._add(args=args, client=pipe)
            if positions:
                pipe.hset(self._d + "pos", mapping={str(p): o for p, o in positions.items()})
            results = await pipe.execute()
        if not deliveries:
            return 0
        return int(results[2 * len(states)])

    async def claim_due(self, now: float, limit: int, lease: float) -> list[Delivery]:
        if limit <= 0:
            return []
        bodies = await self._claim(
            keys=[self._d + "due"], args=[self._d, repr(now), limit, repr(now + lease)]
        )
        return [decode_delivery(b) for b in bodies if b]

    async def save(self, delivery: Delivery) -> None:
        await self._save(args=[self._d, *self._put_args(delivery)])

    async def get(self, delivery_id: str) -> Delivery | None:
        body = await self._redis.hget(self._d + "d:" + delivery_id, "b")
        return None if body is None else decode_delivery(body)

    async def page(
        self,
        site_id: str | None,
        status: Status | None,
        limit: int,
        cursor: str | None = None,
    ) -> Page:
        """The cursor is the last record's creation seq: later ones sort above it."""
        below = str(int(cursor)) if cursor else "+inf"
        found = await self._span(self._index(site_id, status), below, limit + 1)
        shown = found[:limit]
        more = len(found) > limit and bool(shown)
        return Page([d for _, d in shown], str(shown[-1][0]) if more else None)

    async def delivered_since(
        self, site_id: str, since: float, destination: str | None
    ) -> list[Delivery]:
        found = await self._span(self._index(site_id, "delivered"), "+inf", -1)
        return [
            d
            for _, d in reversed(found)
            if d.lead.captured_at >= since and destination in (None, d.destination)
        ]

    async def summary(self, site_id: str | None = None) -> Summary:
        pending = self._d + ("pend:all" if site_id is None else f"pend:site:{site_id}")
        async with self._redis.pipeline(transaction=True) as pipe:
            for status in STATUSES:
                pipe.zcard(self._index(site_id, status))
            pipe.zrange(pending, 0, 0, withscores=True)
            *cards, oldest = await pipe.execute()
        counts: dict[Status, int] = {s: int(n) for s, n in zip(STATUSES, cards, strict=True) if n}
        return Summary(counts, float(oldest[0][1]) if oldest else None)

    async def disable(self, site_id: str, destination: str, reason: str, at: float) -> None:
        await self._redis.hset(self._d + "off", _pair(site_id, destination), reason)

    async def enable(self, site_id: str, destination: str) -> bool:
        return bool(await self._redis.hdel(self._d + "off", _pair(site_id, destination)))

    async def disabled(self) -> dict[tuple[str, str], str]:
        raw = await self._redis.hgetall(self._d + "off")
        out: dict[tuple[str, str], str] = {}
        for field, reason in raw.items():
            site, destination = orjson.loads(field)
            out[(site, destination)] = _as_bytes(reason).decode()
        return out

    async def forget_states_before(self, updated_before: float) -> int:
        gone = await self._forget(
            keys=[self._d + "states"], args=[self._d + "state:", repr(updated_before)]
        )
        return int(gone)

    def _put_args(self, d: Delivery) -> list[str | bytes | float]:
        return [
            d.id,
            encode_delivery(d),
            d.status,
            repr(d.next_at),
            d.site_id,
            repr(d.lead.captured_at),
        ]

    def _index(self, site_id: str | None, status: Status | None) -> str:
        key = self._d + ("ix" if status is None else f"ix:st:{status}")
        if site_id is not None:
            return f"{key}:site:{site_id}"
        return key + (":all" if status is None else "")

    async def _span(self, index: str, below: str, count: int) -> list[tuple[int, Delivery]]:
        flat = await self._range(keys=[index], args=[self._d, below, count])
        return [
            (int(float(flat[i])), decode_delivery(flat[i + 1]))
            for i in range(0, len(flat), 2)
            if flat[i + 1]
        ]


def _pair(site_id: str, destination: str) -> bytes:
    return orjson.dumps([site_id, destination])


def _as_bytes(value: object) -> bytes:
    if not isinstance(value, bytes):  # a client configured with decode_responses
        raise TypeError("the Redis client must return bytes (decode_responses=False)")
    return value
