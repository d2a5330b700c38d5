"""`MemoryEventStream`: the memory backend's `TaskEventStream`."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncGenerator

from a2a.server.cluster import TaskEventStream, TaskVersion, VersionedEvent

from a2a_scale import telemetry
from a2a_scale.codec import decode_event, encode_event
from a2a_scale.errors import EventGapError
from a2a_scale.memory.records import Cursor, LogEntry, Waiter
from a2a_scale.memory.space import MemorySpace
from a2a_scale.memory.store import (
    DEFAULT_MAX_EVENTS_PER_TASK,
    DEFAULT_RETENTION_SECONDS,
)
from a2a_scale.tasks import version_int

logger = logging.getLogger(__name__)

_FIRST_RETRY_DELAY = 0.005
_MAX_RETRY_DELAY = 0.5


class MemoryEventStream(TaskEventStream):
    """A `TaskEventStream` that tails the task logs of a `MemorySpace`.

    The store appends every saved event to the task's log. `publish` appends
    only what the log does not hold yet (compared on version and payload), so
    events the SDK publishes without a save, such as a message-mode reply,
    still reach subscribers, and the usual publish after a save costs a
    lookup. `subscribe` replays the log, then waits for appends: every
    subscriber of a task sees the same order, without gaps or duplicates.

    Args:
        space: The shared state.
        instance_id: The replica that owns the subscriptions made here.
        retention_seconds: How long a log of published-only events is kept.
        max_events_per_task: The cap of each task's event log.
    """

    def __init__(
        self,
        space: MemorySpace,
        *,
        instance_id: str = 'local',
        retention_seconds: float = DEFAULT_RETENTION_SECONDS,
        max_events_per_task: int = DEFAULT_MAX_EVENTS_PER_TASK,
    ) -> None:
        self.space = space
        self.instance_id = instance_id
        self.retention_seconds = retention_seconds
        self.max_events_per_task = max_events_per_task

    async def publish(self, task_id: str, event: VersionedEvent) -> None:
        """Appends `event` to the task's log unless it is already there."""
        self.space.publish(
            task_id,
            version_int(event.version),
            encode_event(event.event),
            retention=self.retention_seconds,
            max_events=self.max_events_per_task,
        )

    async def subscribe(
        self, task_id: str, *, after: TaskVersion
    ) -> AsyncGenerator[VersionedEvent, None]:
        """Yields the logged events of `task_id` newer than `after`, then live ones.

        The generator never ends on its own while the replica runs; close it
        with ``aclose()`` (or cancel its consumer) to unregister. It ends when
        the replica stops or is reaped.

        Raises:
            EventGapError: If the subscriber fell behind the log cap
                (``max_events_per_task``), or the task was deleted and its
                id reused while it was subscribed.
        """
        floor = version_int(after)
        waiter = Waiter(task_id, self.instance_id, asyncio.get_running_loop())
        cursor = Cursor(version=floor)
        key = self.space.key('event', task_id)
        self.space.add_waiter(waiter)
        try:
            while not waiter.closed:
                waiter.event.clear()
                entries = await self._read(task_id, cursor)
                for entry in entries:
                    if floor and entry.version <= floor:
                        continue
                    cursor.version = entry.version
                    yield VersionedEvent(
                        event=decode_event(entry.data, key=key),
                        version=TaskVersion(entry.version),
                    )
                if not entries:
                    await waiter.event.wait()
        finally:
            self.space.remove_waiter(waiter)

    async def _read(self, task_id: str, cursor: Cursor) -> list[LogEntry]:
        """Reads the log after `cursor`, retrying any failure but a gap.

        The position advances only once a read returned: a failed read
        keeps it, so no wake-up and no entry is lost, and the read is
        retried with a backoff until it succeeds.
        """
        delay = _FIRST_RETRY_DELAY
        while True:
            trial = dataclasses.replace(cursor)
            try:
                entries = self.space.read(task_id, trial)
            except EventGapError:
                raise
            except Exception as e:
                logger.warning(
                    'Reading the event log of task %s failed (%s); retrying in %.2f s',
                    task_id,
                    type(e).__name__,
                    delay,
                )
                telemetry.count_retry('memory', 'stream')
                await asyncio.sleep(delay)
                delay = min(delay * 2, _MAX_RETRY_DELAY)
            else:
                cursor.record, cursor.seq = trial.record, trial.seq
                return entries

    async def destroy(self, task_id: str) -> None:
        """Does nothing: finished tasks' logs are dropped by retention."""
        del task_id

    def subscriber_count(self, task_id: str | None = None) -> int:
        """Counts this replica's live subscriptions (of one task, or all)."""
        return self.space.waiter_count(task_id, self.instance_id)
