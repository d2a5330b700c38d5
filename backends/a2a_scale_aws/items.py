"""The layout of the namespace's DynamoDB table.

One table holds five kinds of items, all keyed by ``pk`` and ``sk``:

============  ================  ==================  ===========================
kind          pk                sk                  notes
============  ================  ==================  ===========================
task          ``t#<task id>``   ``task``            version, owner, state, GSIs
event         ``t#<task id>``   ``e#<version>``     the ordered per-task log
extra event   ``t#<task id>``   ``e#<version>#<n>`` published, never saved
push config   ``t#<task id>``   ``p#<owner>#<id>``  owner-scoped
running       ``t#<task id>``   ``running``         the replica running it
replica       ``r#<instance>``  ``replica``         heartbeat, queue, subscription
============  ================  ==================  ===========================

Two sparse global secondary indexes list an owner's tasks newest first:
``by-owner`` (``gsi1pk`` = owner) and ``by-context`` (``gsi2pk`` = owner and
context id), both sorted by ``ListTasks`` order (``gsi1sk``/``gsi2sk``).
A third, ``by-replica``, holds only the running records: its partition
(``gsi3pk``) is one of `RUNNING_SHARDS` shards picked by the instance id,
its sort key (``gsi3sk``) the instance, so a replica's records are one
``Query`` away and every record a few.
Owners, context ids and config ids are length-prefixed in every key (and
hashed when long, see `key_part`), so no owner or id can forge another
owner's partition or overflow a key. Task ids are limited to
`a2a_scale_aws.payloads.TASK_ID_LIMIT` bytes, so that the list sort keys
(which must keep the id to keep the ``ListTasks`` order) fit in 1024 bytes.
"""

from __future__ import annotations

import hashlib

PK = 'pk'
SK = 'sk'
TASK_SK = 'task'
EVENT_PREFIX = 'e#'
PUSH_PREFIX = 'p#'
REPLICA_SK = 'replica'
RUNNING_SK = 'running'
TTL_ATTRIBUTE = 'exp'

BY_OWNER = 'by-owner'
BY_CONTEXT = 'by-context'
GSI1_PK, GSI1_SK = 'gsi1pk', 'gsi1sk'
GSI2_PK, GSI2_SK = 'gsi2pk', 'gsi2sk'
BY_REPLICA = 'by-replica'
GSI3_PK, GSI3_SK = 'gsi3pk', 'gsi3sk'
# Spreads the running records over this many index partitions (each takes
# about 1000 writes/s). Changing it strands the records of running replicas.
RUNNING_SHARDS = 4

# Caller-chosen strings longer than this are hashed inside keys.
KEY_PART_LIMIT = 256
VERSION_DIGITS = 19
TS_DIGITS = 20
# Shifts timestamps so that pre-1970 ones still sort as fixed-width digits.
TS_OFFSET = 10**19


def task_pk(task_id: str) -> str:
    """The partition of a task, its events and its push configs."""
    return f't#{task_id}'


def event_sk(version: int) -> str:
    """The sort key of the event that produced `version` (zero-padded)."""
    return f'{EVENT_PREFIX}{version:0{VERSION_DIGITS}d}'


def extra_event_sk(version: int, n: int) -> str:
    """The sort key of the `n`-th published-only event at `version`.

    It sorts after the saved event of `version` and before `version + 1`.
    """
    return f'{event_sk(version)}#{n:06d}'


def version_of_event_sk(sk: str) -> int:
    """The version encoded in an event sort key."""
    start = len(EVENT_PREFIX)
    return int(sk[start : start + VERSION_DIGITS])


def after_version(version: int) -> str:
    """The log position just past every event of `version` (0: the start)."""
    if version <= 0:
        return EVENT_PREFIX
    return f'{event_sk(version)}#~'


def successor(sk: str) -> str:
    """The smallest possible event sort key greater than `sk`.

    Event keys hold only ``e``, ``#`` and digits; any key extending `sk`
    continues with ``#``, which sorts after a space.
    """
    return f'{sk} '


# Greater than every event key and smaller than push and task keys.
EVENT_END = 'e$'


def key_part(value: str) -> str:
    """A caller-chosen string as a key segment that cannot run into the next.

    It is length-prefixed (``<len>:<value>``). A value longer than
    `KEY_PART_LIMIT` bytes is replaced by its SHA-256 (``<len>h<digest>``,
    never equal to a short value's form), so keys stay within DynamoDB's key
    limits (2048 bytes for a partition key, 1024 for a sort key) whatever the
    owner, context or config id.
    """
    if len(value.encode('utf-8')) <= KEY_PART_LIMIT:
        return f'{len(value)}:{value}'
    return f'{len(value)}h{hashlib.sha256(value.encode("utf-8")).hexdigest()}'


def owner_part(owner: str) -> str:
    """An owner as a key segment (see `key_part`)."""
    return key_part(owner)


def push_prefix(owner: str) -> str:
    """The sort-key prefix of `owner`'s push configs of a task."""
    return f'{PUSH_PREFIX}{owner_part(owner)}#'


def push_sk(owner: str, config_id: str) -> str:
    """The sort key of `owner`'s push config `config_id` of a task."""
    return f'{push_prefix(owner)}{key_part(config_id)}'


def replica_pk(instance_id: str) -> str:
    """The partition of a replica's heartbeat item."""
    return f'r#{instance_id}'


def running_shard(instance_id: str) -> str:
    """The ``by-replica`` partition of a replica's running records."""
    digest = hashlib.sha256(instance_id.encode('utf-8')).digest()
    return f'run#{int.from_bytes(digest[:4], "big") % RUNNING_SHARDS}'


def running_shards() -> list[str]:
    """Every ``by-replica`` partition."""
    return [f'run#{n}' for n in range(RUNNING_SHARDS)]


def context_partition(owner: str, context_id: str) -> str:
    """The ``by-context`` partition of an owner's context."""
    return f'{owner_part(owner)}#{key_part(context_id)}'


def list_sort_key(has_ts: bool, ts_ns: int, task_id: str) -> str:
    """ListTasks order ``(has ts, ts, id)`` as a string that sorts the same."""
    return f'{int(has_ts)}#{ts_ns + TS_OFFSET:0{TS_DIGITS}d}#{task_id}'
