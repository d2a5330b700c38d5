"""The writing replica: CAS saves of stamped events, as the SDK makes them."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass

from a2a.server.cluster import TaskVersion
from a2a.types.a2a_pb2 import Task

from benchmarks.adapters import Target
from benchmarks.workload import realistic_task, stamped_event


@dataclass
class _Tracked:
    task: Task
    version: TaskVersion


class Writer:
    """Writes tasks through a target, tracking each task's version."""

    def __init__(self, target: Target, concurrency: int = 16) -> None:
        self.target = target
        self.concurrency = concurrency
        self._tasks: dict[str, _Tracked] = {}

    async def save(self, task_id: str, phase: str, seq: int) -> TaskVersion:
        """Saves the next event of `task_id` (creating the task first)."""
        tracked = self._tasks.get(task_id)
        if tracked is None:
            tracked = _Tracked(realistic_task(task_id), TaskVersion.MISSING)
            self._tasks[task_id] = tracked
        event = stamped_event(tracked.task, phase, seq)
        tracked.version = await self.target.save(tracked.task, event, tracked.version)
        return tracked.version

    async def each(self, task_ids: Iterable[str], phase: str, seq: int) -> None:
        """Saves one event on each task, `concurrency` tasks at a time."""
        queue = list(task_ids)

        async def work() -> None:
            while queue:
                await self.save(queue.pop(), phase, seq)

        await asyncio.gather(*(work() for _ in range(self.concurrency)))

    async def burst(self, task_ids: list[str], phase: str, count: int) -> None:
        """Saves events ``1..count`` on every task, in order per task."""
        queue = list(task_ids)

        async def work() -> None:
            while queue:
                task_id = queue.pop()
                for seq in range(1, count + 1):
                    await self.save(task_id, phase, seq)

        await asyncio.gather(*(work() for _ in range(self.concurrency)))
