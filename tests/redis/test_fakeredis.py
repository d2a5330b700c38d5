"""The conformance suite on fakeredis (with Lua via lupa), no server needed."""

from __future__ import annotations

import importlib.util

import pytest

from a2a_scale import Backend, ScaleSettings
from a2a_scale.testing import BackendConformance
from a2a_scale_redis.backend import RedisBackend
from a2a_scale_redis.settings import RedisSettings

if importlib.util.find_spec('lupa') is None:  # fakeredis runs Lua through lupa
    pytest.skip('fakeredis needs lupa for Lua scripts', allow_module_level=True)

from fakeredis import FakeServer
from fakeredis.aioredis import FakeRedis


class FakeRedisFactory:
    """Replicas of one namespace share one in-process fake server."""

    _servers: dict[str, FakeServer]

    def create_backend(self, namespace: str) -> Backend:
        servers = type(self).__dict__.get('_servers')
        if servers is None:
            servers = {}
            type(self)._servers = servers
        server = servers.setdefault(namespace, FakeServer())
        return RedisBackend(
            ScaleSettings(namespace=namespace, backend='redis'),
            RedisSettings(),
            client=FakeRedis(server=server),
            pubsub_client_factory=lambda: FakeRedis(server=server),
        )

    async def destroy_namespace(self, namespace: str) -> None:
        type(self)._servers.pop(namespace, None)


class TestFakeRedis(FakeRedisFactory, BackendConformance):
    """Streams mode on fakeredis."""
