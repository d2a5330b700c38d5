"""`MemoryClusterView`: an operator's view of a memory space."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from a2a_scale.codec import decode_event
from a2a_scale.ops import ClusterView, FeedEvent, OperatorTask

if TYPE_CHECKING:
    from a2a_scale.memory.records import LogEntry
    from a2a_scale.memory.space import MemorySpace


class MemoryClusterView(ClusterView):
    """Every task, replica and event of one memory space.

    A memory space lives in one process: the view sees the replicas of this
    process only (a separate ``a2a-scale`` process sees an empty space).
    """

    feed_source = 'the memory space of this process'
    process_local = True

    def __init__(self, space: MemorySpace) -> None:
        super().__init__('memory', space.namespace)
        self.space = space

    async def all_tasks(self) -> list[OperatorTask]:
        """Every stored task of the space."""
        return [OperatorTask(t, o, v) for o, v, t in self.space.stored_tasks()]

    async def find_task(self, task_id: str) -> OperatorTask | None:
        """The task with `task_id`, whoever owns it, or `None`."""
        found = self.space.stored_tasks(task_id)
        return OperatorTask(found[0][2], found[0][0], found[0][1]) if found else None

    async def heartbeats(self) -> dict[str, float]:
        """Each replica's last heartbeat, converted to epoch seconds."""
        now, clock = time.time(), self.space.clock()
        return {i: now - (clock - t) for i, t in self.space.replicas().items()}

    async def subscriptions(self) -> dict[str, int]:
        """Open subscriptions of each registered replica."""
        return {
            i: self.space.waiter_count(instance_id=i) for i in self.space.replicas()
        }

    async def events(self) -> AsyncIterator[FeedEvent]:
        """Yields every event appended to the space's logs from now on."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[str, LogEntry, float]] = asyncio.Queue()

        def listener(task_id: str, entry: LogEntry) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, (task_id, entry, time.time()))

        with self.space.lock:
            self.space.feeds.append(listener)
        try:
            while True:
                task_id, entry, saved_at = await queue.get()
                key = self.space.key('events', task_id)
                yield FeedEvent(
                    task_id,
                    entry.version,
                    decode_event(entry.data, key=f'{key}#{entry.version}'),
                    saved_at,
                )
        finally:
            with self.space.lock:
                self.space.feeds.remove(listener)
