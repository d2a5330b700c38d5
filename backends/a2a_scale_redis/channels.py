"""What both wake-up hubs share: channel bookkeeping and reply accounting.

`a2a_scale_redis.hub.RedisWakeupHub` (one Pub/Sub connection) and
`a2a_scale_redis.sharded.ShardedWakeupHub` (one sharded Pub/Sub connection
per Cluster master) count `add` calls per channel, wait for Redis to
confirm a channel's first subscription, send a refused one again before
failing it, and match Redis' replies to the commands they sent.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from redis.asyncio.client import PubSub
    from redis.exceptions import ResponseError

# Logged under the hub's name, as before this module was split from it.
logger = logging.getLogger('a2a_scale_redis.hub')

Handler = Callable[[bytes | None], None]
"""Called with a message's data, or `None` when the channel was (re)subscribed.

After `None` the handler must assume it missed messages and catch up.
"""

SUBSCRIBE_TRIES = 3
"""How many times a joiner's ``SUBSCRIBE`` is sent before its `add` fails."""


@dataclass
class SentCommand:
    """A command sent on the Pub/Sub connection whose replies are awaited.

    Redis answers a connection's commands in order: ``SUBSCRIBE`` and
    ``UNSUBSCRIBE`` with one reply per channel, ``PING`` with one, and an
    error reply in place of all of a refused command's replies.
    """

    replies: int
    name: bytes | None = None
    """The channel of a joiner's ``SUBSCRIBE`` (`add`), else `None`."""
    tries: int = 0


def message_buffered(pubsub: PubSub) -> bool:
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


class CountedChannels:
    """The channel bookkeeping of a hub: counted adds, confirmations, retries.

    `RedisWakeupHub` and `a2a_scale_redis.sharded.ShardedWakeupHub` differ
    in where a channel is subscribed (`_join`, `_leave`); both count
    `add` calls per channel, wait for Redis to confirm the first, and send
    a refused subscription again before failing it (`_refused`).
    """

    def __init__(
        self, *, subscribe_timeout: float, backoff: tuple[float, float]
    ) -> None:
        self._subscribe_timeout = subscribe_timeout
        self._backoff = backoff
        self._handlers: dict[bytes, Handler] = {}
        self._users: dict[bytes, int] = {}
        self._confirm: dict[bytes, asyncio.Future[None]] = {}
        self._retries: set[asyncio.Task[None]] = set()
        self._closed = False
        self._connected = asyncio.Event()

    @property
    def connected(self) -> bool:
        """Whether every connection of the hub is up and subscribed."""
        return self._connected.is_set()

    @property
    def channel_count(self) -> int:
        """How many channels the hub listens to."""
        return len(self._handlers)

    def start(self) -> None:
        """Opens the hub's connections; idempotent."""
        raise NotImplementedError

    async def wait_connected(self, seconds: float) -> None:
        """Opens the hub (again, after `close`) and waits until it is connected."""
        self._closed = False
        self.start()
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow
        # a cancel that arrives as the awaited event is set.
        async with asyncio.timeout(seconds):
            await self._connected.wait()

    async def add(self, channel: str, handler: Handler) -> None:
        """Listens to `channel`; returns once Redis confirmed the subscription.

        Calls are counted per channel: the first subscribes, and each must be
        matched by one `remove`; the last `remove` unsubscribes. A call that
        fails takes back only its own count. A subscription that Redis
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
                self.start()
                self._handlers[name] = handler
                self._confirm[name] = asyncio.get_running_loop().create_future()
                await self._join(name)
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
        await self._leave(name)

    async def _join(self, name: bytes) -> None:
        """Sends the first subscription of `name`."""
        raise NotImplementedError

    async def _leave(self, name: bytes) -> None:
        """Stops listening to `name`, no longer followed."""
        raise NotImplementedError

    def _refused(
        self,
        sent: SentCommand,
        error: ResponseError,
        others: Iterable[bytes],
        resend: Callable[[int], Awaitable[None]],
    ) -> None:
        """Redis refused a joiner's subscription: send it again, or fail its `add`.

        The connection and every other subscription stay. An error reply may
        also stand for a message the hub could not read, so the readers of
        `others` (the channels of that connection) are told to catch up.

        Args:
            sent: The refused command.
            error: Redis' reply.
            others: The channels of the connection.
            resend: Sends the subscription again, as its n-th try.
        """
        name = sent.name
        if name is None:
            return
        for other in list(others):
            handler = self._handlers.get(other)
            if other != name and handler is not None:
                handler(None)
        future = self._confirm.get(name)
        if future is None or future.done():
            return
        if sent.tries < SUBSCRIBE_TRIES:
            retry = asyncio.create_task(self._retry(name, sent.tries + 1, resend))
            self._retries.add(retry)
            retry.add_done_callback(self._retries.discard)
            return
        logger.warning('Redis refused the subscription to %r: %s', name, error)
        future.set_exception(
            ConnectionError(
                f'Redis refused the subscription to {name.decode()!r} '
                f'{SUBSCRIBE_TRIES} times: {error}'
            )
        )

    async def _retry(
        self, name: bytes, tries: int, resend: Callable[[int], Awaitable[None]]
    ) -> None:
        await asyncio.sleep(self._backoff[0] * 2 ** (tries - 1))
        future = self._confirm.get(name)
        if future is not None and not future.done():
            await resend(tries)

    def _cancel_retries(self) -> None:
        for task in list(self._retries):
            task.cancel()
        for future in self._confirm.values():
            future.cancel()
        self._confirm.clear()
