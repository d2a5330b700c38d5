"""Whole-namespace operations: counting tasks and deleting every key.

Every key of a namespace starts with ``{<namespace>:`` (see `keys`), so one
``SCAN MATCH`` finds them all, on every primary of a Cluster too. Both
operations walk the keyspace: they serve ``a2a-scale check`` and the demo's
cleanup, never a request path.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from a2a_scale_redis.keys import KeySpace

if TYPE_CHECKING:
    from a2a_scale_redis.connection import AnyRedis

_SCAN_COUNT = 1000
_DELETE_BATCH = 500


def namespace_pattern(namespace: str) -> str:
    """The ``SCAN`` pattern of every key of `namespace`."""
    KeySpace(namespace)  # rejects characters that could widen the pattern
    return f'{{{namespace}:*'


def task_pattern(namespace: str) -> str:
    """The ``SCAN`` pattern of the task hashes of `namespace`."""
    return f'{{{namespace}:t:*}}:task'


@dataclass(frozen=True)
class KeyCount:
    """How many keys matched, and whether the scan finished in time."""

    count: int
    complete: bool


async def count_keys(client: AnyRedis, pattern: str, *, budget: float) -> KeyCount:
    """Counts the keys matching `pattern`, scanning for at most `budget` s."""
    deadline = time.monotonic() + budget
    count = 0
    scan: Any = client.scan_iter(match=pattern, count=_SCAN_COUNT)
    async for _ in scan:
        count += 1
        if time.monotonic() > deadline:
            await scan.aclose()
            return KeyCount(count, complete=False)
    return KeyCount(count, complete=True)


async def purge_namespace(client: AnyRedis, namespace: str) -> int:
    """Deletes every key of `namespace`; returns how many were deleted."""
    deleted = 0
    batch: list[Any] = []
    scan: Any = client.scan_iter(match=namespace_pattern(namespace), count=_SCAN_COUNT)
    async for key in scan:
        batch.append(key)
        if len(batch) >= _DELETE_BATCH:
            deleted += int(await client.unlink(*batch))
            batch.clear()
    if batch:
        deleted += int(await client.unlink(*batch))
    return deleted
