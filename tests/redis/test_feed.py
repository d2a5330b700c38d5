"""The cluster-wide event feed with consumer groups."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from a2a.server.cluster import TaskVersion
from redis.exceptions import ConnectionError as RedisConnectionError

from a2a_scale import ScaleSettings
from a2a_scale.testing import make_task, user_context
from a2a_scale_redis.backend import RedisBackend
from a2a_scale_redis.feed import RedisEventFeed
from a2a_scale_redis.settings import RedisSettings
from a2a_scale_redis.testing import RedisCluster3

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


@pytest.mark.asyncio
async def test_reaping_a_dead_replica_releases_its_feed_group_and_consumers(
    redis_url: str, namespace: str
) -> None:
    """Per-instance groups and idle consumers of the dead go; pending entries stay."""
    backend = RedisBackend(
        ScaleSettings(
            namespace=namespace,
            backend='redis',
            heartbeat_interval=60,
            reap_after=0.2,
        ),
        RedisSettings(url=redis_url),
    )
    async with backend:
        client, me = backend.client, backend.instance_id
        dead_id = 'dead-replica'
        own = backend.event_feed(dead_id, consumer=dead_id)  # its own group
        shared_idle = backend.event_feed('audit', consumer=dead_id)
        shared_busy = backend.event_feed('billing', consumer=dead_id)
        for feed in (own, shared_idle, shared_busy):
            await feed.ensure_group()
        # This live replica's consumer: idle, nothing pending, and kept.
        await client.xgroup_createconsumer(own.key, 'audit', me)
        await write_tasks(backend, 3)
        await shared_idle.ack(*await shared_idle.read())  # nothing pending
        assert len(await shared_busy.read()) == 3  # left pending
        # The dead replica's last heartbeat is long past.
        await client.zadd(backend.lifecycle._key, {dead_id: 1.0})
        await asyncio.sleep(0.3)  # its consumers are idle for longer than reap_after

        assert await backend.lifecycle.reap(older_than=0.2) == [dead_id]

        groups = {g['name'].decode() for g in await client.xinfo_groups(own.key)}
        assert groups == {'audit', 'billing'}
        audit = {
            c['name'].decode() for c in await client.xinfo_consumers(own.key, 'audit')
        }
        assert audit == {me}
        billing = await client.xinfo_consumers(own.key, 'billing')
        assert [(c['name'].decode(), c['pending']) for c in billing] == [(dead_id, 3)]
        assert await backend.lifecycle.live_instances() == [me]


@pytest.mark.asyncio
async def test_a_malformed_feed_entry_is_acknowledged_and_logged_not_raised(
    redis_url: str, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    backend = RedisBackend(
        ScaleSettings(namespace=namespace, backend='redis'),
        RedisSettings(url=redis_url),
    )
    async with backend:
        feed = backend.event_feed('audit', consumer='c1', block_ms=100)
        await feed.ensure_group()
        bad_id = await backend.client.xadd(feed.key, {'t': 'zz', 'e': b'secret-body'})
        written = await write_tasks(backend, 2)
        got: set[tuple[str, int]] = set()
        for _ in range(3):
            entries = await feed.read()
            got |= {(e.task_id, e.version) for e in entries}
            await feed.ack(*entries)
        assert got == written
        pending = await backend.client.xpending(feed.key, 'audit')
        assert pending['pending'] == 0
        assert bad_id.decode() in caplog.text
        assert 'secret-body' not in caplog.text


@pytest.mark.asyncio
@pytest.mark.slow
async def test_cluster_feed_append_after_a_save_is_at_least_once(
    redis_cluster: RedisCluster3, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = RedisBackend(
        ScaleSettings(namespace=namespace, backend='redis'),
        RedisSettings(url=redis_cluster.url, cluster=True),
    )
    async with backend:
        client = backend.client
        real_pipeline = client.pipeline
        failures = [2]

        def failing_pipeline(*args: Any, **kwargs: Any) -> Any:
            pipe = real_pipeline(*args, **kwargs)
            execute = pipe.execute

            async def flaky(*a: Any, **k: Any) -> Any:
                if failures[0] > 0:
                    failures[0] -= 1
                    raise RedisConnectionError('injected: connection reset')
                return await execute(*a, **k)

            pipe.execute = flaky
            return pipe

        monkeypatch.setattr(client, 'pipeline', failing_pipeline)
        monkeypatch.setattr(client, 'xadd', _failing_once(client.xadd))
        written = await write_tasks(backend, 3)
        feed = backend.event_feed('audit', consumer='c1', block_ms=100)
        await feed.ensure_group(from_start=True)
        got = {(e.task_id, e.version) for e in await feed.read()}
        assert got == written


def _failing_once(call: Any) -> Any:
    failed = [False]

    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not failed[0]:
            failed[0] = True
            raise RedisConnectionError('injected: connection reset')
        return await call(*args, **kwargs)

    return wrapper
