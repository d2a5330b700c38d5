"""The Lua scripts of the Redis backend.

Each script only touches keys of one hash tag, so it runs on Redis Cluster.
On a single Redis the save script also updates the owner's list indexes and
the event feed in the same atomic step (`SAVE_INDEXED`); on a Cluster those
live in other slots and are updated by a second, version-guarded and
idempotent step (`INDEX_PUT`, plus an ``XADD`` to the feed).

Index entries are stored in ``cur`` as ``version|state|deadline|context|member``.
"""

from __future__ import annotations

_COMMON = r"""
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

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
    redis.call('ZREM', prefix .. ':exp', tid)
  end
  return #expired
end

local function index_put(prefix, tid, v, st, ctx, m, ttl, keyttl, now)
  local cur = prefix .. ':cur'
  local old = redis.call('HGET', cur, tid)
  if old then
    local ov, ost, _, octx, om = parse_entry(old)
    if ov ~= nil and ov >= v then
      return 0
    end
    drop(prefix, ost, octx, om)
  end
  local deadline = 0
  if ttl > 0 then deadline = now + ttl end
  local touched = {prefix .. ':all', prefix .. ':ctx:' .. ctx, prefix .. ':st:' .. st}
  for _, k in ipairs(touched) do
    redis.call('ZADD', k, 0, m)
  end
  redis.call('HSET', cur, tid,
             v .. '|' .. st .. '|' .. deadline .. '|' .. ctx .. '|' .. m)
  if deadline > 0 then
    redis.call('ZADD', prefix .. ':exp', deadline, tid)
  else
    redis.call('ZREM', prefix .. ':exp', tid)
  end
  prune(prefix, now, 100)
  if keyttl > 0 then
    table.insert(touched, cur)
    table.insert(touched, prefix .. ':exp')
    for _, k in ipairs(touched) do
      redis.call('PEXPIRE', k, keyttl)
    end
  end
  return 1
end

local function wrong_type(key, expected)
  local t = redis.call('TYPE', key)['ok']
  if t ~= 'none' and t ~= expected then
    return 'WRONGTYPE ' .. key .. ' holds a ' .. t .. ', not a ' .. expected
  end
  return nil
end

local function append(key, v, payload, maxlen)
  local ok, id = pcall(redis.call, 'XADD', key, 'MAXLEN', '~', maxlen,
                       v .. '-*', 'v', v, 'e', payload)
  if not ok then
    id = redis.call('XADD', key, 'MAXLEN', '~', maxlen, '*', 'v', v, 'e', payload)
  end
  return id
end
"""

# KEYS: task, events, push, feed, owner index ``all`` key (or the task key).
# ARGV: owner, prev_version, cancel, write_id, data, event, state, terminal,
#   context (hex), member, retention_ms, active_ttl_ms, maxlen, channel, mode,
#   feed_maxlen, task id (hex), index prefix ('' = no inline index), key_ttl_ms
# Returns {status, version, entry id}: 1 saved, 2 already saved by this
# write id (a retried call), 0 conflict, -1 owned by someone else.
_SAVE = r"""
local task, events, push, feed = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local owner, prev, cancel, wid = ARGV[1], tonumber(ARGV[2]), ARGV[3] == '1', ARGV[4]
local data, event, st, terminal = ARGV[5], ARGV[6], ARGV[7], ARGV[8] == '1'
local ctx, m = ARGV[9], ARGV[10]
local retention, active_ttl, maxlen = tonumber(ARGV[11]), tonumber(ARGV[12]), ARGV[13]
local channel, mode, feed_maxlen = ARGV[14], ARGV[15], tonumber(ARGV[16])
local tid, prefix, keyttl = ARGV[17], ARGV[18], tonumber(ARGV[19])

for _, pair in ipairs({{task, 'hash'}, {events, 'stream'}, {push, 'hash'}}) do
  local bad = wrong_type(pair[1], pair[2])
  if bad then return redis.error_reply(bad) end
end
local cur = redis.call('HMGET', task, 'v', 'o', 'z', 'w')
local exists = cur[1] ~= false
local cur_v = 0
if exists then
  cur_v = tonumber(cur[1])
  if cur[2] ~= owner then return {-1, cur_v, ''} end
  if cur[4] == wid then return {2, cur_v, ''} end
end
if cancel then
  if (not exists) or cur[3] == '1' then return {0, cur_v, ''} end
elseif prev == 0 then
  if exists then return {0, cur_v, ''} end
elseif (not exists) or cur_v ~= prev then
  return {0, cur_v, ''}
end

local v = cur_v + 1
local z = '0'
if terminal then z = '1' end
redis.call('HSET', task, 'd', data, 'v', v, 'o', owner, 'z', z, 'w', wid,
           's', st, 'c', ctx, 'm', m)
local id = ''
if event ~= '' then
  if mode == 'streams' then
    id = append(events, v, event, maxlen)
    redis.call('PUBLISH', channel, id)
  else
    redis.call('PUBLISH', channel, v .. '|' .. event)
  end
  if feed_maxlen > 0 and prefix ~= '' then
    redis.call('XADD', feed, 'MAXLEN', '~', feed_maxlen, '*',
               't', tid, 'v', v, 'o', owner, 'e', event)
    redis.call('PEXPIRE', feed, retention)
  end
end
local ttl = active_ttl
if terminal then ttl = retention end
for _, k in ipairs({task, events, push}) do
  if ttl > 0 then redis.call('PEXPIRE', k, ttl) else redis.call('PERSIST', k) end
end
if prefix ~= '' then
  index_put(prefix, tid, v, st, ctx, m, ttl, keyttl, now_ms())
end
return {1, v, id}
"""

SAVE = _COMMON + _SAVE

# KEYS: owner ``all`` key. ARGV: prefix, task id (hex), version, state,
# context (hex), member, ttl_ms, key_ttl_ms.
INDEX_PUT = (
    _COMMON
    + r"""
return index_put(ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4], ARGV[5], ARGV[6],
                 tonumber(ARGV[7]), tonumber(ARGV[8]), now_ms())
"""
)

# KEYS: owner ``all`` key. ARGV: prefix, task id (hex).
INDEX_DELETE = (
    _COMMON
    + r"""
local prefix, tid = ARGV[1], ARGV[2]
local old = redis.call('HGET', prefix .. ':cur', tid)
if not old then return 0 end
local _, st, _, ctx, m = parse_entry(old)
drop(prefix, st, ctx, m)
redis.call('HDEL', prefix .. ':cur', tid)
redis.call('ZREM', prefix .. ':exp', tid)
return 1
"""
)

# KEYS: owner ``all`` key. ARGV: prefix, index key suffix, max bound, min
# bound, limit, state filter ('' = none), legacy start task (hex, '' = none).
# Returns {total, member...}, or {-1} if the legacy start task is unknown.
INDEX_LIST = (
    _COMMON
    + r"""
local prefix, suffix, max, min = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local limit, st, legacy = tonumber(ARGV[5]), ARGV[6], ARGV[7]
prune(prefix, now_ms(), 1000)
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

# KEYS: task, events. ARGV: version, event, channel, mode, maxlen,
# retention_ms. Appends an event that no save logged (a direct `Message`).
PUBLISH = (
    _COMMON
    + r"""
local task, events = KEYS[1], KEYS[2]
local v, event, channel, mode = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local bad = wrong_type(events, 'stream')
if bad then return redis.error_reply(bad) end
if mode ~= 'streams' then
  redis.call('PUBLISH', channel, v .. '|' .. event)
  return ''
end
local id = append(events, v, event, ARGV[5])
local pttl = redis.call('PTTL', task)
if pttl == -2 then
  redis.call('PEXPIRE', events, ARGV[6])
elseif pttl > 0 then
  redis.call('PEXPIRE', events, pttl)
end
redis.call('PUBLISH', channel, id)
return id
"""
)

# KEYS: task, push. ARGV: field, config bytes, active_ttl_ms.
# Stores a push config; the push hash expires with its task.
PUSH_SET = r"""
local task, push = KEYS[1], KEYS[2]
redis.call('HSET', push, ARGV[1], ARGV[2])
local pttl = redis.call('PTTL', task)
if pttl > 0 then
  redis.call('PEXPIRE', push, pttl)
elseif pttl == -2 and tonumber(ARGV[3]) > 0 then
  redis.call('PEXPIRE', push, ARGV[3])
end
return 1
"""

# KEYS: task, events, push. ARGV: owner. Deletes a task of `owner`.
# Returns {deleted, state, context (hex)} so the caller can fix the indexes.
DELETE = r"""
local owner = redis.call('HGET', KEYS[1], 'o')
if owner == false then return {0} end
if owner ~= ARGV[1] then return {0} end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
return {1}
"""
