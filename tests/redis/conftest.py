"""Fixtures of the Redis tests: the shared server, private servers, a Cluster."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from redis.asyncio import Redis

from a2a_scale_redis.testing import RedisCluster3, RedisServer, redis_binaries
from service_support import need_service

REDIS_HOST = os.environ.get('A2A_SCALE_TEST_REDIS_HOST', '127.0.0.1')
REDIS_PORT = int(os.environ.get('A2A_SCALE_TEST_REDIS_PORT', '6379'))
REDIS_URL = f'redis://{REDIS_HOST}:{REDIS_PORT}/0'

RequireService = Callable[[str, bool, str], None]


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


@pytest.fixture
def redis_url(require_service: RequireService) -> str:
    """The shared redis-server (never flushed: tests use their own namespace)."""
    require_service('redis', _reachable(REDIS_HOST, REDIS_PORT), REDIS_URL)
    return REDIS_URL


@pytest.fixture
def namespace() -> str:
    """A namespace no other test uses."""
    return f'rt{uuid.uuid4().hex[:12]}'


@pytest_asyncio.fixture
async def raw(redis_url: str) -> AsyncIterator[Redis]:
    """A plain client of the shared server."""
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
def private_server(
    tmp_path: Path, require_service: RequireService
) -> Iterator[RedisServer]:
    """A redis-server of this test only, on a free port, with AOF on."""
    require_service('redis-server', redis_binaries() is not None, 'not on PATH')
    server = RedisServer(tmp_path / 'redis', appendonly=True)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope='session')
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster3]:
    """A local 3-master Redis Cluster, shared by the session."""
    need_service('redis-server', redis_binaries() is not None, 'not on PATH')
    cluster = RedisCluster3(tmp_path_factory.mktemp('cluster'))
    cluster.start()
    yield cluster
    cluster.stop()
