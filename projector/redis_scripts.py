"""The Lua scripts of the Redis read models
(:class:`~projector.redis_store.RedisReadModel`), each run atomically by Redis.

The apply script does a write set's namespace check (live writes), the
compare-and-set on ``last_seq`` and every write of the set atomically. Its
payload is one orjson argument decoded with cjson; strings that must survive
exactly (scores, deltas) travel as strings, and transcript entries travel as
raw extra arguments so their bytes land in the list unchanged. A replayed
write set (DUPLICATE, CONFLICT, MOVED) leaves every key byte-for-byte as it
was, down to its ``DUMP``. It returns the write set's
:class:`~projector.store.Outcome` as its number.

Scripts declare every key they touch, but the keys of one write set span
several hash slots: standalone Redis (or a primary with replicas, Sentinel)
only; Redis Cluster is not supported.
"""

from __future__ import annotations

# KEYS: 1 pointer, 2 conv, 3 transcript, 4 lead, 5 leads zset, 6.. counter hashes.
# ARGV[1]: [live, namespace, base_seq, new_seq, [conv field, value, ...],
#           [lead field, value, ...], score, cid, [key index, field, delta, ...]];
# ARGV[2..]: transcript entries.
APPLY_LUA = """
local p = cjson.decode(ARGV[1])
if p[1] == 1 and redis.call('GET', KEYS[1]) ~= p[2] then return -2 end
-- HGETALL, not HGET: a field lookup moves an unfinished rehash of the hash's
-- table one step, so a replay would change the key's DUMP; reading it whole
-- changes nothing.
local held = 0
local stored = redis.call('HGETALL', KEYS[2])
for i = 1, #stored, 2 do
  if stored[i] == 'last_seq' then held = tonumber(stored[i + 1]) break end
end
if held >= p[4] then return 0 end
if held ~= p[3] then return -1 end
redis.call('HSET', KEYS[2], unpack(p[5]))
local n = #ARGV
for i = 2, n, 512 do
  redis.call('RPUSH', KEYS[3], unpack(ARGV, i, math.min(i + 511, n)))
end
local lead = p[6]
if #lead > 0 then
  redis.call('HSET', KEYS[4], unpack(lead))
  redis.call('ZADD', KEYS[5], p[7], p[8])
end
local incs = p[9]
for i = 1, #incs, 3 do
  redis.call('HINCRBY', KEYS[incs[i]], incs[i + 1], incs[i + 2])
end
return 1
"""

# KEYS: 1 pointer, 2 frontier hash. ARGV: namespace, partition, offset, ...
FRONTIER_LUA = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[2], unpack(ARGV, 2))
return 1
"""

# KEYS: 1 lead hash. Blank the sealed details of an existing lead.
ERASE_LUA = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'sealed', '', 'erased', '1')
return 1
"""
