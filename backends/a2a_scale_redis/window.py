"""`EventWindow`: the recent entries of one task, shared by its local readers.

`Watch`: a replica's listener on one task, which hands entries to the window.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from a2a_scale_redis.keys import TaskKeys

EntryId = tuple[int, int]
Entry = tuple[EntryId, int, bytes | None]
"""An entry id, its task version, and its event bytes (`None`: undecodable)."""

MAX_SEQ = 2**64 - 1

_TRIM_CHECK = 64


def parse_id(raw: bytes | str) -> EntryId:
    """Parses a stream entry id (``<ms>-<seq>``)."""
    text = raw.decode() if isinstance(raw, bytes) else raw
    ms, _, seq = text.partition('-')
    return int(ms), int(seq or 0)


def format_id(entry_id: EntryId) -> str:
    """Formats an entry id for ``XRANGE``."""
    return f'{entry_id[0]}-{entry_id[1]}'


def follows(last: EntryId, entry_id: EntryId) -> bool:
    """Whether `entry_id` is the entry right after `last` in a task's log.

    A save logs its event as ``<version>-0`` and an event published without
    a save takes the next sequence number of its version, so the entry after
    ``v-s`` is ``v-(s+1)`` or ``(v+1)-0``. When this is not sure (a save
    without an event skips a version) the caller reads the log to know.
    """
    if entry_id[0] == last[0]:
        return last[1] != MAX_SEQ and entry_id[1] == last[1] + 1
    return entry_id[0] == last[0] + 1 and entry_id[1] == 0


class Cursor:
    """One subscriber's place in a window: the absolute index it reads next."""

    __slots__ = ('index', 'wake')

    def __init__(self) -> None:
        self.index = -1
        """Where the subscriber reads next in the window; -1: not placed yet."""
        self.wake = asyncio.Event()


class EventWindow:
    """The newest entries of a task, read by every local subscriber of it.

    Entries are appended once by the task's shared reader; each subscriber
    keeps a `Cursor` (an absolute index). The window keeps at most
    ``capacity`` entries, and drops those every cursor has passed, so a slow
    subscriber costs no memory beyond the window: one that falls out of it
    reads the task's log instead, or learns that it fell behind the log.
    """

    def __init__(self, capacity: int) -> None:
        self.entries: deque[Entry] = deque()
        self.first = 0
        """The absolute index of ``entries[0]``."""
        self.capacity = max(1, capacity)
        self.cursors: set[Cursor] = set()
        self.tail: EntryId | None = None
        """The id of the newest entry handed over; `None`: not known yet."""
        self._check_at = _TRIM_CHECK

    @property
    def end(self) -> int:
        """The absolute index the next appended entry gets."""
        return self.first + len(self.entries)

    def append(self, entries: list[Entry]) -> None:
        """Adds `entries` newer than the tail and wakes every subscriber.

        Entries up to the tail were handed over already (a read of the log
        can return what a wake-up or a local save brought meanwhile).
        """
        tail = self.tail
        if entries and tail is not None and entries[0][0] <= tail:
            entries = [e for e in entries if e[0] > tail]
        if not entries:
            return
        self.entries.extend(entries)
        self.tail = entries[-1][0]
        overflow = len(self.entries) - self.capacity
        if overflow > 0:
            for _ in range(overflow):
                self.entries.popleft()
            self.first += overflow
        if len(self.entries) >= self._check_at:
            self._trim()
        for cursor in self.cursors:
            cursor.wake.set()

    def place(self, cursor: Cursor, last: EntryId) -> bool:
        """Points `cursor` right after entry `last`, if the window holds it.

        Returns:
            Whether the window holds every entry after `last`.
        """
        entries = self.entries
        if self.tail is None:
            return False
        if not entries:
            if last < self.tail:
                return False
        elif entries[0][0] > last and not follows(last, entries[0][0]):
            return False
        index = self.first
        for entry in entries:
            if entry[0] > last:
                break
            index += 1
        cursor.index = index
        return True

    def take(self, cursor: Cursor) -> list[Entry] | None:
        """Returns the entries from `cursor` on and moves it to the end.

        Returns:
            The entries (maybe none), or `None` when some were dropped before
            the subscriber read them.
        """
        if cursor.index < self.first:
            return None
        start = cursor.index - self.first
        cursor.index = self.end
        if start == 0 and len(self.entries) == 1:
            return [self.entries[0]]
        return [self.entries[i] for i in range(start, len(self.entries))]

    def clear(self) -> None:
        """Forgets every entry (the log was deleted); cursors fall out."""
        self.first = self.end
        self.entries.clear()
        self.tail = None

    def _trim(self) -> None:
        """Drops the entries every placed cursor has passed."""
        placed = [c.index for c in self.cursors if c.index >= 0]
        lowest = min(placed, default=self.end)
        drop = min(lowest, self.end) - self.first
        for _ in range(drop):
            self.entries.popleft()
        self.first += max(0, drop)
        self._check_at = max(_TRIM_CHECK, 2 * len(self.entries))


class Watch:
    """This replica's listener on one task: one channel, one shared reader."""

    def __init__(self, keys: TaskKeys, capacity: int) -> None:
        self.keys = keys
        self.window = EventWindow(capacity)
        self.dirty = False
        self.fetcher: asyncio.Task[None] | None = None
        self.gone: set[Cursor] = set()
        """Cursors whose task was deleted under them."""
        self.counter = 0
        """The last local id of a pubsub-mode entry."""
        self.saving = 0
        """Saves of this task by this replica in flight."""
        self.deferred: list[bytes] = []
        """Wake-ups that arrived while those saves ran, in order."""
        self.flush: asyncio.TimerHandle | None = None
        """Handles the deferred wake-ups if no save returns in time."""
        self.own: dict[EntryId, Entry] = {}
        """Entries this replica's saves logged, until their wake-up."""

    @property
    def fetching(self) -> bool:
        """Whether the shared reader is reading the log."""
        return self.fetcher is not None and not self.fetcher.done()

    def hand_over(self, entry: Entry | None, entry_id: EntryId) -> bool:
        """Whether the window holds entry `entry_id` now, appending `entry`.

        Wake-ups arrive in log order, so an entry that follows the last one
        handed over leaves no gap, unless an earlier wake-up left the shared
        reader to read the log: then the reader hands it over.
        """
        tail = self.window.tail
        if tail is None:
            return False
        if entry_id <= tail:
            return True
        if entry is None or self.dirty or self.fetching:
            return False
        if not follows(tail, entry_id):
            return False
        self.window.append([entry])
        return True
