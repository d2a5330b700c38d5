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
from a2a_scale_redis.testing import RedisServer

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
            live = make_task('still-running', state=TaskState.TASK_STATE_WORKING)
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
