"""Redis's stream-length gauge, set at heartbeats while metrics are recorded."""

from __future__ import annotations

import asyncio

import pytest
from a2a.server.cluster import TaskVersion

from a2a_scale import ScaleSettings, telemetry
from a2a_scale.telemetry import instruments
from a2a_scale.testing import make_task, user_context
from a2a_scale_redis.backend import RedisBackend
from a2a_scale_redis.settings import RedisSettings
from telemetry_support import local_telemetry

pytestmark = pytest.mark.redis

ALICE = user_context('alice')


@pytest.mark.asyncio
async def test_the_longest_followed_log_is_a_gauge(
    redis_url: str, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    tel = local_telemetry()
    monkeypatch.setattr(instruments, 'get', lambda: tel.instruments)
    telemetry.set_enabled(True)
    backend = RedisBackend(
        ScaleSettings(namespace=namespace, backend='redis'),
        RedisSettings(url=redis_url),
    )
    try:
        async with backend:
            task = make_task('gauge')
            version = TaskVersion.MISSING
            for _ in range(3):
                version = await backend.task_store.save(
                    task, event=task, prev=None, prev_version=version, context=ALICE
                )
            events = backend.event_stream.subscribe(task.id, after=TaskVersion(0))
            for _ in range(3):
                await asyncio.wait_for(anext(events), 10)
            await telemetry.observe(backend)
            await events.aclose()
            await backend.purge()
    finally:
        telemetry.set_enabled(None)
    assert tel.gauge('a2a_scale.backend.stream_length') == 3
    assert tel.gauge('a2a_scale.replicas.live') == 1
