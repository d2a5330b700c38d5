"""The Lua scripts of the Redis backend.

Each script only touches keys of one hash tag, so it runs on Redis Cluster.
On a single Redis the save script also updates the owner's list indexes and
the event feed in the same atomic step; on a Cluster those live in other
slots and are updated by a second, version-guarded and idempotent step
(`a2a_scale_redis.indexes.INDEX_PUT`, plus an ``XADD`` to the feed).

A save runs only the commands it needs: the expiry of the task's keys moves
when the task starts or stops being terminal, or once it slipped by more
than an eighth of its length; the index entry is rewritten when the expiry,
state, context or timestamp changes; a WRONGTYPE key fails the first
command that touches it, before anything is written.
"""

from __future__ import annotations

from a2a_scale_redis.indexes import INDEX_LUA

_COMMON = r"""
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function wrong_type(key, expected)
  local t = redis.call('TYPE', key)['ok']
  if t ~= 'none' and t ~= expected then
    return 'WRONGTYPE ' .. key .. ' holds a ' .. t .. ', not a ' .. expected
  end
  return nil
end

-- Appends an event; fails with a WRONGTYPE error naming `key`, before any
-- write of the calling script, if it is not a stream.
-- Rings a task's channel with its new entry id, and the event itself
-- ("<id>|<version>|<event>") when it is at most `inline` bytes.
-- A hash-tagged channel is a sharded one (Redis Cluster, Redis 7+): SPUBLISH
-- reaches only the node that owns the task's slot.
local function ring(channel, message)
  if string.byte(channel, 1) == 123 then
    redis.call('SPUBLISH', channel, message)
  else
    redis.call('PUBLISH', channel, message)
  end
end

local function wake_up(channel, id, v, event, inline)
  if #event <= inline then
    ring(channel, id .. '|' .. v .. '|' .. event)
  else
    ring(channel, id)
  end
end

local function append(key, v, payload, maxlen)
  local ok, id = pcall(redis.call, 'XADD', key, 'MAXLEN', '~', maxlen,
                       v .. '-*', 'v', v, 'e', payload)
  if not ok then
    local msg = id
    if type(id) == 'table' then msg = id['err'] end
    if string.find(tostring(msg), 'WRONGTYPE', 1, true) then
      error(redis.error_reply(wrong_type(key, 'stream')))
    end
    id = redis.call('XADD', key, 'MAXLEN', '~', maxlen, '*', 'v', v, 'e', payload)
  end
  return id
end
"""

# KEYS: task, events, push, feed (or the task key).
# ARGV: owner, prev_version, cancel, write_id, data, event, state, terminal,
#   context (hex), member, channel, task id (hex), index prefix ('' = no
#   inline index). The store's settings are written into the script by
#   `save_script` (fewer arguments to send and parse on every save).
# Returns {status, version, entry id, deadline, indexed}: status 1 saved, 2
# already saved by this write id (a retried call), 0 conflict, -1 owned by
# someone else, -2 refused: the task is terminal (then the entry id slot holds
# the stored state). `deadline` is the expiry of the task's keys (ms, 0 =
# none), `indexed` 1 if the index entry must be (or was) rewritten.
_SAVE = r"""
local task, events, push, feed = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local owner, prev, cancel, wid = ARGV[1], tonumber(ARGV[2]), ARGV[3] == '1', ARGV[4]
local data, event, st, terminal = ARGV[5], ARGV[6], ARGV[7], ARGV[8] == '1'
local ctx, m, channel, tid, prefix = ARGV[9], ARGV[10], ARGV[11], ARGV[12], ARGV[13]

-- A WRONGTYPE task key fails here, before anything is written.
local cur = redis.call('HMGET', task, 'v', 'o', 'z', 'w', 's', 'c', 'm', 'k', 'x')
local exists = cur[1] ~= false
local cur_v = 0
if exists then
  cur_v = tonumber(cur[1])
  if cur[2] ~= owner then return {-1, cur_v, ''} end
  if cur[4] == wid then return {2, cur_v, '', tonumber(cur[8]) or 0, 1} end
end
if cancel then
  if (not exists) or cur[3] == '1' then return {0, cur_v, ''} end
elseif prev == 0 then
  if exists then return {0, cur_v, ''} end
elseif (not exists) or cur_v ~= prev then
  return {0, cur_v, ''}
elseif cur[3] == '1' and cur[5] ~= st then
  return {-2, cur_v, tostring(cur[5])}
end

local v = cur_v + 1
local z = '0'
if terminal then z = '1' end
local ttl = active_ttl
if terminal then ttl = retention end
local deadline = 0
if ttl > 0 then deadline = now_ms() + ttl end
local old_k = tonumber(cur[8])
local k = old_k
-- The expiry moves when the task starts or stops being terminal, or once it
-- slipped by more than an eighth of its length; the index entry is
-- rewritten when it moves or when the state, context or timestamp change.
local expire = (not exists) or (cur[3] == '1') ~= terminal
  or old_k == nil or (deadline == 0 and old_k ~= 0)
  or (deadline > 0 and (old_k == 0 or deadline - old_k > ttl / 8))
if expire then k = deadline end
local refresh = expire or cur[5] ~= st or cur[6] ~= ctx or cur[7] ~= m
local x = cur[9]

local id = ''
if event ~= '' then
  if mode == 'streams' then
    id = append(events, v, event, maxlen)
    wake_up(channel, id, v, event, inline)
  else
    ring(channel, v .. '|' .. event)
  end
  if feed_maxlen > 0 and prefix ~= '' then
    redis.call('XADD', feed, 'MAXLEN', '~', feed_maxlen, '*',
               't', tid, 'v', v, 'o', owner, 'e', event)
    redis.call('PEXPIRE', feed, retention)
  end
end
if expire then
  if k > 0 then
    x = redis.call('PEXPIREAT', events, k)
  else
    redis.call('PERSIST', events)
    x = 1
  end
elseif id ~= '' and x ~= '1' and k > 0 then
  redis.call('PEXPIREAT', events, k)
  x = 1
end
redis.call('HSET', task, 'd', data, 'v', v, 'o', owner, 'z', z, 'w', wid,
           's', st, 'c', ctx, 'm', m, 'k', k, 'x', x)
if expire then
  for _, key in ipairs({task, push}) do
    if k > 0 then
      redis.call('PEXPIREAT', key, k)
    else
      redis.call('PERSIST', key)
    end
  end
end
if refresh and prefix ~= '' then
  index_put(prefix, tid, v, st, ctx, m, k, registry)
end
local indexed = 0
if refresh then indexed = 1 end
return {1, v, id, k, indexed}
"""

_SETTINGS = """
local retention, active_ttl, maxlen = %d, %d, %d
local mode, feed_maxlen, inline, registry = %s, %d, %d, %s
"""


def _lua_string(value: str) -> str:
    """A Lua string literal of `value` (decimal escapes: any byte is safe)."""
    return '"' + ''.join(f'\\{b:03d}' for b in value.encode()) + '"'


def save_script(
    *,
    retention_ms: int,
    active_ttl_ms: int,
    maxlen: int,
    mode: str,
    feed_maxlen: int,
    inline_bytes: int,
    registry: str,
) -> str:
    """The save script of a store with these settings.

    Args:
        retention_ms: Expiry of a finished task's keys.
        active_ttl_ms: Expiry of an unfinished task's keys (0: none).
        maxlen: Approximate length of a task's stream.
        mode: ``streams`` or ``pubsub``.
        feed_maxlen: Approximate length of the feed (0: no feed).
        inline_bytes: The largest event a wake-up carries (0: none).
        registry: The sweep registry key ('' = the caller updates it).
    """
    settings = _SETTINGS % (
        int(retention_ms),
        int(active_ttl_ms),
        int(maxlen),
        _lua_string(mode),
        int(feed_maxlen),
        int(inline_bytes),
        _lua_string(registry),
    )
    return _COMMON + INDEX_LUA + settings + _SAVE


# KEYS: task, events. ARGV: version, event, channel, mode, maxlen,
# retention_ms, inline bytes (optional). Appends an event that no save
# logged (a direct `Message`).
PUBLISH = (
    _COMMON
    + r"""
local task, events = KEYS[1], KEYS[2]
local v, event, channel, mode = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local bad = wrong_type(events, 'stream')
if bad then return redis.error_reply(bad) end
if mode ~= 'streams' then
  ring(channel, v .. '|' .. event)
  return ''
end
local id = append(events, v, event, ARGV[5])
local pttl = redis.call('PTTL', task)
if pttl == -2 then
  redis.call('PEXPIRE', events, ARGV[6])
elseif pttl > 0 then
  redis.call('PEXPIRE', events, pttl)
end
wake_up(channel, id, v, event, tonumber(ARGV[7]) or 0)
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

# KEYS: task, events, push. ARGV: owner, channel (optional: rung with '!' so
# subscribers learn of the deletion; SPUBLISH for a hash-tagged channel).
# Deletes a task of `owner`.
# Returns {deleted, state, context (hex)} so the caller can fix the indexes.
DELETE = r"""
local owner = redis.call('HGET', KEYS[1], 'o')
if owner == false then return {0} end
if owner ~= ARGV[1] then return {0} end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
if ARGV[2] then
  local publish = 'PUBLISH'
  if string.byte(ARGV[2], 1) == 123 then publish = 'SPUBLISH' end
  redis.call(publish, ARGV[2], '!')
end
return {1}
"""
