"""Task ids this replica just generated: no store holds them yet.

A message without a task id starts a new task under an id the request
context builder generates (a UUID). The SDK reads that task three times
before its first save (the turn's setup, its producer, its consumer); each
read finds nothing. On a shared store each is a network round trip. Nobody
else can know the id before the task's first save (the client learns it
from the first streamed event, which follows that save), so the run log
answers those reads itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from a2a.server.agent_execution import SimpleRequestContextBuilder

if TYPE_CHECKING:
    from collections.abc import Callable

    from a2a.server.agent_execution import RequestContext
    from a2a.server.context import ServerCallContext
    from a2a.types.a2a_pb2 import SendMessageRequest, Task

FRESH_MEMORY = 10_000
"""How many generated, never saved task ids a replica remembers at most."""


class FreshTaskIds:
    """The ids generated here whose task was never saved (oldest dropped)."""

    def __init__(self, capacity: int = FRESH_MEMORY) -> None:
        self._ids: dict[str, None] = {}
        self._capacity = capacity

    def __contains__(self, task_id: object) -> bool:
        return task_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, task_id: str) -> None:
        """Notes `task_id` as generated here and not saved yet."""
        self._ids[task_id] = None
        while len(self._ids) > self._capacity:
            del self._ids[next(iter(self._ids))]

    def discard(self, task_id: str) -> None:
        """Forgets `task_id` (saved, or its turn ended)."""
        self._ids.pop(task_id, None)


class NewTaskContextBuilder(SimpleRequestContextBuilder):
    """The SDK's default builder (UUID ids), reporting each id it generates.

    Used only where the application gave no builder of its own: another
    builder or id generator could hand out an id that is already stored.

    Args:
        on_new: Called with each task id generated for a new task.
    """

    def __init__(self, on_new: Callable[[str], None]) -> None:
        super().__init__(should_populate_referred_tasks=False, task_store=None)
        self._on_new = on_new

    async def build(
        self,
        context: ServerCallContext,
        params: SendMessageRequest | None = None,
        task_id: str | None = None,
        context_id: str | None = None,
        task: Task | None = None,
    ) -> RequestContext:
        """The SDK's context; reports the task id if it generated it."""
        # Read before building: the context writes the id into the message.
        generates = (
            task_id is None and params is not None and not params.message.task_id
        )
        built = await super().build(context, params, task_id, context_id, task)
        if generates and built.task_id:
            self._on_new(built.task_id)
        return built
