"""`RedisEventStream`: task events across replicas over Streams or Pub/Sub."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import deque
from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING, Any

from a2a.server.cluster import TaskEventStream, TaskVersion, VersionedEvent
from a2a.server.events.event_queue import Event
from a2a.types.a2a_pb2 import Message

from a2a_scale.codec import decode_event, encode_event
from a2a_scale.errors import CorruptDataError
from a2a_scale_redis.connection import RETRYABLE
from a2a_scale_redis.errors import wrong_type_as_error
from a2a_scale_redis.keys import KeySpace, TaskKeys
from a2a_scale_redis.scripts import PUBLISH
from a2a_scale_redis.store import LoggedEvents, version_value

if TYPE_CHECKING:
    from a2a_scale_redis.connection import AnyRedis
    from a2a_scale_redis.hub import RedisWakeupHub

logger = logging.getLogger(__name__)

EntryId = tuple[int, int]
Entry = tuple[EntryId, int, bytes]

_PAGE = 500
_MAX_SEQ = 2**64 - 1


def _parse_id(raw: bytes) -> EntryId:
    ms, _, seq = raw.partition(b'-')
    return int(ms), int(seq or 0)


def _format_id(entry_id: EntryId) -> str:
    return f'{entry_id[0]}-{entry_id[1]}'


class _Subscriber:
    """One local subscription: a bounded buffer fed by its task's watch."""

    __slots__ = ('buffer', 'overflowed', 'wake')

    def __init__(self) -> None:
        self.buffer: deque[Entry] = deque()
        self.wake = asyncio.Event()
        self.overflowed = False


class _Watch:
    """This replica's listener on one task: one channel, one shared reader."""

    def __init__(self, keys: TaskKeys) -> None:
        self.keys = keys
        self.subscribers: set[_Subscriber] = set()
        self.tail: EntryId | None = None
        self.lock = asyncio.Lock()
        self.dirty = False
        self.fetcher: asyncio.Task[None] | None = None


class RedisEventStream(TaskEventStream):
    """`TaskEventStream` over Redis Streams (default) or Pub/Sub.

    In ``streams`` mode the store's save script appends every event to the
    task's stream and rings the task's channel. All subscriptions of a replica
    share one Pub/Sub connection (the hub) for those wake-ups; on a wake-up
    the replica reads the new entries once, with ``XRANGE`` on the shared
    pool, and hands them to every local subscriber of the task. A subscriber
    first replays the log from its version, so it sees every event after it,
    in order, once. In ``pubsub`` mode events travel in the wake-up itself:
    lowest latency, but nothing is replayed.
    """

    def __init__(
        self,
        client: AnyRedis,
        hub: RedisWakeupHub,
        *,
        namespace: str = 'a2a',
        mode: str = 'streams',
        logged: LoggedEvents | None = None,
        stream_maxlen: int = 1_000,
        retention_seconds: int = 86_400,
        buffer_size: int = 10_000,
        read_concurrency: int = 2,
    ) -> None:
        self._client = client
        self._hub = hub
        self.keys = KeySpace(namespace)
        self.mode = mode
        self._logged = logged or LoggedEvents()
        self._maxlen = stream_maxlen
        self._retention_ms = retention_seconds * 1000
        self._buffer_size = buffer_size
        self._watches: dict[str, _Watch] = {}
        # Stream reads take turns on a few pooled connections, so thousands
        # of subscriptions catching up at once do not grow the pool.
        self._reads = asyncio.Semaphore(read_concurrency)
        self._publish = client.register_script(PUBLISH)

    @property
    def subscription_count(self) -> int:
        """How many subscriptions this replica serves."""
        return sum(len(w.subscribers) for w in self._watches.values())

    async def publish(self, task_id: str, event: VersionedEvent) -> None:
        """Delivers an event no save logged; a no-op for logged ones."""
        version = version_value(event.version)
        if not isinstance(event.event, Message) and self._logged.pop(task_id, version):
            return
        keys = self.keys.task(task_id)
        with wrong_type_as_error(keys.events):
            await self._publish(
                keys=[keys.task, keys.events],
                args=[
                    version,
                    encode_event(event.event),
                    keys.channel,
                    self.mode,
                    self._maxlen,
                    self._retention_ms,
                ],
            )

    async def destroy(self, task_id: str) -> None:
        """No-op: a finished task's stream expires with the task."""
        del task_id

    async def subscribe(
        self, task_id: str, *, after: TaskVersion
    ) -> AsyncGenerator[VersionedEvent, None]:
        """Yields the events of `task_id` newer than `after`, then live ones."""
        floor = version_value(after)
        streams = self.mode == 'streams'
        subscriber = _Subscriber()
        watch = await self._join(task_id, subscriber)
        # Entry ids are "<version>-<n>", so the log after `after` starts at
        # "<after + 1>-0": nothing before it needs reading.
        last: EntryId = (floor, _MAX_SEQ) if floor > 0 else (0, 0)
        current, seen = -1, set[bytes]()
        replay = streams
        try:
            while True:
                source = (
                    self._read(watch.keys, last) if replay else self._drain(subscriber)
                )
                replay = False
                async for entry_id, version, payload in source:
                    if streams:
                        if entry_id <= last:
                            continue
                        last = entry_id
                    if floor > 0 and version <= floor:
                        continue
                    if version != current:
                        current, seen = version, set()
                    if payload in seen:
                        continue
                    seen.add(payload)
                    event = self._decode(watch.keys.events, entry_id, payload)
                    if event is not None:
                        yield VersionedEvent(event, TaskVersion(version))
                if subscriber.overflowed:
                    subscriber.overflowed = False
                    subscriber.buffer.clear()
                    replay = streams
                    continue
                if not subscriber.buffer:
                    subscriber.wake.clear()
                    await subscriber.wake.wait()
        finally:
            await self._leave(watch, subscriber)

    @staticmethod
    def _decode(key: str, entry_id: EntryId, payload: bytes) -> Event | None:
        try:
            return decode_event(payload, key=f'{key}#{_format_id(entry_id)}')
        except CorruptDataError as e:
            logger.error('Skipping an event: %s', e)
            return None

    async def _drain(self, subscriber: _Subscriber) -> AsyncGenerator[Entry, None]:
        while subscriber.buffer:
            yield subscriber.buffer.popleft()

    async def _read(self, keys: TaskKeys, last: EntryId) -> AsyncGenerator[Entry, None]:
        """Replays the stream after `last`, page by page."""
        start = f'({_format_id(last)}'
        while True:
            page = await self._xrange(keys.events, start)
            for raw_id, fields in page:
                entry = self._entry(raw_id, fields)
                if entry is not None:
                    yield entry
            if len(page) < _PAGE:
                return
            start = '(' + page[-1][0].decode()

    async def _xrange(
        self, key: str, start: str, *, reverse: bool = False
    ) -> list[tuple[bytes, dict[bytes, bytes]]]:
        failures = 0
        while True:
            try:
                async with self._reads:
                    with wrong_type_as_error(key):
                        reply: Any = (
                            await self._client.xrevrange(key, count=1)
                            if reverse
                            else await self._client.xrange(
                                key, min=start, max='+', count=_PAGE
                            )
                        )
                return reply
            except RETRYABLE as e:
                failures += 1
                delay = min(2.0, random.random() * 0.05 * 2 ** min(failures, 10))  # noqa: S311
                logger.warning(
                    'Reading %r failed (%s); retrying in %.2f s', key, e, delay
                )
                await asyncio.sleep(delay)

    @staticmethod
    def _entry(raw_id: bytes, fields: dict[bytes, bytes]) -> Entry | None:
        try:
            return _parse_id(raw_id), int(fields[b'v']), fields[b'e']
        except (KeyError, ValueError):
            logger.error('Skipping malformed stream entry %r', raw_id)
            return None

    async def _join(self, task_id: str, subscriber: _Subscriber) -> _Watch:
        keys = self.keys.task(task_id)
        watch = self._watches.get(keys.channel)
        if watch is None:
            watch = _Watch(keys)
            self._watches[keys.channel] = watch
        watch.subscribers.add(subscriber)
        try:
            await self._hub.add(keys.channel, lambda data: self._ring(watch, data))
            if self.mode == 'streams':
                await self._init_tail(watch)
        except BaseException:
            await self._leave(watch, subscriber)
            raise
        return watch

    async def _init_tail(self, watch: _Watch) -> None:
        """Sets where the shared reader starts: the stream's end, once subscribed.

        Entries up to there are replayed by each subscriber, which starts
        reading only after this; later ones ring the channel.
        """
        async with watch.lock:
            if watch.tail is None:
                newest = await self._xrange(watch.keys.events, '+', reverse=True)
                watch.tail = _parse_id(newest[0][0]) if newest else (0, 0)

    async def _leave(self, watch: _Watch, subscriber: _Subscriber) -> None:
        watch.subscribers.discard(subscriber)
        if watch.subscribers or self._watches.get(watch.keys.channel) is not watch:
            return
        del self._watches[watch.keys.channel]
        if watch.fetcher is not None:
            watch.fetcher.cancel()
        with contextlib.suppress(Exception):
            await self._hub.remove(watch.keys.channel)

    def _ring(self, watch: _Watch, data: bytes | None) -> None:
        """Handles a wake-up (`data`) or a (re)subscription (`None`)."""
        if self.mode == 'pubsub':
            if data is None:
                return
            version, _, payload = data.partition(b'|')
            try:
                entry = ((int(version), 0), int(version), payload)
            except ValueError:
                logger.error('Skipping a malformed wake-up on %r', watch.keys.channel)
                return
            self._deliver(watch, [entry])
            return
        watch.dirty = True
        if watch.fetcher is None or watch.fetcher.done():
            watch.fetcher = asyncio.create_task(self._fetch(watch))

    async def _fetch(self, watch: _Watch) -> None:
        """Reads what is new in a watched stream, once for all its readers."""
        while watch.dirty:
            watch.dirty = False
            await self._init_tail(watch)
            assert watch.tail is not None
            entries: list[Entry] = []
            async for entry in self._read(watch.keys, watch.tail):
                entries.append(entry)
                watch.tail = entry[0]
            self._deliver(watch, entries)

    def _deliver(self, watch: _Watch, entries: list[Entry]) -> None:
        if not entries:
            return
        for subscriber in watch.subscribers:
            if len(subscriber.buffer) + len(entries) > self._buffer_size:
                subscriber.overflowed = True
            else:
                subscriber.buffer.extend(entries)
            subscriber.wake.set()
