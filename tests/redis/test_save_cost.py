"""A save runs only the Redis commands it needs, and keeps every expiry right."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
import pytest_asyncio
from a2a.server.cluster import TaskVersion
from a2a.types.a2a_pb2 import ListTasksRequest, TaskState, TaskStatusUpdateEvent
from pydantic import SecretStr
from redis.asyncio import Redis

from a2a_scale import ScaleSettings
from a2a_scale.testing import make_task, user_context
from a2a_scale_redis.backend import RedisBackend
from a2a_scale_redis.settings import RedisSettings
from a2a_scale_redis.store import RedisTaskStore
from a2a_scale_redis.testing import RedisServer

pytestmark = pytest.mark.redis

ALICE = user_context('alice')
T0 = datetime(2026, 1, 1, tzinfo=UTC)
RETENTION_S = 3_600
ACTIVE_TTL_S = 86_400


@pytest_asyncio.fixture
async def setup(
    private_server: RedisServer, namespace: str
) -> AsyncIterator[tuple[RedisTaskStore, Redis]]:
    """The store of a started backend on a private server, and a raw client."""
    raw = Redis.from_url(private_server.url)
    backend = RedisBackend(
        ScaleSettings(
            namespace=namespace, backend='redis', retention_seconds=RETENTION_S
        ),
        RedisSettings(
            url=SecretStr(private_server.url), active_ttl_seconds=ACTIVE_TTL_S
        ),
    )
    async with backend:
        yield backend.task_store, raw
    await raw.aclose()


async def _calls(raw: Redis) -> int:
    """Commands run since the last reset (this call's INFO not counted)."""
    stats = await raw.info('commandstats')
    return sum(
        int(v['calls'])
        for k, v in stats.items()
        if k not in ('cmdstat_info', 'cmdstat_config|resetstat')
    )


async def _save(
    store: RedisTaskStore,
    raw: Redis,
    version: TaskVersion,
    state: int,
    at: datetime,
) -> tuple[TaskVersion, int]:
    """Saves task ``t`` in `state` at status time `at`; commands it ran."""
    task = make_task('t', context_id='ctx', state=state, at=at)
    event = TaskStatusUpdateEvent(
        task_id=task.id, context_id=task.context_id, status=task.status
    )
    await raw.config_resetstat()
    version = await store.save(
        task, event=event, prev=None, prev_version=version, context=ALICE
    )
    return version, await _calls(raw)


@pytest.mark.asyncio
async def test_a_new_status_timestamp_rewrites_the_index_but_not_the_expiry(
    setup: tuple[RedisTaskStore, Redis],
) -> None:
    store, raw = setup
    keys = store.keys.task('t')
    version, _ = await _save(
        store, raw, TaskVersion.MISSING, TaskState.TASK_STATE_SUBMITTED, T0
    )
    expiry = await raw.pexpiretime(keys.task)
    assert expiry > 0
    await asyncio.sleep(0.05)
    version, calls = await _save(
        store,
        raw,
        version,
        TaskState.TASK_STATE_WORKING,
        T0 + timedelta(seconds=1),
    )
    # Neither the state change nor the new timestamp moves the expiry (it
    # slipped by far less than an eighth of the TTL): no PEXPIREAT runs.
    assert await raw.pexpiretime(keys.task) == expiry
    assert await raw.pexpiretime(keys.events) == expiry
    stats = await raw.info('commandstats')
    assert 'cmdstat_pexpireat' not in stats
    # EVALSHA, HMGET, TIME, XADD + PUBLISH, feed XADD + PEXPIRE, HSET, and the
    # index: HGET, 3 x (ZREM + ZADD), HSET.
    assert calls <= 16
    # The index holds the new state and order.
    working = await store.list(
        ListTasksRequest(status=TaskState.TASK_STATE_WORKING), ALICE
    )
    assert [t.id for t in working.tasks] == ['t']
    submitted = await store.list(
        ListTasksRequest(status=TaskState.TASK_STATE_SUBMITTED), ALICE
    )
    assert submitted.tasks == []


@pytest.mark.asyncio
async def test_finishing_a_task_moves_every_expiry_to_the_retention(
    setup: tuple[RedisTaskStore, Redis],
) -> None:
    store, raw = setup
    keys = store.keys.task('t')
    version, _ = await _save(
        store, raw, TaskVersion.MISSING, TaskState.TASK_STATE_WORKING, T0
    )
    await raw.hset(keys.push, 'cfg', b'x')  # a push config expires with its task
    version, _ = await _save(
        store,
        raw,
        version,
        TaskState.TASK_STATE_COMPLETED,
        T0 + timedelta(seconds=1),
    )
    for key in (keys.task, keys.events, keys.push):
        ttl = await raw.pttl(key)
        assert RETENTION_S * 1000 - 5_000 < ttl <= RETENTION_S * 1000, key
    owner = store.keys.owner(store.owner_resolver(ALICE))
    deadline = await raw.zscore(owner.exp, '74')  # hex of the task id 't'
    assert deadline == await raw.pexpiretime(keys.task)


@pytest.mark.asyncio
async def test_settings_written_into_the_script_survive_any_namespace(
    redis_url: str, namespace: str
) -> None:
    raw = Redis.from_url(redis_url)
    odd = f'{namespace}"\\\'\n]]'
    store = RedisTaskStore(raw, namespace=odd, retention_seconds=RETENTION_S)
    try:
        task = make_task('t', state=TaskState.TASK_STATE_COMPLETED, at=T0)
        await store.save(
            task,
            event=task,
            prev=None,
            prev_version=TaskVersion.MISSING,
            context=ALICE,
        )
        owner = store.keys.owner(store.owner_resolver(ALICE))
        # The sweep registry named in the script is this namespace's.
        assert await raw.zscore(store.keys.sweep, owner.prefix) is not None
        stored = await store.get('t', ALICE)
        assert stored is not None
        assert stored.task.status.state == TaskState.TASK_STATE_COMPLETED
    finally:
        keys = store.keys.task('t')
        owner = store.keys.owner(store.owner_resolver(ALICE))
        await raw.delete(
            keys.task,
            keys.events,
            keys.push,
            store.keys.feed,
            store.keys.sweep,
            owner.all,
            owner.cur,
            owner.exp,
            owner.context('ctx-1'),
            owner.state(TaskState.TASK_STATE_COMPLETED),
        )
        await raw.aclose()
