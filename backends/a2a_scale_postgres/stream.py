"""`PostgresEventStream`: task events across replicas with LISTEN/NOTIFY."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING

from a2a.server.cluster import TaskEventStream, TaskVersion, VersionedEvent
from a2a.types.a2a_pb2 import Message

from a2a_scale import telemetry
from a2a_scale.codec import decode_event, encode_event
from a2a_scale.errors import CorruptDataError
from a2a_scale.tasks import LoggedEvents, version_int
from a2a_scale_postgres.errors import EventLogTrimmedError, row_key
from a2a_scale_postgres.notify import Notice, PostgresNotifier, format_notice
from a2a_scale_postgres.schema import channel_name, quote_schema, task_key

if TYPE_CHECKING:
    from a2a.server.events.event_queue import Event

    from a2a_scale_postgres.connection import PoolHandle
    from a2a_scale_postgres.hub import PostgresListener

logger = logging.getLogger(__name__)

Entry = tuple[int, int, bytes]
"""(position in the task's log, task version, serialized event)."""

_PAGE = 500


class _Watch:
    """This replica's reader of one task's log, shared by its subscribers.

    ``position`` is the last log position the watch has read; ``entries``
    holds the newest entries it read (contiguous, from ``base``), which
    subscribers copy from their own cursor. A subscriber whose cursor is not
    covered reads the table itself, so no subscriber ever loses an entry
    because another one is slow.
    """

    def __init__(self, task_id: str, key: str) -> None:
        self.task_id = task_id
        self.key = key
        self.refs = 0
        self.position: int | None = None
        self.base = 0
        self.entries: list[Entry] = []
        self.dirty = False
        self.fetcher: asyncio.Task[None] | None = None
        self.changed = asyncio.Event()
        self.decoded: dict[int, tuple[bytes, Event]] = {}
        """Events decoded once for all subscribers, by position."""

    def advance(self) -> None:
        """Wakes every subscriber waiting for news."""
        changed, self.changed = self.changed, asyncio.Event()
        changed.set()

    def cached(self, cursor: int) -> list[Entry] | None:
        """Entries after `cursor` from the shared buffer; `None` if not covered."""
        if self.position is None:
            return None
        if cursor >= self.position:
            return []
        index = cursor + 1 - self.base
        if 0 <= index < len(self.entries):
            return self.entries[index : index + _PAGE]
        return None

    def extend(self, rows: list[Entry], limit: int) -> None:
        """Appends rows read after `position`, then advances `position`."""
        assert self.position is not None
        rows = [row for row in rows if row[0] > self.position]
        if not rows:
            return
        if rows[0][0] != self.position + 1 or not self.entries:
            self.entries, self.base = [], rows[0][0]
        self.entries.extend(rows)
        if len(self.entries) > limit:
            drop = len(self.entries) - limit // 2
            self.entries = self.entries[drop:]
            self.base += drop
        self.position = rows[-1][0]


class PostgresEventStream(TaskEventStream):
    """`TaskEventStream` over the ``events`` table and LISTEN/NOTIFY.

    Every save appends its event to the task's log in the save's
    transaction and notifies the namespace channel with the task's key and
    the event's position. A replica LISTENs once (the `PostgresListener`);
    for each task with local subscribers one shared reader fetches the new
    rows once and every subscriber copies them from its own cursor. A
    subscriber first replays the log after its version, so it sees every
    event after it, in order, once; after a lost connection the reader
    catches up from its position.

    Args:
        pool: A ready asyncpg pool.
        listener: The replica's LISTEN connection.
        schema: The schema holding the tables.
        logged: Shared with the store, to skip re-publishing saved events.
        max_events_per_task: Events kept in a task's log.
        buffer_size: Entries each task's shared reader keeps in memory.
        read_concurrency: Log reads that run at once.
        backoff_base: First retry delay of a failed read, in seconds.
        backoff_cap: Longest retry delay, in seconds.
        notify_payload_limit: Largest event (bytes) a notification carries.
        notifier: Sends the notifications (shared with the store).
    """

    def __init__(
        self,
        pool: PoolHandle,
        listener: PostgresListener,
        *,
        schema: str,
        logged: LoggedEvents | None = None,
        max_events_per_task: int = 1_000,
        buffer_size: int = 1_000,
        read_concurrency: int = 2,
        backoff_base: float = 0.05,
        backoff_cap: float = 2.0,
        notify_payload_limit: int = 2_000,
        notifier: PostgresNotifier | None = None,
    ) -> None:
        self._pool = pool
        self._listener = listener
        self.schema = schema
        q = quote_schema(schema)
        self.channel = channel_name(schema)
        self._logged = logged or LoggedEvents()
        self._max_events = max_events_per_task
        self._buffer_size = buffer_size
        self._reads = asyncio.Semaphore(read_concurrency)
        self._backoff = (backoff_base, backoff_cap)
        self._watches: dict[str, _Watch] = {}
        self._notify_limit = notify_payload_limit
        self._notifier = notifier or PostgresNotifier(pool, self.channel)
        self._publish_sql = f'SELECT {q}.append_event($1, $2, $3, $4, $5)'
        self._after_sql = (
            f'SELECT seq, version, data FROM {q}.events '  # noqa: S608
            'WHERE task_id = $1 AND seq > $2 ORDER BY seq LIMIT $3'
        )
        # One statement, so one snapshot: the log's length and trimming, and
        # the entries after a cursor that are newer than a version.
        self._read_sql = (
            'SELECT s.last_seq, s.trimmed_seq, s.trimmed_version, '  # noqa: S608
            f'e.seq, e.version, e.data FROM {q}.streams s '
            'LEFT JOIN LATERAL (SELECT seq, version, data '
            f'FROM {q}.events WHERE task_id = s.task_id AND seq > $2 '
            'AND version > $3 ORDER BY seq LIMIT $4) e ON true '
            'WHERE s.task_id = $1 ORDER BY e.seq'
        )
        self._last_sql = f'SELECT last_seq FROM {q}.streams WHERE task_id = $1'  # noqa: S608
        self._positions_sql = (
            f'SELECT task_id, last_seq FROM {q}.streams '  # noqa: S608
            'WHERE task_id = ANY($1::text[])'
        )

    @property
    def subscription_count(self) -> int:
        """How many subscriptions this replica serves."""
        return sum(w.refs for w in self._watches.values())

    def subscriber_count(self, task_id: str) -> int:
        """How many local subscriptions `task_id` has."""
        watch = self._watches.get(task_key(task_id))
        return watch.refs if watch is not None else 0

    async def publish(self, task_id: str, event: VersionedEvent) -> None:
        """Appends an event no save logged; a no-op for logged ones."""
        version = version_int(event.version)
        if not isinstance(event.event, Message) and self._logged.pop(task_id, version):
            return
        data = encode_event(event.event)
        position = await self._pool.fetchval(
            self._publish_sql, task_id, version, data, None, self._max_events
        )
        self._notifier.send(
            format_notice(task_id, int(position), version, data, self._notify_limit)
        )

    async def destroy(self, task_id: str) -> None:
        """No-op: the retention job deletes a finished task's log."""
        del task_id

    async def subscribe(
        self, task_id: str, *, after: TaskVersion
    ) -> AsyncGenerator[VersionedEvent, None]:
        """Yields the events of `task_id` newer than `after`, then live ones.

        Raises:
            EventLogTrimmedError: If events this subscriber has not seen
                were trimmed from the log.
        """
        floor = version_int(after)
        watch = self._join(task_id)
        cursor = 0
        placed = False
        current, seen = -1, set[bytes]()
        try:
            while True:
                changed = watch.changed
                # A new subscriber's first read is from the table: the shared
                # buffer may still hold entries of a deleted task of that id.
                cached = watch.cached(cursor) if placed else None
                if cached is not None:
                    entries, reached = cached, cursor
                else:
                    entries, reached = await self._read(watch, cursor, floor)
                    placed = True
                    if watch.position is None and len(entries) < _PAGE:
                        # A read to the end tells the shared reader where the
                        # log ends; notifications take it from there.
                        watch.position, watch.base = reached, reached + 1
                for seq, version, payload in entries:
                    cursor = seq
                    if floor > 0 and version <= floor:
                        continue
                    if version != current:
                        current, seen = version, set()
                    if payload in seen:
                        continue
                    seen.add(payload)
                    event = self._shared_decode(watch, seq, payload)
                    if event is not None:
                        yield VersionedEvent(event, TaskVersion(version))
                cursor = max(cursor, reached)
                if not entries and (watch.position is None or watch.position <= cursor):
                    await changed.wait()
        finally:
            self._leave(watch)

    def _shared_decode(self, watch: _Watch, seq: int, payload: bytes) -> Event | None:
        """Decodes an entry once for all the watch's subscribers.

        Like the SDK's own event queue, every local subscriber of a task gets
        the same event object.
        """
        hit = watch.decoded.get(seq)
        if hit is not None and hit[0] == payload:
            return hit[1]
        event = self._decode(watch.task_id, seq, payload)
        if event is not None:
            if len(watch.decoded) >= self._buffer_size:
                watch.decoded.clear()
            watch.decoded[seq] = (payload, event)
        return event

    def _decode(self, task_id: str, seq: int, payload: bytes) -> Event | None:
        try:
            return decode_event(payload, key='')
        except CorruptDataError as e:
            # The row's name is built only when needed: this runs per delivery.
            key = row_key(self.schema, 'events', task_id=task_id, seq=seq)
            logger.error('Skipping an event: corrupt data in %s: %s', key, e.reason)
            return None

    async def _read(
        self, watch: _Watch, cursor: int, floor: int
    ) -> tuple[list[Entry], int]:
        """Reads the log after `cursor` from the table, retrying on errors.

        Returns:
            The entries newer than `floor`, and the position up to which the
            log has been read (entries at or below `floor` are skipped).

        Raises:
            EventLogTrimmedError: If entries after `cursor` newer than
                `floor` were trimmed.
        """
        failures = 0
        while True:
            try:
                async with self._reads:
                    records = await self._pool.fetch(
                        self._read_sql,
                        watch.task_id,
                        cursor,
                        floor if floor > 0 else -1,
                        _PAGE,
                    )
                break
            except Exception as e:
                failures += 1
                await self._pause(
                    failures, f'Reading the event log failed ({type(e).__name__})'
                )
        if not records:
            return [], cursor
        head = records[0]
        if head['trimmed_seq'] > cursor and head['trimmed_version'] > floor:
            raise EventLogTrimmedError(
                watch.task_id, cursor, int(head['trimmed_seq']) + 1
            )
        entries = [
            (r['seq'], r['version'], bytes(r['data']))
            for r in records
            if r['seq'] is not None
        ]
        if len(entries) == _PAGE:
            return entries, entries[-1][0]
        return entries, max(cursor, int(head['last_seq']))

    async def _pause(self, failures: int, what: str) -> None:
        base, cap = self._backoff
        delay = min(cap, random.random() * base * 2 ** min(failures, 16))  # noqa: S311
        logger.warning('%s; retrying in %.2f s', what, delay)
        telemetry.count_retry('postgres', 'stream')
        await asyncio.sleep(delay)

    def _join(self, task_id: str) -> _Watch:
        key = task_key(task_id)
        watch = self._watches.get(key)
        if watch is None:
            watch = self._watches[key] = _Watch(task_id, key)
            self._listener.add(key, lambda notice: self._ring(watch, notice))
        watch.refs += 1
        return watch

    def _leave(self, watch: _Watch) -> None:
        watch.refs -= 1
        if watch.refs > 0 or self._watches.get(watch.key) is not watch:
            return
        del self._watches[watch.key]
        self._listener.remove(watch.key)
        if watch.fetcher is not None:
            watch.fetcher.cancel()

    def _ring(self, watch: _Watch, notice: Notice | None) -> None:
        """Handles a notification, or a (re)connection (`None`)."""
        position = notice.position if notice is not None else None
        if position is not None and watch.position is not None:
            if position <= watch.position:
                return
            if (
                notice is not None
                and notice.data is not None
                and notice.version is not None
                and position == watch.position + 1
                and (watch.fetcher is None or watch.fetcher.done())
            ):
                # The event came with the notification: no read needed.
                watch.extend(
                    [(position, notice.version, notice.data)], self._buffer_size
                )
                watch.advance()
                return
        watch.dirty = True
        if watch.fetcher is None or watch.fetcher.done():
            watch.fetcher = asyncio.create_task(
                self._fetch(watch), name='a2a-scale-postgres-fetch'
            )

    async def recheck(self) -> int:
        """Catches up every watched task whose log grew unnoticed.

        One query reads the log positions of all the tasks this replica
        watches; a task whose log is ahead of its reader (a notification was
        lost, e.g. its sender died right after the commit) is read now.

        Returns:
            How many tasks were behind.
        """
        watches = {w.task_id: w for w in self._watches.values()}
        if not watches:
            return 0
        rows = await self._pool.fetch(self._positions_sql, list(watches))
        behind = 0
        for row in rows:
            watch = watches[row['task_id']]
            if watch.position is not None and int(row['last_seq']) > watch.position:
                behind += 1
                self._ring(watch, Notice(watch.key, int(row['last_seq'])))
        return behind

    async def _fetch(self, watch: _Watch) -> None:
        """Reads what is new in a task's log, once for all its subscribers."""
        failures = 0
        while watch.dirty:
            watch.dirty = False
            try:
                async with self._reads:
                    if watch.position is None:
                        last = await self._pool.fetchval(self._last_sql, watch.task_id)
                        watch.position = int(last or 0)
                        watch.base = watch.position + 1
                        watch.advance()
                        continue
                    records = await self._pool.fetch(
                        self._after_sql, watch.task_id, watch.position, _PAGE
                    )
            except asyncio.CancelledError:
                raise
            except Exception as e:
                failures += 1
                watch.dirty = True
                await self._pause(
                    failures, f'Reading the event log failed ({type(e).__name__})'
                )
                continue
            failures = 0
            if records:
                rows = [(r['seq'], r['version'], bytes(r['data'])) for r in records]
                watch.extend(rows, self._buffer_size)
                watch.advance()
                if len(rows) == _PAGE:
                    watch.dirty = True
