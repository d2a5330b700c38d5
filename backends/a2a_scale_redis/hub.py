"""`RedisWakeupHub`: one Pub/Sub connection shared by a replica's readers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from redis.exceptions import ResponseError

from a2a_scale import telemetry
from a2a_scale_redis.channels import (
    CountedChannels,
    Handler,
    SentCommand,
    WakeupHub,
    message_buffered,
)

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.client import PubSub

__all__ = ['Handler', 'RedisWakeupHub', 'WakeupHub']

logger = logging.getLogger(__name__)

_CHUNK = 500
"""Channels per ``SUBSCRIBE`` when a connection subscribes everything."""


class RedisWakeupHub(CountedChannels):
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
        super().__init__(
            subscribe_timeout=subscribe_timeout, backoff=(backoff_base, backoff_cap)
        )
        self._factory = client_factory
        self._control = control_channel.encode()
        self._ping_interval = ping_interval
        self._pubsub: PubSub | None = None
        self._sent: deque[SentCommand] = deque()
        self._lock = asyncio.Lock()
        self._reader: asyncio.Task[None] | None = None
        self.connections = 0
        """How many times the hub has connected (1 + reconnects)."""

    def start(self) -> None:
        """Starts the reader; idempotent.

        Raises:
            RuntimeError: If the hub was closed.
        """
        if self._closed:
            raise RuntimeError('The Redis wake-up hub is closed')
        if self._reader is None or self._reader.done():
            self._reader = asyncio.create_task(self._run(), name='a2a-scale-redis-hub')

    async def close(self) -> None:
        """Stops the reader and closes the connection; the hub stays closed."""
        self._closed = True
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
        self._cancel_retries()

    async def _send(
        self, pubsub: PubSub, command: str, *names: bytes, joiner: int = 0
    ) -> None:
        """Sends `command` and notes the replies it awaits; under the lock."""
        sent = SentCommand(max(1, len(names)), names[0] if joiner else None, joiner)
        self._sent.append(sent)
        try:
            await pubsub.execute_command(command, *names)
        except BaseException:
            if self._sent and self._sent[-1] is sent:
                self._sent.pop()
            raise

    async def _join(self, name: bytes) -> None:
        await self._subscribe(name, tries=1)

    async def _leave(self, name: bytes) -> None:
        async with self._lock:
            if self._pubsub is not None:
                with contextlib.suppress(Exception):
                    await self._send(self._pubsub, 'UNSUBSCRIBE', name)

    async def _subscribe(self, name: bytes, *, tries: int) -> None:
        """Sends a joiner's ``SUBSCRIBE`` of `name` (its `tries`-th)."""
        async with self._lock:
            if self._pubsub is not None and name in self._handlers:
                with contextlib.suppress(Exception):
                    await self._send(self._pubsub, 'SUBSCRIBE', name, joiner=tries)

    async def _resubscribe(self, name: bytes, tries: int) -> None:
        await self._subscribe(name, tries=tries)

    async def _run(self) -> None:
        failures = 0
        while True:
            client = self._factory()
            pubsub = client.pubsub()
            try:
                async with self._lock:
                    self._pubsub = pubsub
                    self._sent.clear()
                    names = [self._control, *self._handlers]
                    for i in range(0, len(names), _CHUNK):
                        await self._send(pubsub, 'SUBSCRIBE', *names[i : i + _CHUNK])
                self.connections += 1
                await self._read(pubsub)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                # A connection that was up and subscribed starts the backoff
                # over; one that never got there backs off further.
                failures = 1 if self._connected.is_set() else failures + 1
                logger.warning('Redis Pub/Sub connection lost (%s); reconnecting', e)
                telemetry.count_reconnect('redis', 'pubsub')
            finally:
                self._connected.clear()
                self._pubsub = None
                # Joiners wait for the resubscription of the next connection.
                loop = asyncio.get_running_loop()
                for name, future in list(self._confirm.items()):
                    if future.done():
                        self._confirm[name] = loop.create_future()
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
            try:
                message: dict[str, Any] | None = await pubsub.get_message(
                    timeout=self._ping_interval
                )
            except ResponseError as e:
                sent = self._sent.popleft() if self._sent else None
                if sent is None or sent.name is None:
                    raise  # not a joiner's: the connection is made again
                self._refused(
                    sent, e, self._handlers, partial(self._resubscribe, sent.name)
                )
                continue
            now = time.monotonic()
            if message is None:
                if now - last_seen > 2 * self._ping_interval:
                    raise ConnectionError('no reply to Pub/Sub pings')
                async with self._lock:
                    await self._send(pubsub, 'PING')
                continue
            last_seen = now
            kind = message['type']
            channel = message['channel']
            if kind in {'subscribe', 'unsubscribe', 'pong'} and self._sent:
                self._sent[0].replies -= 1
                if not self._sent[0].replies:
                    self._sent.popleft()
            if kind == 'message':
                handler = self._handlers.get(channel)
                if handler is not None:
                    handler(message['data'])
                    if not message_buffered(pubsub):
                        # The readers it woke run before this loop waits
                        # for the next message; a burst is still read whole.
                        await asyncio.sleep(0)
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
