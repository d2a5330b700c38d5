"""`PostgresListener`: one LISTEN connection shared by a replica's readers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from a2a_scale import telemetry
from a2a_scale_postgres.notify import Notice, parse_notice

if TYPE_CHECKING:
    import asyncpg

logger = logging.getLogger(__name__)

Handler = Callable[[Notice | None], None]
"""Called with a notification of the task, or `None` after a (re)connection.

After `None` the handler must assume it missed notifications and catch up.
"""

FeedHandler = Callable[[str, int], None]
"""Called with every notification of the namespace: (task key, position)."""


class PostgresListener:
    """Multiplexes every subscription of a replica over one connection.

    All saves of a namespace notify one channel with ``<task key>:<position>``
    and, for a small event, the event itself (see `a2a_scale_postgres.notify`;
    the key is the md5 of the task id, so a payload stays below PostgreSQL's
    8,000-byte limit whatever the id). The listener holds one
    dedicated connection that LISTENs on it and hands each notification to
    the handler registered for its task key; adding or removing a task needs
    no round trip. When the connection drops (or PostgreSQL restarts) it
    reconnects with backoff, LISTENs again and tells every handler to catch
    up from its position. A check every ``ping_interval`` seconds detects a
    silently dead connection.
    """

    def __init__(
        self,
        connect: Callable[[], Awaitable[asyncpg.Connection]],
        *,
        channel: str,
        ping_interval: float = 15.0,
        ping_timeout: float = 5.0,
        backoff_base: float = 0.05,
        backoff_cap: float = 2.0,
        describe: Callable[[str], str] = str,
    ) -> None:
        self._connect = connect
        self.channel = channel
        self._ping_interval = ping_interval
        self._ping_timeout = ping_timeout
        self._backoff = (backoff_base, backoff_cap)
        self._describe = describe
        self._handlers: dict[str, Handler] = {}
        self._feeds: list[FeedHandler] = []
        self._connected = asyncio.Event()
        self._lost = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None
        self._conn: asyncpg.Connection | None = None
        self.connections = 0
        """How many times the listener has connected (1 + reconnects)."""

    @property
    def connected(self) -> bool:
        """Whether the LISTEN connection is up."""
        return self._connected.is_set()

    @property
    def backend_pid(self) -> int | None:
        """The server process id of the LISTEN connection, if connected."""
        conn = self._conn
        return conn.get_server_pid() if conn is not None and self.connected else None

    @property
    def key_count(self) -> int:
        """How many tasks have a handler."""
        return len(self._handlers)

    def start(self) -> None:
        """Starts the reader; idempotent."""
        if self._reader is None or self._reader.done():
            self._reader = asyncio.create_task(
                self._run(), name='a2a-scale-postgres-listener'
            )

    async def wait_connected(self, seconds: float) -> None:
        """Waits up to `seconds` until the connection is up."""
        self.start()
        async with asyncio.timeout(seconds):
            await self._connected.wait()

    async def close(self) -> None:
        """Stops the reader and closes the connection."""
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader

    def add(self, key: str, handler: Handler) -> None:
        """Routes notifications of task `key` to `handler`."""
        self._handlers[key] = handler

    def remove(self, key: str) -> None:
        """Stops routing notifications of task `key`."""
        self._handlers.pop(key, None)

    def add_feed(self, handler: FeedHandler) -> None:
        """Receives every notification of the namespace."""
        self._feeds.append(handler)

    def remove_feed(self, handler: FeedHandler) -> None:
        """Stops a feed handler."""
        with contextlib.suppress(ValueError):
            self._feeds.remove(handler)

    def _on_notify(self, conn: Any, pid: int, channel: str, payload: str) -> None:
        del conn, pid, channel
        notice = parse_notice(payload)
        if notice is None:
            logger.error('Skipping a malformed notification on %r', self.channel)
            return
        handler = self._handlers.get(notice.key)
        if handler is not None:
            handler(notice)
        for feed in list(self._feeds):
            feed(notice.key, notice.position)

    def _on_terminate(self, conn: Any) -> None:
        del conn
        self._lost.set()

    async def _run(self) -> None:
        failures = 0
        while True:
            conn = None
            try:
                self._lost.clear()
                conn = await self._connect()
                conn.add_termination_listener(self._on_terminate)
                await conn.add_listener(self.channel, self._on_notify)
                self._conn = conn
                self.connections += 1
                failures = 0
                self._connected.set()
                for handler in list(self._handlers.values()):
                    handler(None)
                for feed in list(self._feeds):
                    feed('', 0)
                await self._watch(conn)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                failures += 1
                logger.warning(
                    'PostgreSQL LISTEN connection lost (%s); reconnecting',
                    self._describe(f'{type(e).__name__}: {e}'),
                )
                telemetry.count_reconnect('postgres', 'listen')
            finally:
                self._connected.clear()
                self._conn = None
                if conn is not None:
                    with contextlib.suppress(Exception):
                        conn.terminate()
            base, cap = self._backoff
            delay = random.random() * base * 2 ** min(failures, 16)  # noqa: S311
            await asyncio.sleep(min(cap, delay))

    async def _watch(self, conn: asyncpg.Connection) -> None:
        """Returns (raising) when the connection is lost or stops answering."""
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._ping_interval):
                    await self._lost.wait()
            if self._lost.is_set() or conn.is_closed():
                raise ConnectionError('the LISTEN connection was closed')
            async with asyncio.timeout(self._ping_timeout):
                await conn.fetchval('SELECT 1')
