"""What a `MemorySpace` keeps per task, and how it wakes subscribers."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from dataclasses import dataclass, field

from a2a.types.a2a_pb2 import StreamResponse, Task, TaskState
from google.protobuf.message import DecodeError


@dataclass(frozen=True)
class LogEntry:
    """One event of a task's log: the version it produced and its bytes."""

    version: int
    data: bytes


class TaskRecord:
    """A task id's stored task (if any) and event log."""

    def __init__(self, task_id: str) -> None:
        self.task_id = task_id
        self.owner: str | None = None
        self.data: bytes | None = None
        # A private parsed copy for listing; replaced on write, never mutated
        # and never handed out.
        self.task: Task | None = None
        self.state: int = TaskState.TASK_STATE_UNSPECIFIED
        self.version = 0
        self.expires_at: float | None = None
        self.log: deque[LogEntry] = deque()
        self.log_base = 0
        self.dropped_version = 0
        """The highest version the log cap dropped."""
        self._by_version: dict[int, list[bytes]] = {}

    @property
    def stored(self) -> bool:
        """Whether a task (not only published events) is stored."""
        return self.data is not None

    @property
    def log_end(self) -> int:
        """The sequence number the next log entry gets."""
        return self.log_base + len(self.log)

    def append(self, version: int, data: bytes, max_events: int) -> None:
        """Appends an event, dropping the oldest beyond `max_events`."""
        self.log.append(LogEntry(version, data))
        self._by_version.setdefault(version, []).append(data)
        while len(self.log) > max_events:
            dropped = self.log.popleft()
            self.log_base += 1
            self.dropped_version = max(self.dropped_version, dropped.version)
            same = self._by_version[dropped.version]
            same.remove(dropped.data)
            if not same:
                del self._by_version[dropped.version]

    def has_event(self, version: int, data: bytes) -> bool:
        """Whether the log holds `data` at `version` (compared as events)."""
        return any(
            logged == data or _same_event(logged, data)
            for logged in self._by_version.get(version, ())
        )


def _same_event(a: bytes, b: bytes) -> bool:
    # Map fields (metadata) may serialize in any order: compare parsed events.
    left, right = StreamResponse(), StreamResponse()
    try:
        left.ParseFromString(a)
        right.ParseFromString(b)
    except DecodeError:
        return False
    return left == right


@dataclass
class Cursor:
    """A subscriber's position in a task's log."""

    record: TaskRecord | None = None
    seq: int = 0
    version: int = 0
    """The version of the last entry handed to the subscriber."""


@dataclass(eq=False)
class Waiter:
    """Wakes one subscriber, on the event loop it runs in."""

    task_id: str
    instance_id: str
    loop: asyncio.AbstractEventLoop
    event: asyncio.Event = field(default_factory=asyncio.Event)
    closed: bool = False

    def wake(self) -> None:
        """Sets the event from any thread."""
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop:
            self.event.set()
            return
        with contextlib.suppress(RuntimeError):  # the loop is closed
            self.loop.call_soon_threadsafe(self.event.set)
