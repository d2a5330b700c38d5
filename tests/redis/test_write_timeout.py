"""Writes of the command client still fail after ``socket_timeout``.

The command client's connections bound each write with `asyncio.timeout`
(`CheapWriteTimeout`) instead of redis-py's task per write; a write the
server does not take in time must still fail, retryably, and drop its
connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import pytest
from pydantic import SecretStr
from redis.asyncio import Redis, RedisCluster
from redis.exceptions import TimeoutError as RedisTimeoutError

from a2a_scale_redis.batching import CommandBatcher
from a2a_scale_redis.connection import (
    CheapWriteTimeout,
    close_client,
    create_client,
    create_pubsub_client,
)
from a2a_scale_redis.settings import RedisSettings

pytestmark = pytest.mark.redis


class FreezableProxy:
    """A loopback TCP proxy to Redis that can stop reading from its clients."""

    def __init__(self, host: str, port: int) -> None:
        self._target = (host, port)
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server: asyncio.Server | None = None
        self._pumps: set[asyncio.Task[None]] = set()
        self.port = 0

    async def start(self) -> None:
        """Listens on a free loopback port."""
        self._server = await asyncio.start_server(self._serve, '127.0.0.1', 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def freeze(self) -> None:
        """Stops reading what clients send (their writes then back up)."""
        self._flowing.clear()

    def thaw(self) -> None:
        """Reads again."""
        self._flowing.set()

    async def stop(self) -> None:
        """Closes the listener and every proxied connection."""
        for pump in self._pumps:
            pump.cancel()
        for pump in list(self._pumps):
            with contextlib.suppress(BaseException):
                await pump
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self._target)
        for pump in (
            self._pump(reader, up_writer, gated=True),
            self._pump(up_reader, writer, gated=False),
        ):
            task = asyncio.create_task(pump)
            self._pumps.add(task)
            task.add_done_callback(self._pumps.discard)

    async def _pump(
        self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, *, gated: bool
    ) -> None:
        try:
            while True:
                if gated:
                    await self._flowing.wait()
                data = await source.read(65_536)
                if not data:
                    break
                sink.write(data)
                await sink.drain()
        finally:
            sink.close()


def _settings(url: str, **extra: object) -> RedisSettings:
    return RedisSettings(url=SecretStr(url), **extra)  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def _behind_proxy(
    redis_url: str,
) -> AsyncIterator[tuple[FreezableProxy, Redis | RedisCluster]]:
    """A command client (0.5 s socket timeout, no retries) through a proxy."""
    target = urlsplit(redis_url)
    proxy = FreezableProxy(target.hostname or '127.0.0.1', target.port or 6379)
    await proxy.start()
    client = create_client(
        _settings(f'redis://127.0.0.1:{proxy.port}/0', socket_timeout=0.5, retries=0)
    )
    try:
        yield proxy, client
    finally:
        await close_client(client)
        await proxy.stop()


@pytest.mark.parametrize(
    'url', ['redis://127.0.0.1:6379/0', 'rediss://127.0.0.1:6379/0', 'unix:///r.sock']
)
def test_every_transport_of_the_command_client_writes_cheaply(url: str) -> None:
    client = create_client(_settings(url))
    assert isinstance(client, Redis)
    assert issubclass(client.connection_pool.connection_class, CheapWriteTimeout)
    pubsub = create_pubsub_client(client)
    assert issubclass(pubsub.connection_pool.connection_class, CheapWriteTimeout)


@pytest.mark.asyncio
async def test_a_write_the_server_does_not_take_times_out_and_drops_it(
    redis_url: str,
) -> None:
    async with _behind_proxy(redis_url) as (proxy, client):
        assert await client.ping()
        proxy.freeze()
        started = time.monotonic()
        with pytest.raises(RedisTimeoutError):
            # Far more than the socket buffers hold: the write (or, where
            # asyncio buffers it all, the reply) must wait.
            await client.set('savecost-never-written', b'x' * 64_000_000)
        assert time.monotonic() - started < 5
        proxy.thaw()
        # The half-written connection was dropped: a new one works.
        assert await client.ping()


@pytest.mark.asyncio
async def test_a_batch_the_server_does_not_answer_times_out_and_recovers(
    redis_url: str,
) -> None:
    async with _behind_proxy(redis_url) as (proxy, client):
        batcher = CommandBatcher(client)
        assert await batcher.execute('ECHO', 'before') == b'before'
        proxy.freeze()
        # The proxy forwards what it was already reading: one more command
        # goes through before the connection stalls.
        assert await batcher.execute('ECHO', 'last') == b'last'
        started = time.monotonic()
        results = await asyncio.wait_for(
            asyncio.gather(
                *(batcher.execute('ECHO', str(i)) for i in range(3)),
                return_exceptions=True,
            ),
            10,
        )
        # Bounded on the batcher's own connection, then again on the pool's.
        assert all(isinstance(r, RedisTimeoutError) for r in results), results
        assert time.monotonic() - started < 5
        proxy.thaw()
        # The connections cut short were dropped: no late reply is taken
        # for a later command.
        assert await batcher.execute('ECHO', 'after') == b'after'
        assert await asyncio.gather(
            *(batcher.execute('ECHO', f'again {i}') for i in range(3))
        ) == [f'again {i}'.encode() for i in range(3)]
        await batcher.close()
