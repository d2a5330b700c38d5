"""`RedisEventStream`: task events across replicas over Streams or Pub/Sub."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Callable
from typing import TYPE_CHECKING

from a2a.server.cluster import TaskEventStream, TaskVersion, VersionedEvent
from a2a.server.events.event_queue import Event
from a2a.types.a2a_pb2 import Message

from a2a_scale import EventGapError
from a2a_scale.codec import decode_event, encode_event
from a2a_scale.errors import CorruptDataError
from a2a_scale.tasks import LoggedEvents
from a2a_scale_redis.errors import wrong_type_as_error
from a2a_scale_redis.keys import KeySpace
from a2a_scale_redis.log import CORRUPT, PAGE, EventLogReader, backoff
from a2a_scale_redis.scripts import PUBLISH
from a2a_scale_redis.store import version_value
from a2a_scale_redis.window import (
    MAX_SEQ,
    Cursor,
    Entry,
    EntryId,
    Watch,
    format_id,
    parse_id,
)

if TYPE_CHECKING:
    from a2a_scale_redis.connection import AnyRedis
    from a2a_scale_redis.hub import WakeupHub

logger = logging.getLogger(__name__)

DELETED = b'!'
"""The wake-up a task's deletion sends (no entry id starts with it)."""

_DELETED = 'the task was deleted'
_OWN_KEPT = 64
_DEFER_SECONDS = 0.05
"""Longest wait of a wake-up for this replica's save in flight."""
"""Most entries of this replica's saves kept for their wake-up, per task."""
_LIVE_ONLY = 'the subscriber fell behind and pubsub mode keeps no event log'


class RedisEventStream(TaskEventStream):
    """`TaskEventStream` over Redis Streams (default) or Pub/Sub.

    In ``streams`` mode the store's save script appends every event to the
    task's stream and rings the task's channel, with the event itself when
    it is small. All subscriptions of a replica share one Pub/Sub connection
    (the hub) for those wake-ups. Per task, one shared reader hands new
    entries to a window that every local subscriber reads with its own
    cursor; it reads the stream (``XRANGE``) only when a wake-up does not
    carry the entry right after the last one it handed over. A subscriber
    first replays the log from its version, so it sees every event after it,
    in order, once; one that falls out of the window reads the log, and one
    that fell behind the retained log gets `EventGapError`. In ``pubsub``
    mode events travel in the wake-up itself: lowest latency, no replay.
    """

    def __init__(
        self,
        client: AnyRedis,
        hub: WakeupHub,
        *,
        namespace: str = 'a2a',
        mode: str = 'streams',
        logged: LoggedEvents | None = None,
        stream_maxlen: int = 1_000,
        retention_seconds: int = 86_400,
        window_size: int | None = None,
        inline_event_bytes: int = 0,
        read_concurrency: int = 2,
        sharded: bool = False,
    ) -> None:
        self._client = client
        self._hub = hub
        self.keys = KeySpace(namespace, sharded=sharded)
        self.mode = mode
        self._logged = logged or LoggedEvents()
        self._maxlen = stream_maxlen
        self._retention_ms = retention_seconds * 1000
        # A window longer than the log would only hold what the log lost.
        self._window_size = window_size or stream_maxlen
        self._watches: dict[str, Watch] = {}
        self._log = EventLogReader(client, read_concurrency)
        self._inline_bytes = inline_event_bytes
        self._publish = client.register_script(PUBLISH)

    async def longest_followed_log(self, limit: int = 50) -> int | None:
        """The length of the longest event log among tasks followed here.

        Reads the `limit` tasks with the most local subscriptions (one XLEN
        each); `None` when none is followed or the mode keeps no log.
        """
        if self.mode != 'streams' or not self._watches:
            return None
        hot = sorted(
            self._watches.values(), key=lambda w: len(w.window.cursors), reverse=True
        )[:limit]
        lengths = await asyncio.gather(*(self._client.xlen(w.keys.events) for w in hot))
        return max(int(n) for n in lengths)

    @property
    def subscription_count(self) -> int:
        """How many subscriptions this replica serves."""
        return sum(len(w.window.cursors) for w in self._watches.values())

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
                    self._inline_bytes,
                ],
            )

    async def destroy(self, task_id: str) -> None:
        """No-op: a finished task's stream expires with the task."""
        del task_id

    async def subscribe(
        self, task_id: str, *, after: TaskVersion
    ) -> AsyncGenerator[VersionedEvent, None]:
        """Yields the events of `task_id` newer than `after`, then live ones.

        Raises:
            EventGapError: When some event after the subscriber's position
                cannot be delivered: it fell behind the retained log, an
                entry is corrupt, or the task was deleted.
        """
        floor = version_value(after)
        streams = self.mode == 'streams'
        cursor = Cursor()
        watch = await self._join(task_id, cursor)
        window = watch.window
        # Entry ids are "<version>-<n>", so the log after `after` starts at
        # "<after + 1>-0": nothing before it needs reading.
        last: EntryId = (floor, MAX_SEQ) if floor > 0 and streams else (0, 0)
        current, seen = -1, set[bytes]()
        position = floor
        try:
            while True:
                if cursor in watch.gone:
                    raise EventGapError(task_id, position=position, reason=_DELETED)
                placing = cursor.index < 0
                if placing:
                    cursor.wake.clear()
                    batch = await self._log.read_after(task_id, watch.keys, last)
                else:
                    taken = window.take(cursor)
                    if taken is None:
                        if not streams:
                            raise EventGapError(
                                task_id, position=position, reason=_LIVE_ONLY
                            )
                        cursor.index = -1
                        continue
                    if not taken:
                        cursor.wake.clear()
                        await cursor.wake.wait()
                        continue
                    batch = taken
                for entry_id, version, payload in batch:
                    if entry_id <= last:
                        continue
                    last = entry_id
                    if payload is None:
                        logger.error(
                            'Ending a subscription at malformed entry %s#%s',
                            watch.keys.events,
                            format_id(entry_id),
                        )
                        raise EventGapError(task_id, position=position, reason=CORRUPT)
                    if floor > 0 and version <= floor:
                        continue
                    if version != current:
                        current, seen = version, set()
                    if payload in seen:
                        continue
                    seen.add(payload)
                    event = self._decode(task_id, watch.keys.events, entry_id, payload)
                    position = version
                    yield VersionedEvent(event, TaskVersion(version))
                # Read from the window once it holds every entry after `last`.
                if placing and not window.place(cursor, last) and not batch:
                    await cursor.wake.wait()
        finally:
            await self._leave(watch, cursor)

    @staticmethod
    def _decode(task_id: str, key: str, entry_id: EntryId, payload: bytes) -> Event:
        try:
            return decode_event(payload, key=f'{key}#{format_id(entry_id)}')
        except CorruptDataError as e:
            logger.error('Ending a subscription at a corrupt event: %s', e)
            raise EventGapError(task_id, position=entry_id[0], reason=CORRUPT) from None

    def _handler(self, channel: str) -> Callable[[bytes | None], None]:
        return lambda data: self._ring(channel, data)

    async def _join(self, task_id: str, cursor: Cursor) -> Watch:
        keys = self.keys.task(task_id)
        watch = self._watches.get(keys.channel)
        if watch is None:
            watch = Watch(keys, self._window_size)
            self._watches[keys.channel] = watch
        watch.window.cursors.add(cursor)
        try:
            await self._hub.add(keys.channel, self._handler(keys.channel))
        except BaseException:
            self._forget(watch, cursor)
            raise
        if self.mode != 'streams':
            cursor.index = watch.window.end
        elif watch.window.tail is None:
            self._wake_reader(watch)
        return watch

    def _forget(self, watch: Watch, cursor: Cursor) -> None:
        watch.window.cursors.discard(cursor)
        watch.gone.discard(cursor)
        if watch.window.cursors or self._watches.get(watch.keys.channel) is not watch:
            return
        del self._watches[watch.keys.channel]
        if watch.fetcher is not None:
            watch.fetcher.cancel()

    async def _leave(self, watch: Watch, cursor: Cursor) -> None:
        self._forget(watch, cursor)
        with contextlib.suppress(Exception):
            await self._hub.remove(watch.keys.channel)

    def _ring(self, channel: str, data: bytes | None) -> None:
        """Handles a wake-up (`data`) or a (re)subscription (`None`)."""
        watch = self._watches.get(channel)
        if watch is None:
            return
        if data == DELETED:
            watch.gone.update(watch.window.cursors)
            watch.window.clear()
            if watch.flush is not None:
                watch.flush.cancel()
            watch.deferred.clear()
            watch.own.clear()
            for cursor in watch.window.cursors:
                cursor.wake.set()
            return
        if self.mode == 'pubsub':
            if data is None:
                return
            version, _, payload = data.partition(b'|')
            watch.counter += 1
            try:
                entry: Entry = ((watch.counter, 0), int(version), payload)
            except ValueError:
                logger.error('Skipping a malformed wake-up on %r', channel)
                return
            watch.window.append([entry])
            return
        if data is None:
            self._wake_reader(watch)
        elif watch.saving:
            # A save of this replica is in flight: its entry may be among
            # these, and comes with its reply. Wake-ups keep their order.
            if not watch.deferred:
                loop = asyncio.get_running_loop()
                watch.flush = loop.call_later(_DEFER_SECONDS, self._flush, watch)
            watch.deferred.append(data)
        else:
            self._on_wake(watch, data)

    def _flush(self, watch: Watch) -> None:
        """Handles the deferred wake-ups, in order."""
        if watch.flush is not None:
            watch.flush.cancel()
            watch.flush = None
        deferred, watch.deferred = watch.deferred, []
        if self._watches.get(watch.keys.channel) is watch:
            for data in deferred:
                self._on_wake(watch, data)

    def _on_wake(self, watch: Watch, data: bytes) -> None:
        """Hands over the entry a wake-up announces, or has the log read."""
        raw_id, sep, rest = data.partition(b'|')
        version, _, payload = rest.partition(b'|')
        try:
            entry_id = parse_id(raw_id)
            entry: Entry | None = (entry_id, int(version), payload) if sep else None
        except ValueError:
            self._wake_reader(watch)
            return
        if entry is None:
            entry = watch.own.pop(entry_id, None)
        if not watch.hand_over(entry, entry_id):
            self._wake_reader(watch)

    def saving(self, task_id: str) -> Watch | None:
        """Notes that this replica saves an event of `task_id` (store hook).

        Returns:
            The token to pass to `saved`, or `None` when no local reader
            follows the task.
        """
        if self.mode != 'streams' or not self._watches:
            return None
        watch = self._watches.get(self.keys.task(task_id).channel)
        if watch is not None:
            watch.saving += 1
        return watch

    def saved(self, token: Watch, logged: tuple[bytes, int, bytes] | None) -> None:
        """Keeps the entry this replica's save logged for its wake-up (store hook).

        Its wake-up then hands it over without reading the log back.

        Args:
            token: What `saving` returned.
            logged: The entry id, version and event bytes the save logged, or
                `None` if it logged nothing (refused or failed).
        """
        watch = token
        watch.saving -= 1
        if self._watches.get(watch.keys.channel) is not watch:
            return
        if logged is not None:
            raw_id, version, payload = logged
            entry_id = parse_id(raw_id)
            watch.own[entry_id] = (entry_id, version, payload)
            if len(watch.own) > _OWN_KEPT:
                del watch.own[next(iter(watch.own))]
        if watch.deferred:
            self._flush(watch)

    def _wake_reader(self, watch: Watch) -> None:
        watch.dirty = True
        if not watch.fetching:
            watch.fetcher = asyncio.create_task(self._fetch(watch))

    async def _fetch(self, watch: Watch) -> None:
        """Reads what is new in a watched stream, once for all its readers.

        Any failure keeps the task dirty and is retried with backoff; the
        tail moves only with entries handed over to the window.
        """
        failures = 0
        while watch.dirty:
            watch.dirty = False
            try:
                window = watch.window
                if window.tail is None:
                    await self._init_tail(watch)
                    continue
                page: list[Entry] = []
                async for entry in self._log.pages(watch.keys.events, window.tail):
                    page.append(entry)
                    if len(page) == PAGE:
                        window.append(page)
                        page = []
                window.append(page)
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as e:  # never give up a wake-up
                watch.dirty = True
                failures += 1
                delay = backoff(failures)
                logger.warning(
                    'Reading %r failed (%s); retrying in %.2f s',
                    watch.keys.events,
                    e,
                    delay,
                )
                await asyncio.sleep(delay)

    async def _init_tail(self, watch: Watch) -> None:
        """Sets where the shared reader starts: the stream's end, once subscribed.

        Entries up to there are replayed by each subscriber from the log;
        later ones ring the channel.
        """
        watch.window.tail = await self._log.newest(watch.keys.events)
        for cursor in watch.window.cursors:
            cursor.wake.set()
