"""Key layout of the Redis backend.

Every key starts with a hash tag, so the keys one script touches share a
Cluster slot:

- ``{<ns>:t:<task>}:task``    hash: the task bytes, version, owner, ...
- ``{<ns>:t:<task>}:events``  stream: the task's event log
- ``{<ns>:t:<task>}:push``    hash: the task's push configs
- ``{<ns>:o:<owner>}:all``    sorted set: the owner's tasks, in list order
- ``{<ns>:o:<owner>}:ctx:<context>`` and ``...:st:<state>``: filtered indexes
- ``{<ns>:o:<owner>}:cur``    hash: what the indexes hold for each task
- ``{<ns>:o:<owner>}:exp``    sorted set: when each index entry expires
- ``{<ns>:sweep}``            sorted set: owners with expiring index entries,
  scored by their earliest deadline
- ``{<ns>:feed}``             stream: every event of the namespace
- ``<ns>:bell:<task>``        Pub/Sub channel: wake-ups of a task's readers;
  on a Cluster ``{<ns>:t:<task>}:bell``, a sharded channel (``SPUBLISH``,
  Redis 7+) in the task's slot, so a wake-up reaches only the node that owns
  the task instead of every node. The scripts pick ``SPUBLISH`` for a
  channel that starts with a hash tag.
- ``{<ns>:instances}``        sorted set: live replicas, scored by heartbeat
- ``{<ns>:instances}:run``    hash: running-task records, by task
- ``{<ns>:instances}:run:i:<instance>``  set: the tasks one replica runs
- ``{<ns>:instances}:run:holders``  set: replicas that hold records
- ``{<ns>:instances}:run:claims``   hash: records a claim took, until acked

The running-task keys share the registry's slot, so one script compares
records with heartbeats.

Ids (task, owner, context) are hex-encoded UTF-8: the encoding only uses
``0-9a-f``, so no id can break a hash tag or reach another namespace, and it
keeps the byte order of the ids, which the list indexes rely on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

TS_OFFSET = 2**63
MEMBER_PREFIX_LEN = 21


def encode_id(value: str) -> str:
    """Encodes an id for use inside a key (hex of its UTF-8 bytes)."""
    return value.encode('utf-8', 'surrogatepass').hex()


def decode_id(value: str) -> str:
    """Reverses `encode_id`."""
    return bytes.fromhex(value).decode('utf-8', 'surrogatepass')


def index_member(has_ts: bool, ts_ns: int, task_id: str) -> str:
    """The sorted-set member whose byte order is the `ListTasks` order."""
    return f'{int(has_ts)}{ts_ns + TS_OFFSET:020d}{encode_id(task_id)}'


def member_task_id(member: str) -> str:
    """The task id held in an index member."""
    return decode_id(member[MEMBER_PREFIX_LEN:])


def timestamp_floor(ts_ns: int) -> str:
    """The lowest member whose timestamp is at least `ts_ns`."""
    return f'1{ts_ns + TS_OFFSET:020d}'


@dataclass(frozen=True)
class TaskKeys:
    """The keys of one task."""

    task: str
    events: str
    push: str
    channel: str


@dataclass(frozen=True)
class OwnerKeys:
    """The index keys of one owner."""

    prefix: str
    all: str
    cur: str
    exp: str

    def context(self, context_id: str) -> str:
        """The index of the owner's tasks in `context_id`."""
        return f'{self.prefix}:ctx:{encode_id(context_id)}'

    def state(self, state: int) -> str:
        """The index of the owner's tasks in `state`."""
        return f'{self.prefix}:st:{int(state)}'


_REMEMBERED = 1024
"""How many tasks' (and owners') keys a `KeySpace` keeps built: a task is
saved several times in a row while it runs."""


def _remember(cache: dict[str, Any], name: str, keys: Any) -> None:
    if len(cache) >= _REMEMBERED:
        cache.clear()
    cache[name] = keys


class KeySpace:
    """Builds the keys of one namespace.

    Args:
        namespace: The prefix of every key.
        sharded: Whether wake-up channels are sharded channels in their task's
            slot (on a Redis Cluster).
    """

    def __init__(self, namespace: str, *, sharded: bool = False) -> None:
        if not namespace or any(c in namespace for c in '{}: '):
            raise ValueError(f'Invalid Redis namespace {namespace!r}')
        self.namespace = namespace
        self.sharded = sharded
        self.feed = f'{{{namespace}:feed}}'
        self.sweep = f'{{{namespace}:sweep}}'
        self.instances = f'{{{namespace}:instances}}'
        self.running = f'{self.instances}:run'
        self.running_holders = f'{self.running}:holders'
        self.running_claims = f'{self.running}:claims'
        self.running_prefix = f'{self.running}:i:'
        self._tasks: dict[str, TaskKeys] = {}
        self._owners: dict[str, OwnerKeys] = {}

    def running_of(self, instance_id: str) -> str:
        """The set of the tasks `instance_id` runs."""
        return f'{self.running_prefix}{encode_id(instance_id)}'

    def task(self, task_id: str) -> TaskKeys:
        """The keys of `task_id`."""
        keys = self._tasks.get(task_id)
        if keys is None:
            enc = encode_id(task_id)
            tag = f'{{{self.namespace}:t:{enc}}}'
            keys = TaskKeys(
                task=f'{tag}:task',
                events=f'{tag}:events',
                push=f'{tag}:push',
                channel=(
                    f'{tag}:bell' if self.sharded else f'{self.namespace}:bell:{enc}'
                ),
            )
            _remember(self._tasks, task_id, keys)
        return keys

    def owner(self, owner: str) -> OwnerKeys:
        """The index keys of `owner`."""
        keys = self._owners.get(owner)
        if keys is None:
            prefix = f'{{{self.namespace}:o:{encode_id(owner)}}}'
            keys = OwnerKeys(
                prefix=prefix,
                all=f'{prefix}:all',
                cur=f'{prefix}:cur',
                exp=f'{prefix}:exp',
            )
            _remember(self._owners, owner, keys)
        return keys

    def channel_task_id(self, channel: str) -> str | None:
        """The task id of a wake-up channel of this namespace, if it is one."""
        if self.sharded:
            prefix, suffix = f'{{{self.namespace}:t:', '}:bell'
        else:
            prefix, suffix = f'{self.namespace}:bell:', ''
        if not channel.startswith(prefix) or not channel.endswith(suffix):
            return None
        try:
            return decode_id(channel[len(prefix) : len(channel) - len(suffix)])
        except ValueError:
            return None
