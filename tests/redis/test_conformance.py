"""The shared conformance suite on real Redis, in both modes."""

from __future__ import annotations

from typing import ClassVar

import pytest
from redis.asyncio import Redis

from a2a_scale import Backend, ScaleSettings
from a2a_scale.testing import BackendConformance, FaultPlan
from a2a_scale_redis.backend import RedisBackend
from a2a_scale_redis.settings import RedisSettings
from a2a_scale_redis.testing import inject_faults

pytestmark = pytest.mark.redis


class RedisFactory:
    """Builds Redis backends on the shared test server."""

    mode: ClassVar[str] = 'streams'

    @pytest.fixture(autouse=True)
    def _server(self, redis_url: str) -> None:
        self.url = redis_url

    def create_backend(self, namespace: str) -> Backend:
        return RedisBackend(
            ScaleSettings(namespace=namespace, backend='redis'),
            RedisSettings(url=self.url, mode=self.mode),
        )

    def create_backend_retaining(self, namespace: str, events: int) -> Backend:
        return RedisBackend(
            ScaleSettings(namespace=namespace, backend='redis'),
            RedisSettings(url=self.url, mode=self.mode, stream_maxlen=events),
        )

    def inject_faults(self, backend: Backend, plan: FaultPlan) -> None:
        inject_faults(backend, plan)

    async def destroy_namespace(self, namespace: str) -> None:
        client = Redis.from_url(self.url)
        try:
            keys = [
                k async for k in client.scan_iter(match=f'*{namespace}*', count=1000)
            ]
            if keys:
                await client.delete(*keys)
        finally:
            await client.aclose()

    def subscription_count(self, backend: Backend, task_id: str) -> int | None:
        assert isinstance(backend, RedisBackend)
        watch = backend.event_stream._watches.get(
            backend.event_stream.keys.task(task_id).channel
        )
        return len(watch.window.cursors) if watch is not None else 0


class TestRedisStreams(RedisFactory, BackendConformance):
    """Streams mode: durable and replayable."""


class TestRedisPubSub(RedisFactory, BackendConformance):
    """Pub/Sub mode: live only."""

    mode = 'pubsub'
    supports_replay = False
