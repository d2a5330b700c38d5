"""Deliberately broken memory backends: each must fail a conformance test.

They reproduce real defects (a silent gap for a slow subscriber, a terminal
task brought back, a stream that ends on its own, a lost wake-up after a
failed read, a delete that keeps the old log, a refused terminal re-save,
an empty id stored, running-task claims that go to two claimers, take a
live replica's tasks, miss a stopped replica's or let any replica drop a
record) so that `test_suite_catches` can prove the suite sees each of them.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncGenerator, Sequence
from typing import Any, ClassVar

from a2a.server.cluster import (
    ConcurrentTaskModificationError,
    TaskVersion,
    VersionedEvent,
)
from a2a.types.a2a_pb2 import TaskState, TaskStatusUpdateEvent

from a2a_scale.backend import Backend
from a2a_scale.errors import CorruptDataError
from a2a_scale.memory import MemoryBackend
from a2a_scale.memory.records import Cursor, LogEntry
from a2a_scale.memory.running import MemoryRunningTasks
from a2a_scale.memory.settings import MemorySettings
from a2a_scale.memory.space import MemorySpace
from a2a_scale.memory.stream import MemoryEventStream
from a2a_scale.memory.testing import inject_faults
from a2a_scale.recovery import RunningTask
from a2a_scale.settings import ScaleSettings
from a2a_scale.tasks import is_terminal
from a2a_scale.testing import FaultPlan


class SilentGapSpace(MemorySpace):
    """Skips what the log cap dropped, with no error (the old behaviour)."""

    def read(self, task_id: str, cursor: Cursor) -> list[LogEntry]:
        with self.lock:
            record = self._live(task_id)
            if record is None:
                return []
            if cursor.record is not record:
                cursor.record, cursor.seq = record, record.log_base
            cursor.seq = max(cursor.seq, record.log_base)
            entries = list(
                itertools.islice(record.log, cursor.seq - record.log_base, None)
            )
            cursor.seq = record.log_end
            return entries


class ResurrectingSpace(MemorySpace):
    """Lets a save at the current version move a terminal task to any state."""

    def save(self, task_id: str, owner: str, data: bytes, **kwargs: Any) -> int:
        with self.lock:
            record = self._records.get(task_id)
            if (
                record is not None
                and is_terminal(record.state)
                and record.version == kwargs['prev_version']
                and kwargs['state'] != TaskState.TASK_STATE_CANCELED
            ):
                record.state = kwargs['state']
            return super().save(task_id, owner, data, **kwargs)


class TerminalResaveRefusingSpace(MemorySpace):
    """Refuses any save over a terminal task (the old AWS behaviour)."""

    def save(self, task_id: str, owner: str, data: bytes, **kwargs: Any) -> int:
        with self.lock:
            record = self._records.get(task_id)
            if record is not None and is_terminal(record.state):
                raise ConcurrentTaskModificationError(task_id)
            return super().save(task_id, owner, data, **kwargs)


class EmptyIdCorruptSpace(MemorySpace):
    """Refuses an empty id with `CorruptDataError` (the old memory behaviour)."""

    def save(self, task_id: str, owner: str, data: bytes, **kwargs: Any) -> int:
        if not task_id:
            raise CorruptDataError(self.key('task', task_id), 'empty id')
        return super().save(task_id, owner, data, **kwargs)


class LogKeepingSpace(MemorySpace):
    """Deletes the task but keeps its event log for a reused id."""

    def delete(self, task_id: str, owner: str) -> bool:
        with self.lock:
            record = self._live(task_id)
            if record is None or not record.stored or record.owner != owner:
                return False
            record.data = record.task = record.owner = None
            record.state = TaskState.TASK_STATE_UNSPECIFIED
            return True


class EndingStream(MemoryEventStream):
    """Ends a subscription after a terminal status event."""

    async def subscribe(
        self, task_id: str, *, after: TaskVersion
    ) -> AsyncGenerator[VersionedEvent, None]:
        async for versioned in super().subscribe(task_id, after=after):
            yield versioned
            event = versioned.event
            if isinstance(event, TaskStatusUpdateEvent) and is_terminal(
                event.status.state
            ):
                return


class WakeLosingStream(MemoryEventStream):
    """Swallows a failed read and waits for the next wake-up (losing this one)."""

    async def _read(self, task_id: str, cursor: Cursor) -> list[LogEntry]:
        try:
            return self.space.read(task_id, cursor)
        except ConnectionError:
            return []
        except RuntimeError:
            return []


class DoubleClaimRunningTasks(MemoryRunningTasks):
    """Reads the orphans, then removes them after an await (a racy claim)."""

    async def claim_orphans(self, *, older_than: float) -> list[RunningTask]:
        with self.space.lock:
            beats = self.space.replicas()
            found = [
                r
                for r in self.space.running.values()
                if r.instance_id != self.instance_id and r.instance_id not in beats
            ]
        await asyncio.sleep(0)
        with self.space.lock:
            for record in found:
                self.space.running.pop(record.task_id, None)
        return found


class LiveClaimingRunningTasks(MemoryRunningTasks):
    """Claims every other replica's records, heartbeat or not."""

    async def claim_orphans(self, *, older_than: float) -> list[RunningTask]:
        with self.space.lock:
            claimed = [
                r
                for r in self.space.running.values()
                if r.instance_id != self.instance_id
            ]
            for record in claimed:
                del self.space.running[record.task_id]
            return claimed


class GoneKeepingRunningTasks(MemoryRunningTasks):
    """Claims only replicas with an old heartbeat, never those without one."""

    async def claim_orphans(self, *, older_than: float) -> list[RunningTask]:
        with self.space.lock:
            silent = set(
                self.space.silent_replicas(older_than, exclude=self.instance_id)
            )
            claimed = [
                r for r in self.space.running.values() if r.instance_id in silent
            ]
            for record in claimed:
                del self.space.running[record.task_id]
            return claimed


class AnyoneRemovesRunningTasks(MemoryRunningTasks):
    """Drops a task's record whichever replica asks."""

    async def remove(self, task_id: str, instance_id: str) -> None:
        with self.space.lock:
            self.space.running.pop(task_id, None)


class HolderBlindRunningTasks(MemoryRunningTasks):
    """Drops records in bulk without checking who holds them."""

    async def remove_many(self, records: Sequence[tuple[str, str]]) -> None:
        with self.space.lock:
            for task_id, _ in records:
                self.space.running.pop(task_id, None)


class BrokenMemoryFactory:
    """Builds memory backends with a broken space or stream class."""

    space_class: ClassVar[type[MemorySpace]] = MemorySpace
    stream_class: ClassVar[type[MemoryEventStream]] = MemoryEventStream
    running_class: ClassVar[type[MemoryRunningTasks]] = MemoryRunningTasks
    _spaces: ClassVar[dict[str, MemorySpace]] = {}

    def create_backend(self, namespace: str) -> Backend:
        return self._build(namespace, MemorySettings())

    def create_backend_retaining(self, namespace: str, events: int) -> Backend:
        return self._build(namespace, MemorySettings(max_events_per_task=events))

    def inject_faults(self, backend: Backend, plan: FaultPlan) -> None:
        assert isinstance(backend, MemoryBackend)
        inject_faults(backend, plan)

    def _build(self, namespace: str, settings: MemorySettings) -> Backend:
        space = self._spaces.get(namespace)
        if space is None:
            space = self._spaces[namespace] = self.space_class(namespace)
        backend = MemoryBackend(
            ScaleSettings(namespace=namespace), settings, space=space
        )
        if self.stream_class is not MemoryEventStream:
            backend._event_stream = self.stream_class(
                space,
                instance_id=backend.settings.instance_id,
                max_events_per_task=settings.max_events_per_task,
            )
        if self.running_class is not MemoryRunningTasks:
            backend._running_tasks = self.running_class(
                space, backend.settings.instance_id
            )
        return backend
