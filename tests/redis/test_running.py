"""Redis running-task records: one slot, no keyspace scan, at-least-once acks.

The suite's `RunningTasksConformance` covers the contract; these check how
the Redis backend meets it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from redis.asyncio import Redis
from redis.crc import key_slot
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError

from a2a_scale import ScaleSettings
from a2a_scale.recovery import RunningTask
from a2a_scale_redis.backend import RedisBackend
from a2a_scale_redis.keys import KeySpace, encode_id
from a2a_scale_redis.settings import RedisSettings

pytestmark = pytest.mark.redis


def _backend(url: str, namespace: str) -> RedisBackend:
    return RedisBackend(
        ScaleSettings(namespace=namespace, backend='redis'), RedisSettings(url=url)
    )


@pytest_asyncio.fixture
async def claimer(redis_url: str, namespace: str) -> AsyncIterator[RedisBackend]:
    async with _backend(redis_url, namespace) as backend:
        yield backend
    raw = Redis.from_url(redis_url)
    try:
        keys = [k async for k in raw.scan_iter(match=f'{{{namespace}:*')]
        if keys:
            await raw.delete(*keys)
    finally:
        await raw.aclose()


async def _orphans(url: str, namespace: str, count: int) -> list[RunningTask]:
    gone = _backend(url, namespace)
    async with gone:
        left = [
            RunningTask(f'task-{i}', 'alice', gone.instance_id) for i in range(count)
        ]
        for record in left:
            await gone.running_tasks.add(record)
    return left


def _record_commands(backend: RedisBackend, fail: set[int]) -> list[str]:
    """Records the client's commands; those numbered in `fail` fail unsent.

    Script loads, and a script call Redis answered with NOSCRIPT, are left
    out, so the count does not depend on what earlier tests did to Redis's
    script cache.
    """
    client: Any = backend.client
    execute = client.execute_command
    seen: list[str] = []

    async def execute_command(*args: Any, **options: Any) -> Any:
        name = str(args[0]).upper()
        if name == 'SCRIPT':  # loading a script (after NOSCRIPT) is not counted
            return await execute(*args, **options)
        seen.append(name)
        if len(seen) in fail:
            raise RedisConnectionError('injected: not sent')
        try:
            return await execute(*args, **options)
        except NoScriptError:
            # Not in Redis's script cache (an earlier test flushed it): the
            # call is made again once loaded, and counted then.
            seen.pop()
            raise

    client.execute_command = execute_command
    return seen


def test_running_keys_share_the_registry_slot() -> None:
    keys = KeySpace('ns')
    slot = key_slot(keys.instances.encode())
    for key in (
        keys.running,
        keys.running_holders,
        keys.running_claims,
        keys.running_of('host-1-abc'),
        keys.running_of('{x}:*'),
    ):
        assert key_slot(key.encode()) == slot, key


@pytest.mark.asyncio
async def test_a_claim_is_two_scripts_and_reads_no_keyspace(
    claimer: RedisBackend, redis_url: str, namespace: str
) -> None:
    left = await _orphans(redis_url, namespace, 3)
    seen = _record_commands(claimer, fail=set())
    claimed = await claimer.running_tasks.claim_orphans(older_than=60)
    assert set(claimed) == set(left)
    assert [c for c in seen if c not in ('SCRIPT LOAD', 'SCRIPT')] == [
        'EVALSHA',
        'EVALSHA',
    ]
    raw = Redis.from_url(redis_url)
    try:
        assert await raw.hlen(KeySpace(namespace).running_claims) == 0
        assert await raw.scard(KeySpace(namespace).running_holders) == 0
    finally:
        await raw.aclose()


@pytest.mark.asyncio
async def test_a_failed_acknowledgement_returns_the_records_again(
    claimer: RedisBackend, redis_url: str, namespace: str
) -> None:
    left = await _orphans(redis_url, namespace, 3)
    seen = _record_commands(claimer, fail={2})  # the acknowledgement
    first = await claimer.running_tasks.claim_orphans(older_than=60)
    assert seen[:2] == ['EVALSHA', 'EVALSHA']
    again = await claimer.running_tasks.claim_orphans(older_than=60)
    assert set(first) == set(again) == set(left)
    assert await claimer.running_tasks.claim_orphans(older_than=60) == []


@pytest.mark.asyncio
async def test_removing_many_records_is_one_script_and_spares_other_holders(
    claimer: RedisBackend, redis_url: str, namespace: str
) -> None:
    records = claimer.running_tasks
    mine = [RunningTask(f'task-{i}', 'alice', claimer.instance_id) for i in range(3)]
    for record in mine:
        await records.add(record)
    # task-9 was taken over by another replica meanwhile.
    await records.add(RunningTask('task-9', 'alice', 'other-replica'))
    seen = _record_commands(claimer, fail=set())
    await records.remove_many(
        [(r.task_id, r.instance_id) for r in mine] + [('task-9', claimer.instance_id)]
    )
    assert [c for c in seen if c != 'SCRIPT LOAD'] == ['EVALSHA']
    assert [r.task_id for r in await records.running()] == ['task-9']
    raw = Redis.from_url(redis_url)
    try:
        keys = KeySpace(namespace)
        # This replica holds nothing now: it left the holders' set.
        assert await raw.scard(keys.running_of(claimer.instance_id)) == 0
        assert await raw.smembers(keys.running_holders) == {
            encode_id('other-replica').encode()
        }
    finally:
        await raw.aclose()
