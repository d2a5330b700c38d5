"""`RedisWakeupHub`: one Pub/Sub connection shared by a replica's readers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from redis.exceptions import ResponseError

from a2a_scale import telemetry

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.client import PubSub

logger = logging.getLogger(__name__)

Handler = Callable[[bytes | None], None]
"""Called with a message's data, or `None` when the channel was (re)subscribed.

After `None` the handler must assume it missed messages and catch up.
"""

_CHUNK = 500
_TRIES = 3
"""How many times a joiner's ``SUBSCRIBE`` is sent before its `add` fails."""


@dataclass
class _Sent:
    """A command sent on the Pub/Sub connection whose replies are awaited.

    Redis answers a connection's commands in order: ``SUBSCRIBE`` and
    ``UNSUBSCRIBE`` with one reply per channel, ``PING`` with one, and an
    error reply in place of all of a refused command's replies.
    """

    replies: int
    name: bytes | None = None
    """The channel of a joiner's ``SUBSCRIBE`` (`add`), else `None`."""
    tries: int = 0


def _buffered(pubsub: PubSub) -> bool:
    """Whether bytes of a next message already wait in the connection.

    They wait in the connection's stream, or in hiredis' reader when redis-py
    parses with hiredis.
    """
    connection = pubsub.connection
    parser = getattr(connection, '_parser', None)
    has_data = getattr(getattr(parser, '_reader', None), 'has_data', None)
    if has_data is not None and has_data():
        return True
    return bool(getattr(getattr(connection, '_reader', None), '_buffer', None))


class WakeupHub(Protocol):
    """What the event stream needs of a hub: counted channel registrations.

    `RedisWakeupHub` (one Pub/Sub connection) and
    `a2a_scale_redis.sharded.ShardedWakeupHub` (sharded Pub/Sub on a Redis
    Cluster, one connection per master) implement it.
    """

    @property
    def connected(self) -> bool:
        """Whether every connection of the hub is up and subscribed."""
        ...

    @property
    def channel_count(self) -> int:
        """How many channels the hub listens to."""
        ...

    async def wait_connected(self, seconds: float) -> None:
        """Opens the hub and waits until it is connected."""
        ...

    async def close(self) -> None:
        """Closes the hub's connections."""
        ...

    async def add(self, channel: str, handler: Handler) -> None:
        """Listens to `channel`; returns once Redis confirmed it."""
        ...

    async def remove(self, channel: str) -> None:
        """Takes back one `add` of `channel`."""
        ...


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
        self._users: dict[bytes, int] = {}
        self._closed = False
        self._confirm: dict[bytes, asyncio.Future[None]] = {}
        self._pubsub: PubSub | None = None
        self._sent: deque[_Sent] = deque()
        self._retries: set[asyncio.Task[None]] = set()
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
        """Starts the reader; idempotent.

        Raises:
            RuntimeError: If the hub was closed.
        """
        if self._closed:
            raise RuntimeError('The Redis wake-up hub is closed')
        if self._reader is None or self._reader.done():
            self._reader = asyncio.create_task(self._run(), name='a2a-scale-redis-hub')

    async def wait_connected(self, seconds: float) -> None:
        """Opens the hub (again, after `close`) and waits until it is connected."""
        self._closed = False
        self.start()
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow
        # a cancel that arrives as the awaited event is set.
        async with asyncio.timeout(seconds):
            await self._connected.wait()

    async def close(self) -> None:
        """Stops the reader and closes the connection; the hub stays closed."""
        self._closed = True
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
        for task in list(self._retries):
            task.cancel()
        for future in self._confirm.values():
            future.cancel()
        self._confirm.clear()

    async def add(self, channel: str, handler: Handler) -> None:
        """Listens to `channel`; returns once Redis confirmed the subscription.

        Calls are counted per channel: the first subscribes, and each must be
        matched by one `remove`; the last `remove` unsubscribes. A call that
        fails takes back only its own count. A ``SUBSCRIBE`` that Redis
        refuses (an error reply) is sent again, up to three times, on the
        same connection; then the call fails.

        Raises:
            ConnectionError: If Redis did not confirm in time, or refused the
                subscription (the message names the channel and the reply).
            RuntimeError: If the hub was closed.
        """
        if self._closed:
            raise RuntimeError(
                f'The Redis wake-up hub is closed; cannot listen to {channel!r}'
            )
        name = channel.encode()
        users = self._users.get(name, 0)
        self._users[name] = users + 1
        try:
            if users == 0:
                self._handlers[name] = handler
                self._confirm[name] = asyncio.get_running_loop().create_future()
                self.start()
                await self._subscribe(name, tries=1)
            future = self._confirm.get(name)
            if future is not None and not future.done():
                async with asyncio.timeout(self._subscribe_timeout):
                    await asyncio.shield(future)
        except TimeoutError:
            await self.remove(channel)
            raise ConnectionError(
                f'Redis did not confirm the subscription to {channel!r} within '
                f'{self._subscribe_timeout} s'
            ) from None
        except BaseException:
            await self.remove(channel)
            raise

    async def remove(self, channel: str) -> None:
        """Takes back one `add` of `channel`; the last one stops listening."""
        name = channel.encode()
        users = self._users.get(name, 0) - 1
        if users > 0:
            self._users[name] = users
            return
        self._users.pop(name, None)
        if self._handlers.pop(name, None) is None:
            return
        future = self._confirm.pop(name, None)
        if future is not None and not future.done():
            future.cancel()
        async with self._lock:
            if self._pubsub is not None:
                with contextlib.suppress(Exception):
                    await self._send(self._pubsub, 'UNSUBSCRIBE', name)

    async def _send(
        self, pubsub: PubSub, command: str, *names: bytes, joiner: int = 0
    ) -> None:
        """Sends `command` and notes the replies it awaits; under the lock."""
        sent = _Sent(max(1, len(names)), names[0] if joiner else None, joiner)
        self._sent.append(sent)
        try:
            await pubsub.execute_command(command, *names)
        except BaseException:
            if self._sent and self._sent[-1] is sent:
                self._sent.pop()
            raise

    async def _subscribe(self, name: bytes, *, tries: int) -> None:
        """Sends a joiner's ``SUBSCRIBE`` of `name` (its `tries`-th)."""
        async with self._lock:
            if self._pubsub is not None and name in self._handlers:
                with contextlib.suppress(Exception):
                    await self._send(self._pubsub, 'SUBSCRIBE', name, joiner=tries)

    def _refused(self, sent: _Sent, error: ResponseError) -> None:
        """Redis refused a joiner's ``SUBSCRIBE``: try again, or fail its `add`.

        The connection and every other subscription stay. An error reply may
        also stand for a message the hub could not read, so every other
        channel's readers are told to catch up.
        """
        name = sent.name
        if name is None:
            return
        for other, handler in list(self._handlers.items()):
            if other != name:
                handler(None)
        future = self._confirm.get(name)
        if future is None or future.done():
            return
        if sent.tries < _TRIES:
            delay = self._backoff[0] * 2**sent.tries
            task = asyncio.create_task(self._retry(name, delay, sent.tries + 1))
            self._retries.add(task)
            task.add_done_callback(self._retries.discard)
            return
        logger.warning('Redis refused the subscription to %r: %s', name, error)
        future.set_exception(
            ConnectionError(
                f'Redis refused the subscription to {name.decode()!r} '
                f'{_TRIES} times: {error}'
            )
        )

    async def _retry(self, name: bytes, delay: float, tries: int) -> None:
        await asyncio.sleep(delay)
        future = self._confirm.get(name)
        if future is not None and not future.done():
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
                self._refused(sent, e)
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
                    if not _buffered(pubsub):
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
