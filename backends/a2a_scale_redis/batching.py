"""`CommandBatcher`: group commit for a replica's hot-path Redis commands.

Every command costs the client a socket write, a read and a turn of the
event loop to wake its caller, and the server a read event. When nothing of
its own is in flight, the batcher waits one turn of the event loop before
it sends a command, so that commands issued by other coroutines in the same
turn go out with it (a lone caller pays one loop turn, a few microseconds);
commands issued while one is in flight wait for it and then go out
together. Either way a batch is one non-transactional pipeline (one write,
one connection), and the busier the replica, the larger the batches. A
flight that takes long (a large payload, a stalled connection) holds the
waiting commands back for at most `MAX_WAIT_SECONDS`; then they go out
beside it.

A command sent at once, or a batch, goes over the batcher's own
connection when it is free, taken from the client's pool on first use and
kept: no pool checkout per command. Commands are packed by hiredis in one
call each when it is installed (see `_pack`), and the replies of a batch
are read under one ``socket_timeout`` for the whole batch rather than one
timer per reply. If
that connection fails (dropped, timed out), the commands are sent again
through the client, with its pool and retries. A client whose
``execute_command`` was replaced or wrapped (instrumentation, fault
injection) gets every command through it instead.

Each command keeps its own outcome: its reply, or its own error reply. A
connection error fails every command of the batch after redis-py's retries,
as it fails a lone command; the commands batched here are the store's save
script (idempotent by its write id) and reads, so a retried batch is safe.
"""

from __future__ import annotations

import asyncio
import math
from typing import TYPE_CHECKING, Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

try:
    from hiredis import pack_command as _hiredis_pack
except ImportError:  # pragma: no cover - hiredis comes with the redis extra
    _hiredis_pack = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from collections.abc import Sequence

    from redis.asyncio.connection import AbstractConnection
    from redis.commands.core import AsyncScript

    from a2a_scale_redis.connection import AnyRedis

_Waiting = tuple[tuple[Any, ...], 'asyncio.Future[Any]']
"""A command's arguments and the future of its reply."""

MAX_BATCH = 256
"""The most commands one pipeline carries; more wait for the next one."""

MAX_WAIT_SECONDS = 0.05
"""How long a command waits for the flight before it at most: then it goes
out in parallel (a slow flight never holds the others back longer)."""


class CommandBatcher:
    """Sends commands at once when idle, and together while busy.

    Args:
        client: The client the commands go through (its pool, retries and
            timeouts apply to each batch as to a lone command).
        enabled: `False` sends every command on its own.
        linger: `False` sends a command at once when nothing is in flight,
            instead of after one turn of the event loop.
    """

    def __init__(
        self, client: AnyRedis, *, enabled: bool = True, linger: bool = True
    ) -> None:
        self._client = client
        self.enabled = enabled
        self.linger = linger
        self._flights = 0
        self._waiting: list[_Waiting] = []
        self._gathering: list[_Waiting] | None = None
        self._overdue: asyncio.TimerHandle | None = None
        self._runs: set[asyncio.Task[None]] = set()
        self._own: AbstractConnection | None = None
        self._own_closed = False
        self._own_busy = False
        self._callbacks: Any = None
        self._callback_count = 0
        self._plain: set[Any] = set()
        """Command names known to have no redis-py response callback."""
        self.batches = 0
        """How many pipelines went out (each carried two commands or more)."""
        self.batched = 0
        """How many commands went out in them."""

    async def execute(self, *args: Any) -> Any:
        """Runs one command; its reply, or its error raised."""
        if not self.enabled:
            return await self._client.execute_command(*args)
        loop = asyncio.get_running_loop()
        if self._gathering is not None:
            # Another command waits for the end of this loop turn: join it.
            joined: asyncio.Future[Any] = loop.create_future()
            self._gathering.append((args, joined))
            return await joined
        if not self._flights:
            if self.linger:
                gathered = await self._gather()
                if gathered:
                    # Others joined: all go out together, this one first.
                    first: asyncio.Future[Any] = loop.create_future()
                    self._send_first([(args, first), *gathered])
                    return await first
            if not self._flights and not self._waiting:
                self._flights += 1
                try:
                    return await self._direct(args)
                finally:
                    self._flights -= 1
                    self._next()
        future: asyncio.Future[Any] = loop.create_future()
        self._waiting.append((args, future))
        if self._overdue is None:
            # A slow flight (a large payload, a stalled connection) holds
            # the waiting commands back this long at most.
            self._overdue = asyncio.get_running_loop().call_later(
                MAX_WAIT_SECONDS, self._launch
            )
        return await future

    async def _gather(self) -> list[_Waiting]:
        """The commands issued by others until the end of this loop turn."""
        gathered: list[_Waiting] = []
        self._gathering = gathered
        try:
            await asyncio.sleep(0)
        except BaseException:
            # Cancelled: what joined goes out without this command.
            self._gathering = None
            self._send_first(gathered)
            raise
        self._gathering = None
        return gathered

    def _send_first(self, commands: list[_Waiting]) -> None:
        """Puts `commands` before the waiting ones and sends them when it can."""
        self._waiting[:0] = commands
        self._next()
        if self._waiting and self._overdue is None:
            self._overdue = asyncio.get_running_loop().call_later(
                MAX_WAIT_SECONDS, self._launch
            )

    async def script(
        self, script: AsyncScript, keys: Sequence[Any], args: Sequence[Any]
    ) -> Any:
        """Runs a registered script by its digest, loading it when missing."""
        try:
            return await self.execute('EVALSHA', script.sha, len(keys), *keys, *args)
        except NoScriptError:
            # Redis restarted or flushed its scripts: load it (once).
            return await script(keys=keys, args=args)

    async def close(self) -> None:
        """Gives the batcher's own connection back to the client's pool."""
        self._own_closed = True
        own, self._own = self._own, None
        if own is not None and isinstance(self._client, Redis):
            if self._own_busy:
                # A command may still be waiting for its reply on it.
                await own.disconnect()
            await self._client.connection_pool.release(own)

    async def _direct(self, args: tuple[Any, ...]) -> Any:
        """Runs one command: on the own connection if it can, else the client's."""
        replies = await self._on_own([args], batch=False)
        if replies is None:
            return await self._client.execute_command(*args)
        if isinstance(replies[0], Exception):
            raise replies[0]
        return replies[0]

    async def _on_own(
        self, commands: list[tuple[Any, ...]], *, batch: bool
    ) -> list[Any] | None:
        """Sends `commands` in one write on the own connection, if it can.

        Returns each one's reply or error reply, or `None` when the caller
        must send them through the client: the connection is busy, may not
        be used (see `_may_own`), or failed (dropped or timed out; redis-py
        disconnected it, and the client's retries apply to the new send).
        """
        client = self._client
        if (
            not isinstance(client, Redis)
            or self._own_busy
            or not self._may_own(client, commands, batch=batch)
        ):
            return None
        if self._own is None:
            self._own = await client.connection_pool.get_connection()
        own = self._own
        self._own_busy = True
        try:
            await own.send_packed_command(_pack(own, commands))
            replies: list[Any] = []
            # One bound for the whole batch (asyncio's TimeoutError is an
            # OSError); redis-py drops the connection of a read cut short.
            async with asyncio.timeout(own.socket_timeout):
                for _ in commands:
                    try:
                        replies.append(await own.read_response(timeout=math.inf))
                    except ResponseError as e:
                        replies.append(e)
            return replies
        except (RedisConnectionError, RedisTimeoutError, OSError):
            return None
        finally:
            self._own_busy = False

    def _may_own(
        self, client: Redis, commands: list[tuple[Any, ...]], *, batch: bool
    ) -> bool:
        """Whether `commands` may skip redis-py's own path (and its wrappers)."""
        if (
            self._own_closed
            or _WRAPPED_AT_IMPORT
            or 'execute_command' in vars(client)
            or type(client).execute_command is not _EXECUTE_COMMAND
        ):
            return False
        if batch and (
            'pipeline' in vars(client) or Pipeline.execute is not _PIPELINE_EXECUTE
        ):
            return False
        callbacks = client.response_callbacks
        if callbacks is not self._callbacks or len(callbacks) != self._callback_count:
            # Callbacks were added or replaced: learn the names again.
            self._callbacks, self._callback_count = callbacks, len(callbacks)
            self._plain.clear()
        plain = self._plain
        for args in commands:
            name = args[0]
            if name not in plain:
                if name in callbacks:
                    return False
                plain.add(name)
        return True

    def _next(self) -> None:
        """Sends what waited once nothing is in flight."""
        if self._waiting and not self._flights:
            self._launch()

    def _launch(self) -> None:
        """Sends the waiting commands now (up to `MAX_BATCH` of them)."""
        if self._overdue is not None:
            self._overdue.cancel()
            self._overdue = None
        if not self._waiting:
            return
        batch = self._waiting[:MAX_BATCH]
        del self._waiting[:MAX_BATCH]
        self._flights += 1
        run = asyncio.create_task(self._send(batch), name='a2a-scale-redis-batch')
        self._runs.add(run)
        run.add_done_callback(self._runs.discard)
        if self._waiting:
            self._overdue = asyncio.get_running_loop().call_later(
                MAX_WAIT_SECONDS, self._launch
            )

    async def _send(self, batch: list[_Waiting]) -> None:
        try:
            if len(batch) == 1:
                args, future = batch[0]
                await self._settle(future, self._direct(args))
                return
            self.batches += 1
            self.batched += len(batch)
            try:
                replies = await self._pipeline([args for args, _ in batch])
            except BaseException as e:
                for _, future in batch:
                    _fail(future, e)
                if not isinstance(e, Exception):
                    raise
                return
            for (_, future), reply in zip(batch, replies, strict=True):
                if future.done():
                    continue
                if isinstance(reply, Exception):
                    future.set_exception(reply)
                else:
                    future.set_result(reply)
        finally:
            self._flights -= 1
            self._next()

    async def _pipeline(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        """Sends `commands` in one write; each one's reply or error reply.

        On the batcher's own connection when it can, else as a
        non-transactional pipeline of the client.
        """
        replies = await self._on_own(commands, batch=True)
        if replies is not None:
            return replies
        pipe = self._client.pipeline(transaction=False)
        for args in commands:
            pipe.execute_command(*args)
        return list(await pipe.execute(raise_on_error=False))

    @staticmethod
    async def _settle(future: asyncio.Future[Any], call: Any) -> None:
        try:
            reply = await call
        except Exception as e:
            _fail(future, e)
        except BaseException as e:
            _fail(future, e)
            raise
        else:
            if not future.done():
                future.set_result(reply)


_EXECUTE_COMMAND = Redis.execute_command
"""redis-py's own: if it was wrapped (here or, marked ``__wrapped__``, before
this module was imported), every command goes through the wrapper."""

_PIPELINE_EXECUTE = Pipeline.execute
"""redis-py's own: if it was wrapped, every batch goes through a pipeline."""

_WRAPPED_AT_IMPORT = hasattr(_EXECUTE_COMMAND, '__wrapped__') or hasattr(
    _PIPELINE_EXECUTE, '__wrapped__'
)
"""redis-py was instrumented before this module was imported."""


_UTF8 = frozenset(('utf-8', 'utf8', 'UTF-8', 'UTF8'))


def _pack(own: AbstractConnection, commands: list[tuple[Any, ...]]) -> Any:
    """`commands` packed for one write: by hiredis, one call per command.

    hiredis packs bytes, memoryview, str (as UTF-8), int and float exactly
    as redis-py does, without redis-py's encoding pass over every argument.
    redis-py's packer is used when hiredis is missing, when the connection
    encodes text otherwise than as strict UTF-8, and for an argument hiredis
    refuses (``None``, ``bool``: redis-py then raises its own error).
    """
    encoder = own.encoder
    if (
        _hiredis_pack is not None
        and encoder.encoding in _UTF8
        and encoder.encoding_errors == 'strict'
    ):
        try:
            return [_hiredis_pack(args) for args in commands]
        except TypeError:
            pass
    return own.pack_commands(commands)


def _fail(future: asyncio.Future[Any], error: BaseException) -> None:
    if future.done():
        return
    if isinstance(error, asyncio.CancelledError):
        future.cancel()
    else:
        future.set_exception(error)
