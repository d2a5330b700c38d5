"""Builds redis-py clients from `RedisSettings`."""

from __future__ import annotations

import random
from typing import Any
from urllib.parse import urlsplit, urlunsplit

try:
    from redis.asyncio import BlockingConnectionPool, Redis
    from redis.asyncio.cluster import RedisCluster
    from redis.asyncio.retry import Retry
    from redis.backoff import ExponentialWithJitterBackoff, NoBackoff
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError
except ImportError as e:  # pragma: no cover - exercised without the extra
    raise ImportError(
        'The redis backend needs the redis driver. Install it with: '
        'pip install "a2a-scale[redis]"'
    ) from e

from a2a_scale_redis.settings import RedisSettings

AnyRedis = Redis | RedisCluster

RETRYABLE = (RedisConnectionError, RedisTimeoutError, ConnectionError, OSError)


def _retry(settings: RedisSettings) -> Retry:
    return Retry(
        ExponentialWithJitterBackoff(
            cap=settings.backoff_cap, base=settings.backoff_base
        ),
        settings.retries,
        supported_errors=(RedisConnectionError, RedisTimeoutError),
    )


def _common(settings: RedisSettings, client_name: str | None) -> dict[str, Any]:
    return {
        'client_name': client_name,
        'socket_timeout': settings.socket_timeout,
        'socket_connect_timeout': settings.connect_timeout,
        'socket_keepalive': True,
        'retry': _retry(settings),
        'health_check_interval': 30,
    }


def create_client(
    settings: RedisSettings, *, client_name: str | None = None
) -> AnyRedis:
    """Builds the command client (a pool; no I/O until first use).

    The pool blocks for up to ``pool_timeout`` seconds when all of its
    ``max_connections`` are busy instead of failing, and commands time out
    after ``socket_timeout``: subscriptions never hold a pooled connection
    while they wait, so neither limit caps how many a replica serves.
    """
    url = settings.url.get_secret_value()
    if settings.cluster:
        return RedisCluster.from_url(
            url,
            max_connections=settings.max_connections,
            **_common(settings, client_name),
        )
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=settings.max_connections,
        timeout=settings.pool_timeout,
        **_common(settings, client_name),
    )
    return Redis(connection_pool=pool)


def create_pubsub_client(
    settings: RedisSettings, client: AnyRedis, *, client_name: str | None = None
) -> Redis:
    """Builds the client whose one connection carries this replica's Pub/Sub.

    On a Cluster, ``PUBLISH`` reaches every node, so the connection goes to
    one node picked at random.
    """
    url = settings.url.get_secret_value()
    if isinstance(client, RedisCluster):
        nodes = client.get_nodes()
        if nodes:
            node = random.choice(nodes)  # noqa: S311 - spreading load only
            parts = urlsplit(url)
            auth = parts.netloc.rpartition('@')[0]
            netloc = (
                f'{auth}@{node.host}:{node.port}'
                if auth
                else (f'{node.host}:{node.port}')
            )
            url = urlunsplit(parts._replace(netloc=netloc, path=''))
    options = _common(settings, client_name)
    # Failures must reach the hub, which re-subscribes and lets readers catch
    # up; a silent reconnect inside redis-py would hide lost wake-ups.
    options['retry'] = Retry(NoBackoff(), 0)
    options['health_check_interval'] = 0
    return Redis.from_url(url, max_connections=2, **options)
