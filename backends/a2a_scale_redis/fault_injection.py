"""Fault injection into a started `RedisBackend`, for tests.

`inject_faults` wraps what the backend sends to Redis so that each call
first asks a plan (any object with ``next_fault(name)``, such as
`a2a_scale.testing.FaultPlan`) whether it must fail. Three kinds of call
can be chosen, each under its own names:

- commands of the client (``execute_command``): the command's name, such
  as ``'EVALSHA'`` or ``'XRANGE'``;
- pipelines: ``'pipeline'`` for a whole execution, and
  ``'pipeline:<NAME>'`` for each command queued in it (``'pipeline:XADD'``);
- the wake-up hub's Pub/Sub connections: ``'pubsub:<NAME>'`` for each
  command sent on one (``'pubsub:SUBSCRIBE'``, ``'pubsub:UNSUBSCRIBE'``,
  ``'pubsub:PING'``; ``'pubsub:SSUBSCRIBE'``, ``'pubsub:SUNSUBSCRIBE'`` with
  sharded Pub/Sub), and ``'pubsub:read:<type>'`` for each message read from
  one, by the type redis-py gives it (``'pubsub:read:subscribe'`` for a
  subscription's confirmation, ``'pubsub:read:message'`` for a wake-up;
  ``'pubsub:read:ssubscribe'`` and ``'pubsub:read:smessage'`` when sharded).
"""

from __future__ import annotations

import inspect
from collections import deque
from dataclasses import dataclass
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

PIPELINE = 'pipeline'
"""The call name of a whole pipeline execution."""

_SERVER_ERROR = 'BUSY injected server fault'

_CONFIRMATIONS = {'subscribe', 'unsubscribe', 'ssubscribe', 'sunsubscribe'}
"""Pub/Sub message types that are a command's replies, one per channel."""


def _channel(value: Any) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()


def _fault_error(kind: str) -> Exception:
    if kind == 'connection':
        return RedisConnectionError('injected connection fault')
    return ResponseError(_SERVER_ERROR)


def inject_faults(
    backend: Any,
    plan: Any,
    *,
    commands: bool = True,
    pipelines: bool = False,
    pubsub: bool = False,
) -> None:
    """Makes a started `RedisBackend`'s calls fail as `plan` says.

    A ``'connection'`` fault raises redis-py's `ConnectionError`, a
    ``'server'`` fault a `ResponseError` (``BUSY``); ``fault.before`` says
    whether the call reached Redis. Call names are listed in this module's
    docstring.

    - Commands: the command fails before it is sent, or after it ran (its
      reply lost).
    - Pipelines: a fault of the whole execution fails it before anything is
      sent, or after everything ran. A fault of a command inside breaks the
      connection at that command (a connection fault: the commands queued
      before it ran, that one ran only when ``fault.before`` is False, none
      after it) or makes that command's reply an error (a server fault: it
      ran only when ``fault.before`` is False; the others ran), raised as
      redis-py raises a pipeline's errors. A transaction fails as a whole.
    - Pub/Sub: a connection fault drops the connection (the command is sent
      first when ``fault.before`` is False; a message read is lost), so the
      hub's reader gets `ConnectionError`; a server fault of a command makes
      its reply one error reply (`ResponseError`), read in order with the
      messages as Redis sends it (the command ran only when ``fault.before``
      is False), and a fault of a read replaces the message read with an
      error reply. Covers the connection of the hub's
      ``_factory`` (those it opens from now on, and the open one).

    Args:
        backend: A started `RedisBackend`.
        plan: Decides which calls fail (``next_fault(name)``).
        commands: Fail the client's commands (as before pipelines and
            Pub/Sub were covered).
        pipelines: Fail pipeline executions and the commands inside.
        pubsub: Fail the wake-up hub's Pub/Sub commands and reads.
    """
    client = backend.client
    if commands:
        _wrap_commands(client, plan)
    if pipelines:
        _wrap_pipelines(client, plan)
    if pubsub:
        _wrap_hub(backend.hub, plan)


def _wrap_commands(client: Any, plan: Any) -> None:
    execute = client.execute_command

    async def execute_command(*args: Any, **options: Any) -> Any:
        fault = plan.next_fault(str(args[0]).upper() if args else '')
        if fault is None:
            return await execute(*args, **options)
        if not fault.before:
            await execute(*args, **options)
        raise _fault_error(fault.kind)

    client.execute_command = execute_command


def _wrap_pipelines(client: Any, plan: Any) -> None:
    create = client.pipeline
    cluster = hasattr(client, 'get_nodes')

    def pipeline(*args: Any, **kwargs: Any) -> Any:
        pipe = create(*args, **kwargs)
        transaction = args[0] if args else kwargs.get('transaction', not cluster)
        _FaultyPipeline(pipe, plan, lambda: create(transaction=False), transaction)
        return pipe

    client.pipeline = pipeline


class _FaultyPipeline:
    """Wraps one pipeline's ``execute_command`` (queueing) and ``execute``."""

    def __init__(self, pipe: Any, plan: Any, fresh: Any, transaction: bool) -> None:
        self.pipe = pipe
        self.plan = plan
        self.fresh = fresh
        self.transaction = bool(transaction)
        self.queued: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
        self.queue = pipe.execute_command
        self.execute = pipe.execute
        pipe.execute_command = self.execute_command
        pipe.execute = self.execute_faulty

    def execute_command(self, *args: Any, **options: Any) -> Any:
        self.queued.append((args, options))
        return self.queue(*args, **options)

    async def execute_faulty(self, raise_on_error: bool = True, **kwargs: Any) -> Any:
        queued, self.queued = self.queued, []
        names = [str(args[0]).upper() if args else '' for args, _ in queued]
        fault, at = self.plan.next_fault(PIPELINE), None
        for i, name in enumerate(names):
            if fault is not None:
                break
            fault, at = self.plan.next_fault(f'{PIPELINE}:{name}'), i
        if fault is None:
            return await self.execute(raise_on_error, **kwargs)
        if at is None or self.transaction:  # the whole execution fails
            if not fault.before:
                await self.execute(raise_on_error=False, **kwargs)
            else:
                await _reset(self.pipe)
            if fault.kind == 'connection' or raise_on_error:
                raise _fault_error(fault.kind)
            return [_fault_error(fault.kind) for _ in queued]
        await _reset(self.pipe)
        ran = at + (0 if fault.before else 1)
        if fault.kind == 'connection':
            await self._run(queued[:ran])
            raise _fault_error(fault.kind)
        skip = at if fault.before else None
        replies = await self._run([c for i, c in enumerate(queued) if i != skip])
        error = _fault_error(fault.kind)
        if skip is not None:
            replies.insert(at, error)
        else:
            replies[at] = error
        if raise_on_error:
            for reply in replies:
                if isinstance(reply, Exception):
                    raise reply
        return replies

    async def _run(self, queued: list[tuple[tuple[Any, ...], dict[str, Any]]]) -> Any:
        if not queued:
            return []
        pipe = self.fresh()
        for args, options in queued:
            pipe.execute_command(*args, **options)
        return list(await pipe.execute(raise_on_error=False))


async def _reset(pipe: Any) -> None:
    reset = pipe.reset()
    if inspect.isawaitable(reset):
        await reset


def _wrap_hub(hub: Any, plan: Any) -> None:
    factory = getattr(hub, '_factory', None)
    if not callable(factory):
        raise TypeError(
            f'inject_faults(pubsub=True) does not know the hub {type(hub).__name__}'
        )

    def create(*args: Any, **kwargs: Any) -> Any:
        client = factory(*args, **kwargs)
        open_pubsub = client.pubsub

        def pubsub(*args: Any, **kwargs: Any) -> Any:
            return _FaultyPubSub(open_pubsub(*args, **kwargs), plan).pubsub

        client.pubsub = pubsub
        return client

    hub._factory = create
    # The connections open now: the hub's one, or a sharded hub's per node.
    shards = getattr(hub, '_shards', {})
    for current in [
        getattr(hub, '_pubsub', None),
        *(getattr(shard, 'pubsub', None) for shard in shards.values()),
    ]:
        if current is not None:
            _FaultyPubSub(current, plan)


@dataclass
class _LostReplies:
    """The replies of a command that ran, replaced by one error reply."""

    error: Exception | None
    """Raised in place of the first reply; `None` once raised."""
    channels: set[bytes]
    """The channels whose replies are still to be dropped."""


class _FaultyPubSub:
    """Wraps one PubSub's ``execute_command`` and ``get_message``.

    A dropped connection stays dead, as one Redis closed would: every later
    call on it raises `ConnectionError` (redis-py would otherwise reconnect
    silently, without the hub's subscriptions).
    """

    def __init__(self, pubsub: Any, plan: Any) -> None:
        self.pubsub = pubsub
        self.plan = plan
        self.dropped = False
        self.pings: deque[Exception | None] = deque()
        """For each ``PING`` sent, in order: the error its reply carries."""
        self.refused: list[_LostReplies] = []
        """Commands that ran but whose replies are lost."""
        self.send = pubsub.execute_command
        self.read = pubsub.get_message
        pubsub.execute_command = self.execute_command
        pubsub.get_message = self.get_message

    async def execute_command(self, *args: Any) -> Any:
        self._raise_if_dropped()
        name = str(args[0]).upper() if args else ''
        fault = self.plan.next_fault(f'pubsub:{name}')
        if fault is None:
            if name == 'PING':
                self.pings.append(None)
            return await self.send(*args)
        if fault.kind == 'connection':
            if not fault.before:
                await self.send(*args)
            await self._drop()
            raise _fault_error(fault.kind)
        # Redis answers on the reader's side, in order: one error reply
        # comes instead of the command's replies. Refused, the command is
        # not run: a PING in its place carries the error (its reply is the
        # one replaced). Run, its own replies are replaced.
        error = _fault_error(fault.kind)
        if fault.before or name == 'PING':
            self.pings.append(error)
            await self.send('PING')
        else:
            self.refused.append(_LostReplies(error, {_channel(a) for a in args[1:]}))
            await self.send(*args)
        return None

    async def get_message(self, *args: Any, **kwargs: Any) -> Any:
        self._raise_if_dropped()
        message = await self.read(*args, **kwargs)
        self._raise_if_dropped()
        if message is None:
            return None
        replaced = self._replaced(message)
        if replaced is not None:
            if isinstance(replaced, Exception):
                raise replaced
            return None  # another reply of a command whose error was raised
        fault = self.plan.next_fault(f'pubsub:read:{message.get("type")}')
        if fault is None:
            return message
        if fault.kind == 'connection':
            await self._drop()
        raise _fault_error(fault.kind)

    def _replaced(self, message: dict[str, Any]) -> Exception | bool | None:
        """What comes instead of `message`: an error, `True` (nothing), or `None`."""
        kind = message.get('type')
        if kind == 'pong':
            return self.pings.popleft() if self.pings else None
        if kind not in _CONFIRMATIONS:
            return None
        channel = _channel(message.get('channel'))
        for lost in self.refused:
            if channel in lost.channels:
                lost.channels.discard(channel)
                if not lost.channels:
                    self.refused.remove(lost)
                error, lost.error = lost.error, None
                return error or True
        return None

    def _raise_if_dropped(self) -> None:
        if self.dropped:
            raise RedisConnectionError('injected: the Pub/Sub connection was dropped')

    async def _drop(self) -> None:
        self.dropped = True
        connection = getattr(self.pubsub, 'connection', None)
        if connection is not None:
            await connection.disconnect()
