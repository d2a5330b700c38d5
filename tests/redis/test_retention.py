"""Retention: finished tasks, their streams and index entries expire."""

from __future__ import annotations

import asyncio
import time

import pytest
from a2a.server.cluster import TaskVersion
from a2a.types.a2a_pb2 import ListTasksRequest, TaskState, TaskStatusUpdateEvent
from redis.asyncio import Redis

from a2a_scale import ScaleSettings
from a2a_scale.testing import make_task, user_context
from a2a_scale_redis.backend import RedisBackend
from a2a_scale_redis.settings import RedisSettings
from a2a_scale_redis.testing import RedisCluster3, RedisServer

pytestmark = [pytest.mark.redis, pytest.mark.slow]

ALICE = user_context('alice')


@pytest.mark.asyncio
async def test_memory_returns_to_baseline_after_retention(
    private_server: RedisServer, namespace: str
) -> None:
    raw = Redis.from_url(private_server.url)
    backend = RedisBackend(
        ScaleSettings(namespace=namespace, backend='redis', retention_seconds=2),
        RedisSettings(url=private_server.url, active_ttl_seconds=600),
    )
    try:
        await raw.config_set('hz', 50)  # expire actively and promptly
        async with backend:
            store = backend.task_store
            # Warm up (scripts loaded, connections open) before the baseline.
            warm = make_task('warm-up')
            await store.save(
                warm,
                event=warm,
                prev=None,
                prev_version=TaskVersion.MISSING,
                context=ALICE,
            )
            await store.delete('warm-up', ALICE)
            await raw.delete(store.keys.feed)
            assert await raw.dbsize() == 1  # the replica registry
            baseline = (await raw.info('memory'))['used_memory']
            for i in range(100):
                task = make_task(f'task-{i}', context_id=f'ctx-{i % 7}')
                version = await store.save(
                    task,
                    event=task,
                    prev=None,
                    prev_version=TaskVersion.MISSING,
                    context=ALICE,
                )
                for state in (
                    TaskState.TASK_STATE_WORKING,
                    TaskState.TASK_STATE_COMPLETED,
                ):
                    task.status.state = state
                    event = TaskStatusUpdateEvent(
                        task_id=task.id, context_id=task.context_id, status=task.status
                    )
                    version = await store.save(
                        task,
                        event=event,
                        prev=None,
                        prev_version=version,
                        context=ALICE,
                    )
            assert (await store.list(ListTasksRequest(), ALICE)).total_size > 0
            assert await raw.dbsize() > 10
            # Unfinished tasks are kept: only finished ones expire.
            live = make_task(
                'still-running', context_id='live', state=TaskState.TASK_STATE_WORKING
            )
            await store.save(
                live,
                event=live,
                prev=None,
                prev_version=TaskVersion.MISSING,
                context=ALICE,
            )
            deadline = time.monotonic() + 30
            while (await store.list(ListTasksRequest(), ALICE)).total_size > 1:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.2)
            listed = await store.list(ListTasksRequest(), ALICE)
            assert [t.id for t in listed.tasks] == ['still-running']
            assert listed.total_size == 1
            await store.delete('still-running', ALICE)
            deadline = time.monotonic() + 30
            while await raw.dbsize() > 1:
                assert time.monotonic() < deadline, await raw.keys('*')
                await asyncio.sleep(0.2)
            used = (await raw.info('memory'))['used_memory']
            assert used - baseline < 64 * 1024, (baseline, used)
        assert await raw.dbsize() == 0
    finally:
        await raw.aclose()


async def _finish_many(
    backend: RedisBackend, count: int, *, concurrency: int = 48
) -> None:
    """Creates `count` tasks and completes them, `concurrency` at a time."""
    store = backend.task_store
    queue = list(range(count))

    async def worker() -> None:
        while queue:
            i = queue.pop(0)
            task = make_task(f'done-{i:06d}', context_id=f'ctx-{i % 5}')
            version = await store.save(
                task,
                event=task,
                prev=None,
                prev_version=TaskVersion.MISSING,
                context=ALICE,
            )
            task.status.state = TaskState.TASK_STATE_COMPLETED
            task.status.timestamp.GetCurrentTime()
            event = TaskStatusUpdateEvent(
                task_id=task.id, context_id=task.context_id, status=task.status
            )
            await store.save(
                task, event=event, prev=None, prev_version=version, context=ALICE
            )

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def _data_memory(raw: Redis) -> int:
    """The memory of the data set (not of client buffers nor the AOF)."""
    stats = await raw.memory_stats()
    return int(stats['dataset.bytes'])


async def _start_running(backend: RedisBackend) -> None:
    live = make_task(
        'still-running', context_id='live', state=TaskState.TASK_STATE_WORKING
    )
    await backend.task_store.save(
        live, event=live, prev=None, prev_version=TaskVersion.MISSING, context=ALICE
    )


@pytest.mark.asyncio
async def test_a_list_never_counts_or_pages_over_expired_tasks(
    private_server: RedisServer, namespace: str
) -> None:
    raw = Redis.from_url(private_server.url)
    backend = RedisBackend(
        ScaleSettings(
            namespace=namespace,
            backend='redis',
            retention_seconds=12,
            heartbeat_interval=3600,  # no periodic cleanup: the list alone
        ),
        RedisSettings(url=private_server.url, active_ttl_seconds=600),
    )
    try:
        await raw.config_set('hz', 50)
        async with backend:
            await _start_running(backend)
            # More than a list cleans in one step expire after the last save.
            await _finish_many(backend, 1_500)
            last = backend.task_store.keys.task('done-001499').task
            await asyncio.sleep(max(0, await raw.pttl(last)) / 1000 + 0.5)
            for request in (
                ListTasksRequest(),
                ListTasksRequest(page_size=1),
                ListTasksRequest(context_id='ctx-1'),
                ListTasksRequest(status=TaskState.TASK_STATE_COMPLETED),
            ):
                listed = await backend.task_store.list(request, ALICE)
                expected = (
                    [] if request.context_id or request.status else ['still-running']
                )
                assert [t.id for t in listed.tasks] == expected, request
                assert listed.total_size == len(expected), request
                assert not listed.next_page_token, request
    finally:
        await raw.aclose()


@pytest.mark.asyncio
async def test_the_indexes_shrink_with_the_tasks_without_any_list(
    private_server: RedisServer, namespace: str
) -> None:
    raw = Redis.from_url(private_server.url)
    backend = RedisBackend(
        ScaleSettings(
            namespace=namespace,
            backend='redis',
            retention_seconds=2,
            heartbeat_interval=0.5,  # the replicas' periodic loop cleans up
        ),
        RedisSettings(url=private_server.url, active_ttl_seconds=600),
    )
    try:
        await raw.config_set('hz', 50)
        async with backend:
            await _start_running(backend)
            # The baseline has as many connections open as the writers use.
            await asyncio.gather(
                *(backend.task_store.get('none', ALICE) for _ in range(48))
            )
            await raw.delete(backend.task_store.keys.feed)
            keys_before = await raw.dbsize()
            baseline = await _data_memory(raw)
            await _finish_many(backend, 3_000)
            peak = await _data_memory(raw)
            assert peak - baseline > 1_000_000
            deadline = time.monotonic() + 60
            while (await raw.dbsize()) > keys_before + 1:  # + the cleanup's list
                assert time.monotonic() < deadline, [
                    (k, await raw.type(k)) for k in await raw.keys('*')
                ]
                await asyncio.sleep(0.25)
            await raw.delete(backend.task_store.keys.feed)
            used = await _data_memory(raw)
            assert used - baseline < 256 * 1024, (baseline, peak, used)
            listed = await backend.task_store.list(ListTasksRequest(), ALICE)
            assert [t.id for t in listed.tasks] == ['still-running']
            assert listed.total_size == 1
    finally:
        await raw.aclose()


@pytest.mark.asyncio
async def test_the_indexes_shrink_on_a_cluster(
    redis_cluster: RedisCluster3, namespace: str
) -> None:
    backend = RedisBackend(
        ScaleSettings(
            namespace=namespace,
            backend='redis',
            retention_seconds=1,
            heartbeat_interval=0.3,
        ),
        RedisSettings(url=redis_cluster.url, cluster=True, active_ttl_seconds=600),
    )
    async with backend:
        client = backend.client
        await _start_running(backend)
        await _finish_many(backend, 300, concurrency=16)
        owner = backend.task_store.keys.owner('alice')
        assert await client.zcard(owner.all) > 1
        deadline = time.monotonic() + 30
        while await client.zcard(owner.all) > 1 or await client.zcard(owner.exp) > 1:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.2)
        assert await client.hlen(owner.cur) == 1
        assert await client.zcard(backend.task_store.keys.sweep) == 1
        listed = await backend.task_store.list(ListTasksRequest(), ALICE)
        assert [t.id for t in listed.tasks] == ['still-running']
        assert listed.total_size == 1
