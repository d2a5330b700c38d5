"""Pushes for the terminal states the SDK writes itself, each sent once."""

from __future__ import annotations

import logging
from collections import OrderedDict
from typing import TYPE_CHECKING

from a2a.server.cluster import VersionedTaskStore
from a2a.server.tasks import PushNotificationSender, TaskStore
from a2a.types.a2a_pb2 import (
    Task,
    TaskState,
    TaskStatusUpdateEvent,
)

from a2a_scale.handler.passthrough import PassThroughStore
from a2a_scale.tasks import TERMINAL_STATES

if TYPE_CHECKING:
    from a2a.server.cluster import TaskVersion
    from a2a.server.context import ServerCallContext
    from a2a.server.events import Event
    from a2a.server.tasks import PushNotificationEvent
    from a2a.types.a2a_pb2 import (
        ListTasksRequest,
        ListTasksResponse,
    )


logger = logging.getLogger(__name__)

_SDK_WRITTEN_STATES = frozenset(
    {TaskState.TASK_STATE_FAILED, TaskState.TASK_STATE_CANCELED}
)
"""Terminal states the SDK itself writes, without the agent's event."""

_PUSH_MEMORY = 4096
"""How many recent terminal pushes a replica remembers, to push each once."""


def status_event(task: Task) -> TaskStatusUpdateEvent:
    """A status update carrying `task`'s current status."""
    return TaskStatusUpdateEvent(
        task_id=task.id, context_id=task.context_id, status=task.status
    )


class PushLedger(PushNotificationSender):
    """Wraps a push sender and remembers the terminal states it pushed."""

    def __init__(self, sender: PushNotificationSender) -> None:
        self._sender = sender
        self._pushed: OrderedDict[tuple[str, int], None] = OrderedDict()

    async def send_notification(
        self, task_id: str, event: PushNotificationEvent
    ) -> None:
        """Records a terminal state (before any await), then sends."""
        if (
            isinstance(event, Task | TaskStatusUpdateEvent)
            and event.status.state in TERMINAL_STATES
        ):
            self._pushed[task_id, event.status.state] = None
            while len(self._pushed) > _PUSH_MEMORY:
                self._pushed.popitem(last=False)
        await self._sender.send_notification(task_id, event)

    async def send_once(self, task_id: str, event: TaskStatusUpdateEvent) -> None:
        """Sends `event` unless its terminal state was already pushed here."""
        if (task_id, event.status.state) in self._pushed:
            return
        try:
            await self.send_notification(task_id, event)
        except Exception:
            # Best effort, like the SDK's own pushes.
            logger.exception('Push notification for task %s failed', task_id)


class TerminalWrites:
    """The FAILED and CANCELED states this replica wrote, until pushed."""

    def __init__(self) -> None:
        self._written: dict[str, TaskStatusUpdateEvent] = {}

    def note(self, task: Task) -> None:
        """Notes `task`'s state if it is one the SDK writes without pushing."""
        if task.status.state in _SDK_WRITTEN_STATES:
            self._written[task.id] = status_event(task)

    def pop(self, task_id: str) -> TaskStatusUpdateEvent | None:
        """The state noted for `task_id`, forgotten from now on."""
        return self._written.pop(task_id, None)


class TerminalWriteLog(PassThroughStore):
    """Wraps a store and notes FAILED and CANCELED states saved through it."""

    def __init__(self, store: VersionedTaskStore, writes: TerminalWrites) -> None:
        super().__init__(store)
        self._writes = writes

    async def save(
        self,
        task: Task,
        *,
        event: Event | None,
        prev: Task | None,
        prev_version: TaskVersion,
        context: ServerCallContext,
    ) -> TaskVersion:
        """Saves, then notes a FAILED or CANCELED state."""
        version = await self._store.save(
            task, event=event, prev=prev, prev_version=prev_version, context=context
        )
        # `prev` is no guide: the SDK updates its task object in place, so
        # `prev` is often `task` itself. Noting a state twice is harmless.
        self._writes.note(task)
        return version


class PlainTerminalWriteLog(TaskStore):
    """`TerminalWriteLog` for an unversioned `TaskStore`."""

    def __init__(self, store: TaskStore, writes: TerminalWrites) -> None:
        self._store = store
        self._writes = writes

    async def save(self, task: Task, context: ServerCallContext) -> None:
        """Saves, then notes a FAILED or CANCELED state."""
        await self._store.save(task, context)
        self._writes.note(task)

    async def get(self, task_id: str, context: ServerCallContext) -> Task | None:
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
