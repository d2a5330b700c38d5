"""`RedisPlainTaskStore`: the plain (last write wins) `TaskStore` view."""

from __future__ import annotations

from typing import TYPE_CHECKING

from a2a.server.cluster import ConcurrentTaskModificationError, TaskVersion
from a2a.server.tasks.task_store import TaskStore

if TYPE_CHECKING:
    from a2a.server.context import ServerCallContext
    from a2a.types.a2a_pb2 import ListTasksRequest, ListTasksResponse, Task

    from a2a_scale_redis.store import RedisTaskStore


class RedisPlainTaskStore(TaskStore):
    """A plain `TaskStore` over `RedisTaskStore`: each save wins."""

    def __init__(self, store: RedisTaskStore, *, max_attempts: int = 20) -> None:
        self._store = store
        self._max_attempts = max_attempts

    async def save(self, task: Task, context: ServerCallContext) -> None:
        """Saves `task` over whatever version is stored."""
        for _ in range(self._max_attempts):
            stored = await self._store.get(task.id, context)
            version = stored.version if stored is not None else TaskVersion.MISSING
            try:
                await self._store.save(
                    task, event=None, prev=None, prev_version=version, context=context
                )
            except ConcurrentTaskModificationError:
                continue
            return
        raise ConcurrentTaskModificationError(task.id)

    async def get(self, task_id: str, context: ServerCallContext) -> Task | None:
        """Returns the task, or `None`."""
        stored = await self._store.get(task_id, context)
        return stored.task if stored is not None else None

    async def list(
        self, params: ListTasksRequest, context: ServerCallContext
    ) -> ListTasksResponse:
        """Lists tasks."""
        return await self._store.list(params, context)

    async def delete(self, task_id: str, context: ServerCallContext) -> None:
        """Deletes a task."""
        await self._store.delete(task_id, context)
