"""The cluster-wide event feed with consumer groups."""

from __future__ import annotations

import asyncio

import pytest
from a2a.server.cluster import TaskVersion

from a2a_scale import ScaleSettings
from a2a_scale.testing import make_task, user_context
from a2a_scale_redis.backend import RedisBackend
from a2a_scale_redis.feed import RedisEventFeed
from a2a_scale_redis.settings import RedisSettings

pytestmark = pytest.mark.redis

ALICE = user_context('alice')


async def write_tasks(backend: RedisBackend, count: int) -> set[tuple[str, int]]:
    written = set()
    for i in range(count):
        task = make_task(f'feed-{i}')
        version = await backend.task_store.save(
            task, event=task, prev=None, prev_version=TaskVersion.MISSING, context=ALICE
        )
        written.add((task.id, int(version._value)))
    return written


@pytest.mark.asyncio
async def test_group_splits_events_and_reclaims_a_dead_consumers_entries(
    redis_url: str, namespace: str
) -> None:
    backend = RedisBackend(
        ScaleSettings(namespace=namespace, backend='redis'),
        RedisSettings(url=redis_url),
    )
    async with backend:
        options = {'block_ms': 100, 'claim_idle_ms': 200, 'batch': 7}
        dead = backend.event_feed('audit', consumer='dead', **options)
        alive = backend.event_feed('audit', consumer='alive', **options)
        other = backend.event_feed('dashboard', consumer='solo', **options)
        for feed in (dead, alive, other):
            await feed.ensure_group()
        written = await write_tasks(backend, 20)
        lost = await dead.read()  # read, never acknowledged: the consumer dies
        assert len(lost) == 7
        seen: list[tuple[str, int]] = []

        async def drain(feed: RedisEventFeed, into: list[tuple[str, int]]) -> None:
            while len(set(into)) < 20:
                entries = await feed.read()
                into.extend((e.task_id, e.version) for e in entries)
                for e in entries:
                    assert e.event().id == e.task_id
                await feed.ack(*entries)

        everything: list[tuple[str, int]] = []
        await asyncio.wait_for(
            asyncio.gather(drain(alive, seen), drain(other, everything)), 20
        )
        assert set(seen) == written  # the dead consumer's 7 were reclaimed
        assert set(everything) == written  # another group sees every event
        assert len(everything) == 20
        pending = await backend.client.xpending(dead.key, 'audit')
        assert pending['pending'] == 0
