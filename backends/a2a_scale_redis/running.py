"""`RedisRunningTasks`: which replica runs which task, next to the heartbeats.

The records share the hash tag of the replica registry (``{<ns>:instances}``,
see `keys`), so each step is one Lua script in one slot, on a single Redis
and on a Cluster alike. A record is ``<instance>|<resumes>|<owner>`` (ids
hex-encoded) in the ``:run`` hash, under its task; each holder has a set of
its tasks, and the ``:run:holders`` set lists the replicas that hold any, so
a claim reads only the registry, never the keyspace.

A claim is two steps. The first script moves every record of a dead or
gone replica (no entry in the registry: stopped, or reaped) out of ``:run``
into ``:run:claims``, marked with the claimer, and returns them; the second
drops what was returned from ``:run:claims``. Claimers are serialized by
Redis, so in the normal case each record reaches exactly one of them. When
the first reply is lost, the claimer's next claim returns the records again;
when the claimer dies before its second step, the next claimer to find it
dead takes them over. So a fault never loses a record; at worst (a failed
second step) a record is returned twice.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from a2a_scale.errors import CorruptDataError
from a2a_scale.recovery import RunningTask, RunningTasks
from a2a_scale_redis.batching import CommandBatcher
from a2a_scale_redis.keys import KeySpace, decode_id, encode_id

if TYPE_CHECKING:
    from collections.abc import Sequence

    from a2a_scale_redis.connection import AnyRedis

logger = logging.getLogger(__name__)

_HELPERS = r"""
local function unhex(s)
  return (s:gsub('..', function(h) return string.char(tonumber(h, 16)) end))
end

local function holder(record)
  return string.match(record, '^([^|]*)')
end

-- Whether replica `id` (hex) has no heartbeat, or none since `cutoff`.
local function dead(registry, id, cutoff)
  local score = redis.call('ZSCORE', registry, unhex(id))
  return (not score) or tonumber(score) <= cutoff
end

local function forget(holders, set, id, task)
  redis.call('SREM', set, task)
  if redis.call('SCARD', set) == 0 then
    redis.call('SREM', holders, id)
  end
end
"""

# KEYS: run, holders, claims, the holder's set. ARGV: task, record, holder,
#   holders' set prefix.
ADD = (
    _HELPERS
    + r"""
local old = redis.call('HGET', KEYS[1], ARGV[1])
if old and holder(old) ~= ARGV[3] then
  forget(KEYS[2], ARGV[4] .. holder(old), holder(old), ARGV[1])
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('SADD', KEYS[4], ARGV[1])
redis.call('SADD', KEYS[2], ARGV[3])
redis.call('HDEL', KEYS[3], ARGV[1])
return 1
"""
)

# KEYS: run, holders, the holder's set. ARGV: holder, task, task, ...
#   Returns how many records were dropped.
REMOVE = (
    _HELPERS
    + r"""
local dropped = 0
for i = 2, #ARGV do
  local record = redis.call('HGET', KEYS[1], ARGV[i])
  if record and holder(record) == ARGV[1] then
    redis.call('HDEL', KEYS[1], ARGV[i])
    redis.call('SREM', KEYS[3], ARGV[i])
    dropped = dropped + 1
  end
end
if dropped > 0 and redis.call('SCARD', KEYS[3]) == 0 then
  redis.call('SREM', KEYS[2], ARGV[1])
end
return dropped
"""
)

# KEYS: registry, run, holders, claims. ARGV: cutoff (s), claimer, holders'
#   set prefix. Returns {task, record, task, record, ...}.
CLAIM = (
    _HELPERS
    + r"""
local registry, run, holders, claims = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local cutoff, me, prefix = tonumber(ARGV[1]), ARGV[2], ARGV[3]
local out = {}
-- Claims not yet acknowledged: this claimer's (its reply was lost), or
-- those of a claimer that died since.
local pending = redis.call('HGETALL', claims)
for i = 1, #pending, 2 do
  local task, value = pending[i], pending[i + 1]
  local claimer, record = string.match(value, '^([^|]*)|(.*)$')
  if claimer == me or dead(registry, claimer, cutoff) then
    if claimer ~= me then
      redis.call('HSET', claims, task, me .. '|' .. record)
    end
    out[#out + 1] = task
    out[#out + 1] = record
  end
end
for _, id in ipairs(redis.call('SMEMBERS', holders)) do
  if id ~= me and dead(registry, id, cutoff) then
    local set = prefix .. id
    for _, task in ipairs(redis.call('SMEMBERS', set)) do
      local record = redis.call('HGET', run, task)
      if record and holder(record) == id then
        redis.call('HDEL', run, task)
        redis.call('HSET', claims, task, me .. '|' .. record)
        out[#out + 1] = task
        out[#out + 1] = record
      end
    end
    redis.call('DEL', set)
    redis.call('SREM', holders, id)
  end
end
return out
"""
)

# KEYS: claims. ARGV: claimer, task... Drops the claimer's claims of tasks.
ACK = r"""
local mark = ARGV[1] .. '|'
local dropped = 0
for i = 2, #ARGV do
  local value = redis.call('HGET', KEYS[1], ARGV[i])
  if value and string.sub(value, 1, #mark) == mark then
    redis.call('HDEL', KEYS[1], ARGV[i])
    dropped = dropped + 1
  end
end
return dropped
"""


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class RedisRunningTasks(RunningTasks):
    """Running-task records in the replica registry's slot.

    Args:
        client: The backend's `Redis` or `RedisCluster` client.
        namespace: The namespace (the key prefix).
        instance_id: The id of this replica: the claimer of `claim_orphans`,
            whose own records it never claims.
        batcher: Sends the adds and removals of the turns' records (the
            ones on a request's path) together with other commands while
            the replica is busy; by default each goes out alone.
    """

    def __init__(
        self,
        client: AnyRedis,
        *,
        namespace: str,
        instance_id: str,
        batcher: CommandBatcher | None = None,
    ) -> None:
        self._client = client
        self._batcher = batcher or CommandBatcher(client, enabled=False)
        self.keys = KeySpace(namespace)
        self.instance_id = instance_id
        self._add = client.register_script(ADD)
        self._remove = client.register_script(REMOVE)
        self._claim = client.register_script(CLAIM)
        self._ack = client.register_script(ACK)

    async def add(self, record: RunningTask) -> None:
        """Records that `record.instance_id` runs `record.task_id`."""
        k = self.keys
        holder = encode_id(record.instance_id)
        value = f'{holder}|{record.resumes}|{encode_id(record.owner)}'
        await self._batcher.script(
            self._add,
            [
                k.running,
                k.running_holders,
                k.running_claims,
                k.running_of(record.instance_id),
            ],
            [encode_id(record.task_id), value, holder, k.running_prefix],
        )

    async def remove(self, task_id: str, instance_id: str) -> None:
        """Drops the task's record if `instance_id` still holds it."""
        await self.remove_many([(task_id, instance_id)])

    async def remove_many(self, records: Sequence[tuple[str, str]]) -> None:
        """Drops the records, one script per holder (they run together)."""
        by_holder: dict[str, list[str]] = {}
        for task_id, instance_id in records:
            by_holder.setdefault(instance_id, []).append(encode_id(task_id))
        k = self.keys
        await asyncio.gather(
            *(
                self._batcher.script(
                    self._remove,
                    [k.running, k.running_holders, k.running_of(instance_id)],
                    [encode_id(instance_id), *tasks],
                )
                for instance_id, tasks in by_holder.items()
            )
        )

    async def running(self, instance_id: str | None = None) -> list[RunningTask]:
        """Returns the records of one replica, or of every replica."""
        if instance_id is None:
            found: Any = await self._client.hgetall(self.keys.running)
            pairs = list(found.items())
        else:
            tasks: Any = await self._client.smembers(self.keys.running_of(instance_id))
            fields = sorted(tasks)
            values: Any = (
                await self._client.hmget(self.keys.running, fields) if fields else []
            )
            pairs = [(f, v) for f, v in zip(fields, values, strict=True) if v]
        held = [self._decode(field, value) for field, value in pairs]
        return [
            record
            for record in held
            if instance_id is None or record.instance_id == instance_id
        ]

    async def claim_orphans(self, *, older_than: float) -> list[RunningTask]:
        """Takes the records of replicas silent for `older_than` s or unregistered.

        What it returns is acknowledged by a second call; if that call fails,
        the records are still returned, and the next claim of this replica
        returns them again (at least once, never lost).
        """
        k = self.keys
        me = encode_id(self.instance_id)
        reply: Any = await self._claim(
            keys=[k.instances, k.running, k.running_holders, k.running_claims],
            args=[repr(time.time() - older_than), me, k.running_prefix],
        )
        fields = [_text(v) for v in reply[0::2]]
        claimed = [
            self._decode(field, value)
            for field, value in zip(fields, reply[1::2], strict=True)
        ]
        if fields:
            try:
                await self._ack(keys=[k.running_claims], args=[me, *fields])
            except Exception as e:
                logger.warning(
                    'Could not acknowledge %d claimed running-task record(s) in '
                    '%s (%s): the next claim returns them again',
                    len(fields),
                    k.running_claims,
                    type(e).__name__,
                )
        return claimed

    def _decode(self, field: bytes | str, value: bytes | str) -> RunningTask:
        try:
            task_id = decode_id(_text(field))
            holder, resumes, owner = _text(value).split('|')
            return RunningTask(
                task_id=task_id,
                owner=decode_id(owner),
                instance_id=decode_id(holder),
                resumes=int(resumes),
            )
        except ValueError as e:
            raise CorruptDataError(
                self.keys.running, f'not a running-task record ({e})'
            ) from None
