"""The state that memory backends of one namespace share.

A `MemorySpace` holds the tasks, their event logs, the push-notification
configs and the replica registry of one namespace. Every `MemoryBackend`
built for that namespace in the process uses the same space, so several
backends act as replicas of one cluster. The space may be used from several
event loops and threads at once: one lock guards the state, it is never held
across an ``await``, and subscribers are woken on their own loop.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
import weakref
from collections.abc import Callable

from a2a.server.cluster import ConcurrentTaskModificationError
from a2a.types.a2a_pb2 import Task, TaskState

from a2a_scale.codec import decode_task
from a2a_scale.errors import EventGapError
from a2a_scale.memory.records import Cursor, LogEntry, TaskRecord, Waiter
from a2a_scale.recovery import RunningTask
from a2a_scale.tasks import check_task_id, check_terminal_save, is_terminal

logger = logging.getLogger(__name__)

Clock = Callable[[], float]
FeedListener = Callable[[str, LogEntry], None]

_registry_lock = threading.Lock()
_registry: weakref.WeakValueDictionary[str, MemorySpace] = weakref.WeakValueDictionary()


def get_space(namespace: str) -> MemorySpace:
    """Returns the process-wide space of `namespace`, creating it if needed.

    The registry holds spaces weakly: a space lives as long as a backend
    (or anything else) references it.
    """
    with _registry_lock:
        space = _registry.get(namespace)
        if space is None:
            space = MemorySpace(namespace)
            _registry[namespace] = space
        return space


class MemorySpace:
    """Tasks, event logs, push configs and replicas of one namespace.

    Args:
        namespace: The namespace; it prefixes the keys named in errors.
        clock: Returns seconds; drives retention and heartbeats. Tests
            inject a fake one.
    """

    def __init__(self, namespace: str = 'a2a', *, clock: Clock = time.monotonic):
        self.namespace = namespace
        self.clock = clock
        self.lock = threading.RLock()
        self._records: dict[str, TaskRecord] = {}
        self._expiry: list[tuple[float, int, str]] = []
        self._expiry_seq = itertools.count()
        self._waiters: dict[str, set[Waiter]] = {}
        self._push: dict[str, dict[str, dict[str, bytes]]] = {}
        self._replicas: dict[str, float] = {}
        self.running: dict[str, RunningTask] = {}
        """Which replica runs which task, by task id; guarded by `lock`."""
        self.feeds: list[FeedListener] = []
        """Called under `lock` with each event appended to any log."""

    def key(self, kind: str, task_id: str) -> str:
        """The name of an entry, as errors and logs show it."""
        return f'{self.namespace}:{kind}:{task_id}'

    # --- Tasks -------------------------------------------------------------

    def _live(self, task_id: str) -> TaskRecord | None:
        """Returns the record of `task_id`, dropping it if it has expired."""
        record = self._records.get(task_id)
        if (
            record is not None
            and record.expires_at is not None
            and record.expires_at <= self.clock()
        ):
            self._drop(record)
            return None
        return record

    def _drop(self, record: TaskRecord) -> None:
        if self._records.get(record.task_id) is record:
            del self._records[record.task_id]
            self._push.pop(record.task_id, None)

    def _expire_at(self, record: TaskRecord, when: float) -> None:
        record.expires_at = when
        heapq.heappush(self._expiry, (when, next(self._expiry_seq), record.task_id))

    def save(
        self,
        task_id: str,
        owner: str,
        data: bytes,
        *,
        state: int,
        prev_version: int,
        event: bytes | None,
        retention: float,
        max_events: int,
    ) -> int:
        """Writes a task (and its event) atomically; returns the new version.

        Raises:
            ConcurrentTaskModificationError: If `prev_version` is stale, the
                id belongs to another owner, or a cancel finds the task
                absent or terminal.
        """
        check_task_id(task_id)
        parsed = decode_task(data, key=self.key('task', task_id))
        with self.lock:
            record = self._live(task_id)
            stored = record is not None and record.stored
            if record is not None and stored and record.owner != owner:
                raise ConcurrentTaskModificationError(task_id)
            if state == TaskState.TASK_STATE_CANCELED:
                if record is None or not stored or is_terminal(record.state):
                    raise ConcurrentTaskModificationError(task_id)
            elif prev_version == 0:
                if stored:
                    raise ConcurrentTaskModificationError(task_id)
            elif record is None or not stored or record.version != prev_version:
                raise ConcurrentTaskModificationError(task_id)
            else:
                check_terminal_save(task_id, record.state, state)
            if record is None:
                record = self._records[task_id] = TaskRecord(task_id)
            was_terminal = stored and is_terminal(record.state)
            record.owner = owner
            record.data = data
            record.task = parsed
            record.state = state
            record.version += 1
            if not is_terminal(state):
                record.expires_at = None
            elif not was_terminal or record.expires_at is None:
                self._expire_at(record, self.clock() + retention)
            if event is not None:
                record.append(record.version, event, max_events)
                self._notify(task_id, record.log[-1])
            return record.version

    def get(self, task_id: str, owner: str) -> tuple[bytes, int] | None:
        """Returns the task's bytes and version if `owner` owns it."""
        with self.lock:
            record = self._live(task_id)
            if record is None or record.data is None or record.owner != owner:
                return None
            return record.data, record.version

    def tasks_of(self, owner: str) -> list[Task]:
        """Returns the private parsed tasks of `owner`; do not mutate them."""
        with self.lock:
            records = list(self._records.values())
            now = self.clock()
            return [
                r.task
                for r in records
                if r.owner == owner
                and r.task is not None
                and (r.expires_at is None or r.expires_at > now)
            ]

    def delete(self, task_id: str, owner: str) -> bool:
        """Deletes the task, its log and its push configs if `owner` owns it."""
        with self.lock:
            record = self._live(task_id)
            if record is None or not record.stored or record.owner != owner:
                return False
            self._drop(record)
            self._notify(task_id)
            return True

    def sweep(self) -> int:
        """Drops every expired task and log; returns how many."""
        dropped = 0
        with self.lock:
            now = self.clock()
            while self._expiry and self._expiry[0][0] <= now:
                _, _, task_id = heapq.heappop(self._expiry)
                record = self._records.get(task_id)
                if (
                    record is not None
                    and record.expires_at is not None
                    and record.expires_at <= now
                ):
                    self._drop(record)
                    dropped += 1
        return dropped

    def clear(self) -> int:
        """Forgets all tasks, logs, push configs and running records.

        Returns:
            How many tasks it forgot.
        """
        with self.lock:
            dropped = len(self._records)
            self._records.clear()
            self._expiry.clear()
            self._push.clear()
            self.running.clear()
            return dropped

    def task_count(self) -> int:
        """The number of records (tasks or published-only logs) held."""
        with self.lock:
            return len(self._records)

    # --- Event logs --------------------------------------------------------

    def publish(
        self,
        task_id: str,
        version: int,
        data: bytes,
        *,
        retention: float,
        max_events: int,
    ) -> bool:
        """Appends a published event unless the log already holds it.

        Returns:
            Whether the event was appended.
        """
        with self.lock:
            record = self._live(task_id)
            if record is not None and record.has_event(version, data):
                return False
            if record is None:
                # Published without a stored task (a message-mode reply):
                # keep the log for `retention` only.
                record = self._records[task_id] = TaskRecord(task_id)
                self._expire_at(record, self.clock() + retention)
            record.append(version, data, max_events)
            self._notify(task_id, record.log[-1])
            return True

    def read(self, task_id: str, cursor: Cursor) -> list[LogEntry]:
        """Returns the log entries after `cursor` and advances it.

        Raises:
            EventGapError: If entries after `cursor` were dropped by the log
                cap, or the log it read was deleted and the id reused.
        """
        with self.lock:
            record = self._live(task_id)
            if record is None:
                return []
            if cursor.record is None:
                if record.dropped_version > cursor.version:
                    raise EventGapError(
                        task_id,
                        position=cursor.version,
                        reason=(
                            f'events up to version {record.dropped_version} '
                            'were dropped by the log cap (MAX_EVENTS_PER_TASK)'
                        ),
                    )
                cursor.record, cursor.seq = record, record.log_base
            elif cursor.record is not record:
                raise EventGapError(
                    task_id,
                    position=cursor.version,
                    reason='the task was deleted and its id reused',
                )
            if cursor.seq < record.log_base:
                raise EventGapError(
                    task_id,
                    position=cursor.version,
                    reason=(
                        f'the subscriber fell {record.log_base - cursor.seq} '
                        f'events behind the {len(record.log)}-event log '
                        '(MAX_EVENTS_PER_TASK)'
                    ),
                )
            entries = list(
                itertools.islice(record.log, cursor.seq - record.log_base, None)
            )
            cursor.seq = record.log_end
            return entries

    def add_waiter(self, waiter: Waiter) -> None:
        """Registers a subscriber to be woken on new events."""
        with self.lock:
            self._waiters.setdefault(waiter.task_id, set()).add(waiter)

    def remove_waiter(self, waiter: Waiter) -> None:
        """Unregisters a subscriber; idempotent."""
        with self.lock:
            waiters = self._waiters.get(waiter.task_id)
            if waiters is not None:
                waiters.discard(waiter)
                if not waiters:
                    del self._waiters[waiter.task_id]

    def waiter_count(
        self, task_id: str | None = None, instance_id: str | None = None
    ) -> int:
        """Counts registered subscribers, of one task and/or one replica."""
        with self.lock:
            groups = (
                [self._waiters.get(task_id, set())]
                if task_id is not None
                else list(self._waiters.values())
            )
            return sum(
                1
                for group in groups
                for w in group
                if instance_id is None or w.instance_id == instance_id
            )

    def close_waiters(self, instance_id: str) -> int:
        """Ends the subscriptions of replica `instance_id`; returns how many."""
        with self.lock:
            closing = [
                w
                for group in self._waiters.values()
                for w in group
                if w.instance_id == instance_id
            ]
            for waiter in closing:
                waiter.closed = True
                self.remove_waiter(waiter)
                waiter.wake()
            return len(closing)

    def _notify(self, task_id: str, entry: LogEntry | None = None) -> None:
        for waiter in list(self._waiters.get(task_id, ())):
            waiter.wake()
        if entry is not None:
            for listener in list(self.feeds):
                listener(task_id, entry)

    def stored_tasks(self, task_id: str | None = None) -> list[tuple[str, int, Task]]:
        """(owner, version, task) of every live stored task, or of `task_id`."""
        with self.lock:
            if task_id is not None:
                found = self._live(task_id)
                records = [found] if found is not None else []
            else:
                records = [
                    r for r in list(self._records.values()) if self._live(r.task_id)
                ]
            return [
                (r.owner or '', r.version, r.task)
                for r in records
                if r.task is not None and r.stored
            ]

    # --- Push configs ------------------------------------------------------

    def push_set(self, task_id: str, owner: str, config_id: str, data: bytes) -> None:
        """Stores (or replaces) one push config of `owner` for `task_id`."""
        with self.lock:
            configs = self._push.setdefault(task_id, {}).setdefault(owner, {})
            configs.pop(config_id, None)
            configs[config_id] = data

    def push_get(self, task_id: str, owner: str | None) -> list[bytes]:
        """Returns the configs of `owner`, or of every owner when `None`."""
        with self.lock:
            self._live(task_id)
            by_owner = self._push.get(task_id, {})
            if owner is not None:
                return list(by_owner.get(owner, {}).values())
            return [data for configs in by_owner.values() for data in configs.values()]

    def push_delete(self, task_id: str, owner: str, config_id: str | None) -> None:
        """Deletes one config of `owner` (or all of them when `None`)."""
        with self.lock:
            by_owner = self._push.get(task_id)
            if by_owner is None or owner not in by_owner:
                return
            if config_id is None:
                del by_owner[owner]
            else:
                by_owner[owner].pop(config_id, None)
                if not by_owner[owner]:
                    del by_owner[owner]
            if not by_owner:
                del self._push[task_id]

    # --- Replicas ----------------------------------------------------------

    def beat(self, instance_id: str) -> None:
        """Records that replica `instance_id` is alive now."""
        with self.lock:
            self._replicas[instance_id] = self.clock()

    def forget(self, instance_id: str) -> bool:
        """Removes a replica from the registry; returns whether it was there."""
        with self.lock:
            return self._replicas.pop(instance_id, None) is not None

    def replicas(self) -> dict[str, float]:
        """Returns each registered replica's last heartbeat time."""
        with self.lock:
            return dict(self._replicas)

    def silent_replicas(self, older_than: float, *, exclude: str) -> list[str]:
        """Returns replicas whose last heartbeat is `older_than` seconds old."""
        with self.lock:
            now = self.clock()
            return sorted(
                instance_id
                for instance_id, last in self._replicas.items()
                if instance_id != exclude and now - last >= older_than
            )
