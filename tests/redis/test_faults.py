"""Delivery under faults on real Redis: killed connections, a restart, errors.

Each test writes 2,000 events while faults fire and checks that every
subscriber receives each of them once and in order, within bounded waits.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from a2a.server.cluster import TaskVersion
from a2a.types.a2a_pb2 import TaskState, TaskStatusUpdateEvent
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from a2a_scale import ScaleSettings
from a2a_scale.testing import make_task, user_context
from a2a_scale_redis.backend import RedisBackend
from a2a_scale_redis.settings import RedisSettings
from a2a_scale_redis.testing import RedisServer, redis_binaries

pytestmark = [pytest.mark.redis, pytest.mark.slow]

ALICE = user_context('alice')
EVENTS = 2_000
SUBSCRIBERS = 3
# A port of this test module's own range (6900-6949), for its AOF server.
AOF_PORT = 6931
OPTIONS: dict[str, Any] = {'retries': 60, 'backoff_cap': 0.2, 'socket_timeout': 5.0}


def backend_for(url: str, namespace: str, **redis: Any) -> RedisBackend:
    return RedisBackend(
        ScaleSettings(namespace=namespace, backend='redis'),
        RedisSettings(url=url, **{**OPTIONS, **redis}),
    )


async def write(backend: RedisBackend, task_id: str, count: int) -> int:
    """Creates `task_id` and saves `count` status updates back to back."""
    task = make_task(task_id, state=TaskState.TASK_STATE_WORKING)
    version = await backend.task_store.save(
        task, event=task, prev=None, prev_version=TaskVersion.MISSING, context=ALICE
    )
    for i in range(count):
        event = TaskStatusUpdateEvent(
            task_id=task_id, context_id=task.context_id, status=task.status
        )
        event.metadata['step'] = str(i)
        version = await backend.task_store.save(
            task, event=event, prev=None, prev_version=version, context=ALICE
        )
    return int(version._value)


async def collect(backend: RedisBackend, task_id: str, until: int) -> list[int]:
    """The versions a subscriber from the start receives, up to `until`."""
    versions: list[int] = []
    stream = backend.event_stream.subscribe(task_id, after=TaskVersion(0))
    async for item in stream:
        versions.append(int(item.version._value))
        if versions[-1] >= until:
            break
    return versions


async def run_with(
    reader: RedisBackend, writer: RedisBackend, task_id: str, faults: Any
) -> None:
    """Writes EVENTS events while `faults()` runs; checks every subscriber."""
    readers = [
        asyncio.create_task(collect(reader, task_id, EVENTS + 1))
        for _ in range(SUBSCRIBERS)
    ]
    await asyncio.sleep(0.1)
    writing = asyncio.create_task(write(writer, task_id, EVENTS))
    injecting = asyncio.create_task(faults(writing))
    try:
        assert await asyncio.wait_for(writing, 60) == EVENTS + 1
        results = await asyncio.wait_for(asyncio.gather(*readers), 30)
    finally:
        injecting.cancel()
        for task in readers:
            task.cancel()
    expected = list(range(1, EVENTS + 2))
    for versions in results:
        assert len(versions) == len(expected), 'lost or duplicated events'
        assert versions == expected, 'reordered events'


@pytest.fixture
def aof_server(tmp_path: Path, require_service: Any) -> Iterator[RedisServer]:
    """A redis-server with appendonly yes, appendfsync always, on our own port."""
    require_service('redis-server', redis_binaries() is not None, 'not on PATH')
    server = RedisServer(tmp_path / 'aof', appendonly=True, port=AOF_PORT)
    server.start()
    yield server
    server.stop()


@pytest.mark.asyncio
async def test_client_kill_of_command_and_pubsub_connections_every_50ms(
    redis_url: str, namespace: str, raw: Redis
) -> None:
    a, b = backend_for(redis_url, namespace), backend_for(redis_url, namespace)
    async with a, b:
        kills = 0

        async def kill(writing: asyncio.Task[int]) -> None:
            nonlocal kills
            name = f'a2a-scale:{namespace}:{b.instance_id}'
            while not writing.done():
                await asyncio.sleep(0.05)
                for client in await raw.client_list():
                    if name in client.get('name', ''):
                        await raw.client_kill_filter(_id=client['id'])
                        kills += 1

        await run_with(b, a, 'killed', kill)
        # How many kills fit in the run depends on the machine's speed.
        assert kills >= 3
        assert b.hub.connections > 1


@pytest.mark.asyncio
async def test_redis_restart_with_aof(aof_server: RedisServer, namespace: str) -> None:
    a = backend_for(aof_server.url, namespace)
    b = backend_for(aof_server.url, namespace)
    async with a, b:

        async def restart(writing: asyncio.Task[int]) -> None:
            await asyncio.sleep(0.3)
            assert not writing.done()
            await asyncio.to_thread(aof_server.restart)

        await run_with(b, a, 'restarted', restart)
        assert b.hub.connections > 1


@pytest.mark.asyncio
async def test_injected_server_and_connection_errors_on_reads(
    redis_url: str, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Wake-ups carry no event here, so every delivery goes through reads.
    a = backend_for(redis_url, namespace, inline_event_bytes=0)
    b = backend_for(redis_url, namespace, inline_event_bytes=0)
    async with a, b:
        chance = random.Random(8)
        injected = {'server': 0, 'connection': 0}

        def flaky(name: str) -> None:
            original = getattr(b.client, name)

            async def call(*args: Any, **kwargs: Any) -> Any:
                roll = chance.random()
                if roll < 0.1:
                    injected['server'] += 1
                    raise ResponseError('BUSY Redis is busy running a script')
                if roll < 0.2:
                    injected['connection'] += 1
                    raise RedisConnectionError('injected: connection reset')
                return await original(*args, **kwargs)

            monkeypatch.setattr(b.client, name, call)

        for name in ('xrange', 'xrevrange', 'xinfo_stream'):
            flaky(name)

        async def nothing(writing: asyncio.Task[int]) -> None:
            del writing

        await run_with(b, a, 'errors', nothing)
        # How many reads there are depends on batching, so on timing.
        assert injected['server'] >= 3
        assert injected['connection'] >= 3
