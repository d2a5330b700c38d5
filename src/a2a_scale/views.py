"""Plain `TaskStore` views over a `VersionedTaskStore`.

Code written against the SDK's plain `TaskStore` (the legacy request
handler, scripts, admin tools) can use a backend's versioned store through
`VersionedTaskStoreView`. Its `save` reads the current version and writes
with a compare-and-swap, retrying when another writer got there first.
"""

from __future__ import annotations

import asyncio

from a2a.server.cluster import (
    ConcurrentTaskModificationError,
    TaskVersion,
    VersionedTaskStore,
)
from a2a.server.context import ServerCallContext
from a2a.server.tasks import TaskStore
from a2a.types.a2a_pb2 import ListTasksRequest, ListTasksResponse, Task, TaskState

from a2a_scale.tasks import is_terminal


class VersionedTaskStoreView(TaskStore):
    """A plain `TaskStore` over any `VersionedTaskStore`.

    `save` is last-writer-wins, as the plain interface promises, but never
    loses a concurrent write silently: it retries the read-then-CAS cycle up
    to `max_attempts` times. Writes go without an event, so they are not
    streamed to subscribers.

    Args:
        store: The versioned store to read and write.
        max_attempts: How many read-then-CAS cycles `save` tries.
        retry_delay: Seconds to wait before the second attempt; doubles
            after each further conflict.
    """

    def __init__(
        self,
        store: VersionedTaskStore,
        *,
        max_attempts: int = 8,
        retry_delay: float = 0.001,
    ) -> None:
        if max_attempts < 1:
            raise ValueError(f'max_attempts must be at least 1, got {max_attempts}')
        self.store = store
        self.max_attempts = max_attempts
        self.retry_delay = retry_delay

    async def save(self, task: Task, context: ServerCallContext) -> None:
        """Writes `task` over whatever version is stored.

        Raises:
            ConcurrentTaskModificationError: If every attempt lost a race, the
                id belongs to another owner, or `task` is CANCELED and the
                stored task is absent or terminal (which no retry can fix).
        """
        delay = self.retry_delay
        for attempt in range(self.max_attempts):
            stored = await self.store.get(task.id, context)
            if task.status.state == TaskState.TASK_STATE_CANCELED and (
                stored is None or is_terminal(stored.task.status.state)
            ):
                raise ConcurrentTaskModificationError(task.id)
            try:
                await self.store.save(
                    task,
                    event=None,
                    prev=stored.task if stored is not None else None,
                    prev_version=(
                        stored.version if stored is not None else TaskVersion.MISSING
                    ),
                    context=context,
                )
            except ConcurrentTaskModificationError:
                if attempt + 1 == self.max_attempts:
                    raise
                await asyncio.sleep(delay)
                delay *= 2
            else:
                return

    async def get(self, task_id: str, context: ServerCallContext) -> Task | None:
        """Returns the task, without its version."""
        stored = await self.store.get(task_id, context)
        return stored.task if stored is not None else None

    async def list(
        self, params: ListTasksRequest, context: ServerCallContext
    ) -> ListTasksResponse:
        """Lists tasks through the versioned store."""
        return await self.store.list(params, context)

    async def delete(self, task_id: str, context: ServerCallContext) -> None:
        """Deletes the task through the versioned store."""
        await self.store.delete(task_id, context)
