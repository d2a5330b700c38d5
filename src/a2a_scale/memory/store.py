"""`MemoryTaskStore`: the memory backend's `VersionedTaskStore`."""

from __future__ import annotations

import logging

from a2a.server.cluster import StoredTask, TaskVersion, VersionedTaskStore
from a2a.server.context import ServerCallContext
from a2a.server.events.event_queue import Event
from a2a.server.owner_resolver import OwnerResolver, resolve_user_scope
from a2a.types.a2a_pb2 import ListTasksRequest, ListTasksResponse, Task

from a2a_scale.codec import decode_task, encode_event, encode_task
from a2a_scale.memory.space import MemorySpace
from a2a_scale.tasks import ListQuery, paginate, version_int

logger = logging.getLogger(__name__)

DEFAULT_RETENTION_SECONDS = 86_400
DEFAULT_MAX_EVENTS_PER_TASK = 10_000


class MemoryTaskStore(VersionedTaskStore):
    """A `VersionedTaskStore` over a `MemorySpace`.

    Versions are integers: 1 on the first write, plus 1 per write. A save
    with an event appends it to the task's log in the same critical section,
    so the space's `MemoryEventStream` sees every saved event. Task ids are
    global: an id stored by another owner reads as absent, and writing it
    raises `ConcurrentTaskModificationError`. Tasks are kept as bytes, so
    callers never share a mutable `Task` with the store.

    Args:
        space: The shared state.
        owner_resolver: Maps a call context to the owner tasks belong to.
        retention_seconds: How long a task that reached a terminal state,
            and its event log, are kept.
        max_events_per_task: The cap of each task's event log.
    """

    def __init__(
        self,
        space: MemorySpace,
        *,
        owner_resolver: OwnerResolver = resolve_user_scope,
        retention_seconds: float = DEFAULT_RETENTION_SECONDS,
        max_events_per_task: int = DEFAULT_MAX_EVENTS_PER_TASK,
    ) -> None:
        self.space = space
        self.owner_resolver = owner_resolver
        self.retention_seconds = retention_seconds
        self.max_events_per_task = max_events_per_task

    async def save(
        self,
        task: Task,
        *,
        event: Event | None,
        prev: Task | None = None,
        prev_version: TaskVersion,
        context: ServerCallContext,
    ) -> TaskVersion:
        """Writes `task` (and `event`) if `prev_version` is current.

        Raises:
            InvalidTaskIdError: If the task id is empty.
            ConcurrentTaskModificationError: If the stored version is not
                `prev_version`, the id belongs to another owner, a first
                write finds the id taken, or a cancel finds the task absent
                or terminal.
            TerminalTaskError: If the save moves a terminal task to another
                state (a re-save in the same terminal state is accepted).
        """
        del prev
        version = self.space.save(
            task.id,
            self.owner_resolver(context),
            encode_task(task),
            state=task.status.state,
            prev_version=version_int(prev_version),
            event=encode_event(event) if event is not None else None,
            retention=self.retention_seconds,
            max_events=self.max_events_per_task,
        )
        return TaskVersion(version)

    async def get(self, task_id: str, context: ServerCallContext) -> StoredTask | None:
        """Returns the caller's task with its version, or `None`."""
        found = self.space.get(task_id, self.owner_resolver(context))
        if found is None:
            return None
        data, version = found
        task = decode_task(data, key=self.space.key('task', task_id))
        return StoredTask(task, TaskVersion(version))

    async def list(
        self, params: ListTasksRequest, context: ServerCallContext
    ) -> ListTasksResponse:
        """Lists the caller's tasks: filtered, newest first, keyset-paged.

        Raises:
            InvalidParamsError: If the page token is invalid.
        """
        query = ListQuery.from_request(params)
        tasks = self.space.tasks_of(self.owner_resolver(context))
        page, token, total = paginate(query, tasks)
        copies = []
        for shared in page:
            task = Task()
            task.CopyFrom(shared)
            copies.append(task)
        return ListTasksResponse(
            tasks=copies,
            next_page_token=token or '',
            page_size=query.page_size,
            total_size=total,
        )

    async def delete(self, task_id: str, context: ServerCallContext) -> None:
        """Deletes the caller's task, its event log and its push configs."""
        if not self.space.delete(task_id, self.owner_resolver(context)):
            logger.debug('Delete of absent task %s ignored', task_id)
