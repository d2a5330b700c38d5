"""The base of the store wrappers a handler saves through."""

from __future__ import annotations

from typing import TYPE_CHECKING

from a2a.server.cluster import VersionedTaskStore

if TYPE_CHECKING:
    from a2a.server.cluster import StoredTask
    from a2a.server.context import ServerCallContext
    from a2a.types.a2a_pb2 import ListTasksRequest, ListTasksResponse


class PassThroughStore(VersionedTaskStore):
    """Wraps a store; reads, lists and deletes go to it unchanged.

    Subclasses implement ``save`` (and may override the rest) to watch what
    goes through.

    Args:
        store: The wrapped store.
    """

    def __init__(self, store: VersionedTaskStore) -> None:
        self._store = store

    async def get(self, task_id: str, context: ServerCallContext) -> StoredTask | None:
        """Delegates to the wrapped store."""
        return await self._store.get(task_id, context)

    async def list(
        self, params: ListTasksRequest, context: ServerCallContext
    ) -> ListTasksResponse:
        """Delegates to the wrapped store."""
        return await self._store.list(params, context)

    async def delete(self, task_id: str, context: ServerCallContext) -> None:
        """Delegates to the wrapped store."""
        await self._store.delete(task_id, context)
