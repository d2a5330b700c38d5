"""The owner list indexes of the Redis backend, and their Lua scripts.

Each owner has sorted sets in list order (``all``, one per context, one per
state), a hash ``cur`` of what they hold for each task, and a sorted set
``exp`` of when each entry expires (its task's expiry). A namespace-wide
sorted set, the sweep registry, holds each owner whose ``exp`` is not empty,
scored by its earliest deadline, so that the periodic cleanup
(`a2a_scale_redis.retention`) visits only owners with expired entries, in
expiry order.

Index entries are stored in ``cur`` as ``version|state|deadline|context|member``;
a deadline of 0 means the entry never expires.

On a single Redis the registry is updated by the same scripts (atomically);
on a Cluster it lives in another slot, so its callers update it.
"""

from __future__ import annotations

from a2a.utils.task import ListTasksCursor, encode_list_tasks_cursor

from a2a_scale_redis.keys import MEMBER_PREFIX_LEN, TS_OFFSET, member_task_id

INDEX_LUA = r"""
local function parse_entry(s)
  local v, st, dl, ctx, m = string.match(s, '^(%d+)|(%-?%d+)|(%d+)|([0-9a-f]*)|(.*)$')
  return tonumber(v), st, tonumber(dl), ctx, m
end

local function drop(prefix, st, ctx, m)
  redis.call('ZREM', prefix .. ':all', m)
  redis.call('ZREM', prefix .. ':ctx:' .. ctx, m)
  redis.call('ZREM', prefix .. ':st:' .. st, m)
end

local function prune(prefix, now, limit)
  local expired = redis.call('ZRANGEBYSCORE', prefix .. ':exp', '-inf', now,
                             'LIMIT', 0, limit)
  for _, tid in ipairs(expired) do
    local old = redis.call('HGET', prefix .. ':cur', tid)
    if old then
      local _, st, _, ctx, m = parse_entry(old)
      drop(prefix, st, ctx, m)
      redis.call('HDEL', prefix .. ':cur', tid)
    end
  end
  if #expired > 0 then
    redis.call('ZREM', prefix .. ':exp', unpack(expired))
  end
  return #expired
end

-- The owner's earliest deadline (-1: none); registers it if `registry` ~= ''.
local function settle(prefix, registry)
  local first = redis.call('ZRANGE', prefix .. ':exp', 0, 0, 'WITHSCORES')
  local score = -1
  if #first > 0 then score = tonumber(first[2]) end
  if registry ~= '' then
    if score < 0 then
      redis.call('ZREM', registry, prefix)
    else
      redis.call('ZADD', registry, score, prefix)
    end
  end
  return score
end

-- Writes a task's entry at version `v`, rewriting only what changed.
local function index_put(prefix, tid, v, st, ctx, m, deadline, registry)
  local cur = prefix .. ':cur'
  local old = redis.call('HGET', cur, tid)
  local ost, octx, om, odl
  if old then
    local ov
    ov, ost, odl, octx, om = parse_entry(old)
    if ov ~= nil and ov >= v then return 0 end
  end
  if om ~= m then
    if om then redis.call('ZREM', prefix .. ':all', om) end
    redis.call('ZADD', prefix .. ':all', 0, m)
  end
  if octx ~= ctx or om ~= m then
    if om then redis.call('ZREM', prefix .. ':ctx:' .. octx, om) end
    redis.call('ZADD', prefix .. ':ctx:' .. ctx, 0, m)
  end
  if ost ~= st or om ~= m then
    if om then redis.call('ZREM', prefix .. ':st:' .. ost, om) end
    redis.call('ZADD', prefix .. ':st:' .. st, 0, m)
  end
  redis.call('HSET', cur, tid,
             v .. '|' .. st .. '|' .. deadline .. '|' .. ctx .. '|' .. m)
  if deadline > 0 then
    if odl ~= deadline then
      redis.call('ZADD', prefix .. ':exp', deadline, tid)
      if registry ~= '' then
        redis.call('ZADD', registry, 'LT', deadline, prefix)
      end
    end
  elseif odl ~= nil and odl > 0 then
    redis.call('ZREM', prefix .. ':exp', tid)
  end
  return 1
end
"""

_NOW = r"""
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
"""

# KEYS: owner ``all`` key. ARGV: prefix, task id (hex), version, state,
# context (hex), member, deadline_ms (0 = none), registry ('' = caller's job).
INDEX_PUT = (
    INDEX_LUA
    + r"""
return index_put(ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4], ARGV[5], ARGV[6],
                 tonumber(ARGV[7]), ARGV[8])
"""
)

# KEYS: owner ``all`` key. ARGV: prefix, task id (hex), registry.
INDEX_DELETE = (
    INDEX_LUA
    + r"""
local prefix, tid = ARGV[1], ARGV[2]
local old = redis.call('HGET', prefix .. ':cur', tid)
if not old then return 0 end
local _, st, dl, ctx, m = parse_entry(old)
drop(prefix, st, ctx, m)
redis.call('HDEL', prefix .. ':cur', tid)
if dl > 0 then
  redis.call('ZREM', prefix .. ':exp', tid)
  settle(prefix, ARGV[3])
end
return 1
"""
)

# KEYS: owner ``all`` key. ARGV: prefix, limit, registry.
# Drops up to `limit` expired entries. Returns {dropped, next deadline or -1}.
INDEX_PRUNE = (
    _NOW
    + INDEX_LUA
    + r"""
local prefix = ARGV[1]
local dropped = prune(prefix, now_ms(), tonumber(ARGV[2]))
return {dropped, settle(prefix, ARGV[3])}
"""
)

PRUNE_PENDING = -2

# KEYS: owner ``all`` key. ARGV: prefix, index key suffix, max bound, min
# bound, limit, state filter ('' = none), legacy start task (hex, '' = none),
# registry. Returns {total, member...}; {-1} if the legacy start task is
# unknown; {-2} if expired entries remain after a bounded cleanup (call again).
INDEX_LIST = (
    _NOW
    + INDEX_LUA
    + r"""
local prefix, suffix, max, min = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local limit, st, legacy = tonumber(ARGV[5]), ARGV[6], ARGV[7]
local now = now_ms()
if prune(prefix, now, 1000) > 0 then
  settle(prefix, ARGV[8])
  local left = redis.call('ZRANGEBYSCORE', prefix .. ':exp', '-inf', now,
                          'LIMIT', 0, 1)
  if #left > 0 then return {-2} end
end
local key = prefix .. suffix
if legacy ~= '' then
  local entry = redis.call('HGET', prefix .. ':cur', legacy)
  if not entry then return {-1} end
  local _, _, _, _, m = parse_entry(entry)
  max = '[' .. m
end
if st == '' then
  local total = redis.call('ZLEXCOUNT', key, min, '+')
  local page = redis.call('ZRANGE', key, max, min, 'BYLEX', 'REV', 'LIMIT', 0, limit)
  table.insert(page, 1, total)
  return page
end
local function state_of(m)
  local entry = redis.call('HGET', prefix .. ':cur', string.sub(m, 22))
  if not entry then return nil end
  local _, s = parse_entry(entry)
  return s
end
local total = 0
for _, m in ipairs(redis.call('ZRANGE', key, '+', min, 'BYLEX', 'REV')) do
  if state_of(m) == st then total = total + 1 end
end
local page = {total}
for _, m in ipairs(redis.call('ZRANGE', key, max, min, 'BYLEX', 'REV')) do
  if #page > limit then break end
  if state_of(m) == st then table.insert(page, m) end
end
return page
"""
)


def cursor_of(member: str) -> str:
    """The page token that resumes a listing after index `member`."""
    has = member[0] == '1'
    ts = int(member[1:MEMBER_PREFIX_LEN]) - TS_OFFSET
    return encode_list_tasks_cursor(
        ListTasksCursor(
            timestamp_ns=ts if has else None, task_id=member_task_id(member)
        )
    )
