"""`RedisWakeupHub`: one Pub/Sub connection shared by a replica's readers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.client import PubSub

logger = logging.getLogger(__name__)

Handler = Callable[[bytes | None], None]
"""Called with a message's data, or `None` when the channel was (re)subscribed.

After `None` the handler must assume it missed messages and catch up.
"""

_CHUNK = 500


class RedisWakeupHub:
    """Multiplexes every channel a replica listens to over one connection.

    The hub owns one Pub/Sub connection. It re-subscribes everything after a
    dropped connection, and tells each channel's handler that it may have
    missed messages, so readers can catch up from their last position. A
    ping every ``ping_interval`` seconds detects a silently dead connection.
    """

    def __init__(
        self,
        client_factory: Callable[[], Redis],
        *,
        control_channel: str,
        ping_interval: float = 15.0,
        subscribe_timeout: float = 10.0,
        backoff_base: float = 0.05,
        backoff_cap: float = 2.0,
    ) -> None:
        self._factory = client_factory
        self._control = control_channel.encode()
        self._ping_interval = ping_interval
        self._subscribe_timeout = subscribe_timeout
        self._backoff = (backoff_base, backoff_cap)
        self._handlers: dict[bytes, Handler] = {}
        self._confirm: dict[bytes, asyncio.Future[None]] = {}
        self._pubsub: PubSub | None = None
        self._lock = asyncio.Lock()
        self._connected = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None
        self.connections = 0
        """How many times the hub has connected (1 + reconnects)."""

    @property
    def connected(self) -> bool:
        """Whether the Pub/Sub connection is up and subscribed."""
        return self._connected.is_set()

    @property
    def channel_count(self) -> int:
        """How many channels the hub listens to."""
        return len(self._handlers)

    def start(self) -> None:
        """Starts the reader; idempotent."""
        if self._reader is None or self._reader.done():
            self._reader = asyncio.create_task(self._run(), name='a2a-scale-redis-hub')

    async def wait_connected(self, seconds: float) -> None:
        """Waits up to `seconds` until the connection is up."""
        self.start()
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow
        # a cancel that arrives as the awaited event is set.
        async with asyncio.timeout(seconds):
            await self._connected.wait()

    async def close(self) -> None:
        """Stops the reader and closes the connection."""
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
        for future in self._confirm.values():
            future.cancel()
        self._confirm.clear()

    async def add(self, channel: str, handler: Handler) -> None:
        """Listens to `channel`; returns once Redis confirmed the subscription.

        Raises:
            ConnectionError: If Redis did not confirm in time.
        """
        name = channel.encode()
        self._handlers[name] = handler
        future = self._confirm.get(name)
        if future is None or future.done():
            future = asyncio.get_running_loop().create_future()
            self._confirm[name] = future
        self.start()
        async with self._lock:
            if self._pubsub is not None:
                with contextlib.suppress(Exception):
                    await self._pubsub.execute_command('SUBSCRIBE', name)
        try:
            async with asyncio.timeout(self._subscribe_timeout):
                await asyncio.shield(future)
        except TimeoutError:
            self._handlers.pop(name, None)
            self._confirm.pop(name, None)
            raise ConnectionError(
                f'Redis did not confirm the subscription to {channel!r} within '
                f'{self._subscribe_timeout} s'
            ) from None

    async def remove(self, channel: str) -> None:
        """Stops listening to `channel`."""
        name = channel.encode()
        if self._handlers.pop(name, None) is None:
            return
        self._confirm.pop(name, None)
        async with self._lock:
            if self._pubsub is not None:
                with contextlib.suppress(Exception):
                    await self._pubsub.execute_command('UNSUBSCRIBE', name)

    async def _run(self) -> None:
        failures = 0
        while True:
            client = self._factory()
            pubsub = client.pubsub()
            try:
                async with self._lock:
                    self._pubsub = pubsub
                    names = [self._control, *self._handlers]
                    for i in range(0, len(names), _CHUNK):
                        await pubsub.execute_command(
                            'SUBSCRIBE', *names[i : i + _CHUNK]
                        )
                self.connections += 1
                await self._read(pubsub)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                failures += 1
                logger.warning('Redis Pub/Sub connection lost (%s); reconnecting', e)
            finally:
                self._connected.clear()
                self._pubsub = None
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
                with contextlib.suppress(Exception):
                    await client.aclose()
            base, cap = self._backoff
            delay = random.random() * base * 2 ** min(failures, 16)  # noqa: S311
            await asyncio.sleep(min(cap, delay))

    async def _read(self, pubsub: PubSub) -> None:
        last_seen = time.monotonic()
        while True:
            message: dict[str, Any] | None = await pubsub.get_message(
                timeout=self._ping_interval
            )
            now = time.monotonic()
            if message is None:
                if now - last_seen > 2 * self._ping_interval:
                    raise ConnectionError('no reply to Pub/Sub pings')
                await pubsub.execute_command('PING')
                continue
            last_seen = now
            kind = message['type']
            channel = message['channel']
            if kind == 'message':
                handler = self._handlers.get(channel)
                if handler is not None:
                    handler(message['data'])
            elif kind == 'subscribe':
                if channel == self._control:
                    self._connected.set()
                    continue
                handler = self._handlers.get(channel)
                if handler is not None:
                    handler(None)
                future = self._confirm.get(channel)
                if future is not None and not future.done():
                    future.set_result(None)
