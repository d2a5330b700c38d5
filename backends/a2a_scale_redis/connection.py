"""Builds redis-py clients from `RedisSettings`, or around an application's.

One URL gives the address (``redis://``, ``rediss://`` or ``unix://``),
credentials and db; the settings give timeouts, retries, TLS files and
Sentinel. The Pub/Sub client is always derived from the command client, so
it reaches the same server (or Sentinel master, or a Cluster node) with the
same credentials, whether the command client came from settings or from the
application.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import random
import re
from collections.abc import Iterable
from typing import Any

from a2a_scale_redis.settings import RedisSettings

try:
    import redis
except ImportError as e:  # pragma: no cover - exercised without the extra
    raise ImportError(
        'The redis backend needs the redis driver (redis-py), which is not '
        'installed. Install it with: pip install "a2a-scale[redis]"',
        name='redis',
    ) from e


def _declared_redis() -> str:
    """The redis-py requirement this a2a-scale declares, e.g. ``redis>=6,<9``."""
    try:
        requirements = importlib.metadata.requires('a2a-scale') or []
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover
        requirements = []
    for requirement in requirements:
        spec, _, marker = requirement.partition(';')
        match = re.fullmatch(r'\s*redis\s*([<>=!~, .\d*]*)', spec)
        if match and 'redis' in marker:
            specifiers = [p.strip() for p in match.group(1).split(',') if p.strip()]
            specifiers.sort(key=lambda p: not p.startswith('>'))
            return 'redis' + ','.join(specifiers)
    return 'redis'  # pragma: no cover - metadata always lists it


def _missing(error: ImportError) -> str:
    """``module.name`` of what an ``ImportError`` could not import."""
    match = re.search(r"cannot import name '(\w+)' from '([\w.]+)'", str(error))
    return f'{match.group(2)}.{match.group(1)}' if match else str(error.name)


try:
    from redis.asyncio import BlockingConnectionPool, ConnectionPool, Redis
    from redis.asyncio.cluster import RedisCluster
    from redis.asyncio.connection import (
        Connection,
        SSLConnection,
        UnixDomainSocketConnection,
        parse_url,
    )
    from redis.asyncio.retry import Retry
    from redis.asyncio.sentinel import (
        MasterNotFoundError,
        Sentinel,
        SentinelConnectionPool,
        SentinelManagedConnection,
    )
    from redis.backoff import ExponentialWithJitterBackoff, NoBackoff
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError
except ImportError as e:  # pragma: no cover - exercised with an old redis-py
    required = _declared_redis()
    raise ImportError(
        f'The redis backend does not support the installed redis-py '
        f'{redis.__version__}: it lacks {_missing(e)}. This a2a-scale needs '
        f'{required}; upgrade it with: pip install "{required}"',
        name=e.name,
    ) from e

__all__ = [
    'RETRYABLE',
    'AnyRedis',
    'BlockingSentinelConnectionPool',
    'MasterNotFoundError',
    'RedisTimeoutError',
    'close_client',
    'connection_options',
    'create_client',
    'create_pubsub_client',
    'describe_client',
    'is_cluster',
]

AnyRedis = Redis | RedisCluster

RETRYABLE = (RedisConnectionError, RedisTimeoutError, ConnectionError, OSError)


class CheapWriteTimeout:
    """Bounds each write by ``socket_timeout`` without a task per command.

    redis-py wraps every write in ``asyncio.wait_for``, which on Python 3.11
    runs it in a new task: about a fifth of the client's CPU per save and
    get. This mixin writes under ``asyncio.timeout`` instead, with the same
    outcome: a write that takes longer fails with redis-py's `TimeoutError`
    (retried like any other), a socket error with its `ConnectionError`, and
    either drops the connection. Connecting and health checks are
    redis-py's own.
    """

    socket_timeout: float | None
    _writer: asyncio.StreamWriter | None

    async def send_packed_command(
        self, command: bytes | str | Iterable[bytes], check_health: bool = True
    ) -> None:
        """Writes `command` (packed), failing after ``socket_timeout``."""
        if not self.socket_timeout or self._writer is None:
            await super().send_packed_command(command, check_health)  # type: ignore[misc]
            return
        if check_health:
            await self.check_health()  # type: ignore[attr-defined]
        writer = self._writer
        if writer is None:  # the health check dropped the connection
            await super().send_packed_command(command, False)
            return
        if isinstance(command, str):
            command = command.encode()
        if isinstance(command, bytes):
            command = [command]
        try:
            writer.writelines(command)
            if writer.transport.get_write_buffer_size():
                # Not all written yet: waiting for room is what may hang.
                async with asyncio.timeout(self.socket_timeout):
                    await writer.drain()
            else:
                await writer.drain()
        except TimeoutError:  # before OSError: it is one
            await self.disconnect(nowait=True)  # type: ignore[attr-defined]
            raise RedisTimeoutError('Timeout writing to socket') from None
        except OSError as e:
            await self.disconnect(nowait=True)  # type: ignore[attr-defined]
            raise RedisConnectionError(f'Error while writing to socket: {e}') from e
        except BaseException:
            # A write cut short leaves the connection unusable.
            await self.disconnect(nowait=True)  # type: ignore[attr-defined]
            raise


class TCPConnection(CheapWriteTimeout, Connection):
    """A TCP connection with `CheapWriteTimeout`."""


class TLSConnection(CheapWriteTimeout, SSLConnection):
    """A TLS connection with `CheapWriteTimeout`."""


class UnixConnection(CheapWriteTimeout, UnixDomainSocketConnection):
    """A unix socket connection with `CheapWriteTimeout`."""


_CHEAP = {
    Connection: TCPConnection,
    SSLConnection: TLSConnection,
    UnixDomainSocketConnection: UnixConnection,
}


class MasterFollowingConnection(CheapWriteTimeout, SentinelManagedConnection):
    """A Sentinel connection that asks for the master whenever it reconnects.

    From redis-py 6 on, a connection dropped in the middle of a command
    reconnects, on retry, to the address it used before: after a failover
    that is the demoted master, where a script may read an empty or stale
    replica, and writes fail. This connection resolves the master first.
    """

    _resolving = False

    async def connect_to(self, address: tuple[str, int]) -> None:
        """Connects to `address`, the master Sentinel just named."""
        self._resolving = True
        try:
            await super().connect_to(address)
        finally:
            self._resolving = False

    async def connect_check_health(
        self, check_health: bool = True, retry_socket_connect: bool = True
    ) -> None:
        """Connects, to the current master unless Sentinel just named it."""
        if self._resolving or self.is_connected or not self.connection_pool.is_master:
            await super().connect_check_health(
                check_health=check_health, retry_socket_connect=retry_socket_connect
            )
            return
        await self.connect()


class MasterFollowingSSLConnection(MasterFollowingConnection, SSLConnection):
    """`MasterFollowingConnection` over TLS."""


class BlockingSentinelConnectionPool(SentinelConnectionPool, BlockingConnectionPool):
    """A Sentinel pool that waits for a free connection instead of failing.

    Connections go to the master Sentinel names, and go back to Sentinel
    whenever they reconnect; when all are busy, callers wait up to
    ``timeout`` seconds like with `BlockingConnectionPool`.
    """

    def __init__(self, service_name: str, sentinel_manager: Any, **kwargs: Any) -> None:
        """Takes `SentinelConnectionPool`'s arguments."""
        kwargs.setdefault(
            'connection_class',
            MasterFollowingSSLConnection
            if kwargs.get('ssl')
            else MasterFollowingConnection,
        )
        super().__init__(service_name, sentinel_manager, **kwargs)


def _retry(settings: RedisSettings) -> Retry:
    return Retry(
        ExponentialWithJitterBackoff(
            cap=settings.backoff_cap, base=settings.backoff_base
        ),
        settings.retries,
        supported_errors=(RedisConnectionError, RedisTimeoutError),
    )


def _socket_options(settings: RedisSettings, *, tcp: bool) -> dict[str, Any]:
    options: dict[str, Any] = {
        'socket_timeout': settings.socket_timeout,
        'socket_connect_timeout': settings.connect_timeout,
    }
    if tcp:  # a unix socket has no keepalive option
        options['socket_keepalive'] = True
    return options


def _tls_options(settings: RedisSettings) -> dict[str, Any]:
    def path(value: Any) -> str | None:
        return None if value is None else str(value)

    return {
        'ssl_ca_certs': path(settings.tls_ca_file),
        'ssl_certfile': path(settings.tls_cert_file),
        'ssl_keyfile': path(settings.tls_key_file),
        'ssl_cert_reqs': 'required' if settings.tls_verify else 'none',
        'ssl_check_hostname': settings.tls_verify,
    }


def connection_options(
    settings: RedisSettings, *, client_name: str | None = None
) -> dict[str, Any]:
    """The connection keywords of the command client (no I/O).

    They include ``connection_class`` (TCP, TLS or unix socket) and the
    address from the URL.
    """
    url = settings.url.get_secret_value()
    options: dict[str, Any] = dict(parse_url(url))
    tcp = options.get('connection_class') is not UnixDomainSocketConnection
    kind = options.get('connection_class', Connection)
    options['connection_class'] = _CHEAP.get(kind, kind)
    options.update(_socket_options(settings, tcp=tcp))
    options.update(
        client_name=client_name, retry=_retry(settings), health_check_interval=30
    )
    if url.startswith('rediss:'):
        options.update(_tls_options(settings))
    return options


def create_client(
    settings: RedisSettings, *, client_name: str | None = None
) -> AnyRedis:
    """Builds the command client (a pool; no I/O until first use).

    The pool blocks for up to ``pool_timeout`` seconds when all of its
    ``max_connections`` are busy instead of failing, and commands time out
    after ``socket_timeout``: subscriptions never hold a pooled connection
    while they wait, so neither limit caps how many a replica serves.
    """
    if settings.cluster:
        tls = settings.url.get_secret_value().startswith('rediss:')
        return RedisCluster.from_url(
            settings.url.get_secret_value(),
            max_connections=settings.max_connections,
            client_name=client_name,
            retry=_retry(settings),
            health_check_interval=30,
            **_socket_options(settings, tcp=True),
            **(_tls_options(settings) if tls else {}),
        )
    options = connection_options(settings, client_name=client_name)
    if settings.sentinels:
        return _sentinel_client(settings, options)
    pool = BlockingConnectionPool(
        max_connections=settings.max_connections,
        timeout=settings.pool_timeout,
        **options,
    )
    return Redis.from_pool(pool)


def _sentinel_client(settings: RedisSettings, options: dict[str, Any]) -> Redis:
    """A client of the master that Sentinel names, re-resolved on failover."""
    for address in ('host', 'port', 'connection_class'):
        options.pop(address, None)
    if settings.url.get_secret_value().startswith('rediss:'):
        options['ssl'] = True
    # No retries on a sentinel: discovery moves on to the next one, and the
    # master's pool retries the whole connection.
    sentinel_options: dict[str, Any] = {
        **_socket_options(settings, tcp=True),
        'retry': Retry(NoBackoff(), 0),
    }
    if settings.sentinel_password is not None:
        sentinel_options['password'] = settings.sentinel_password.get_secret_value()
    manager = Sentinel(
        settings.sentinel_addresses, sentinel_kwargs=sentinel_options, **options
    )
    client: Redis = manager.master_for(
        settings.sentinel_master or '',
        connection_pool_class=BlockingSentinelConnectionPool,
        max_connections=settings.max_connections,
        timeout=settings.pool_timeout,
    )
    return client


def is_cluster(client: AnyRedis) -> bool:
    """Whether `client` talks to a Redis Cluster."""
    return isinstance(client, RedisCluster)


def describe_client(client: AnyRedis) -> str:
    """Where `client` connects (no credentials), for messages."""
    if isinstance(client, RedisCluster):
        nodes = client.get_nodes() or []
        hosts = ','.join(f'{n.host}:{n.port}' for n in nodes[:3])
        return f'Redis Cluster {hosts}'.rstrip()
    pool = client.connection_pool
    if isinstance(pool, SentinelConnectionPool):
        return f'Sentinel master {pool.service_name!r}'
    kwargs = pool.connection_kwargs
    if 'path' in kwargs:
        return f'unix://{kwargs["path"]}'
    scheme = 'rediss' if 'ssl_cert_reqs' in kwargs else 'redis'
    host = kwargs.get('host', 'localhost')
    return f'{scheme}://{host}:{kwargs.get("port", 6379)}/{kwargs.get("db", 0)}'


async def close_client(client: AnyRedis) -> None:
    """Closes a client built by `create_client`, with its sentinel clients."""
    pool = getattr(client, 'connection_pool', None)
    await client.aclose()
    if isinstance(pool, SentinelConnectionPool):
        for sentinel in pool.sentinel_manager.sentinels:
            await sentinel.aclose()


def create_pubsub_client(client: AnyRedis, *, client_name: str | None = None) -> Redis:
    """Builds the client whose one connection carries this replica's Pub/Sub.

    It connects where `client` connects, with the same credentials and TLS
    options. On a Cluster, ``PUBLISH`` reaches every node, so the connection
    goes to one node picked at random. Under Sentinel it follows the master.
    """
    pool: ConnectionPool
    # Failures must reach the hub, which re-subscribes and lets readers catch
    # up; a silent reconnect inside redis-py would hide lost wake-ups.
    overrides = {
        'retry': Retry(NoBackoff(), 0),
        'health_check_interval': 0,
        'client_name': client_name,
    }
    if isinstance(client, RedisCluster):
        nodes = client.get_nodes()
        if not nodes:
            raise RedisConnectionError('the Redis Cluster client knows no node yet')
        node = random.choice(nodes)  # noqa: S311 - spreading load only
        pool = ConnectionPool(
            connection_class=node.connection_class,
            max_connections=2,
            **{**node.connection_kwargs, **overrides},
        )
        return Redis.from_pool(pool)
    source = client.connection_pool
    kwargs = {**source.connection_kwargs, **overrides}
    kwargs.pop('connection_pool', None)
    if isinstance(source, SentinelConnectionPool):
        pool = SentinelConnectionPool(
            source.service_name,
            source.sentinel_manager,
            connection_class=source.connection_class,
            max_connections=2,
            **kwargs,
        )
    else:
        pool = ConnectionPool(
            connection_class=source.connection_class, max_connections=2, **kwargs
        )
    return Redis.from_pool(pool)
