"""An operator's view of a namespace: every task, the replicas, the event feed.

The stores a request handler uses are scoped to the caller's owner. An
operator holding the backend's credentials sees more: every task of the
namespace whatever its owner, the live replicas and what they run, and the
events of every task as they are saved. `ClusterView` is what a backend
implements for that; ``a2a-scale tasks``, ``replicas``, ``tail`` and
``cancel`` use it, so the command line never imports a backend. Nothing here
is reachable from a request: it is for operators only.
"""

from __future__ import annotations

import contextlib
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from a2a.server.cluster import ConcurrentTaskModificationError, VersionedEvent
from a2a.types.a2a_pb2 import (
    ListTasksRequest,
    Task,
    TaskState,
    TaskStatusUpdateEvent,
)

from a2a_scale.errors import A2AScaleError, TerminalTaskError
from a2a_scale.recovery import OwnerContext, RunningTask
from a2a_scale.tasks import ListQuery, is_terminal, paginate, version_int

if TYPE_CHECKING:
    from a2a.server.events.event_queue import Event

    from a2a_scale.backend import Backend

OPERATOR_ACCESS = 'operator'
"""How results of a `ClusterView` are marked: read across every owner."""

_CANCEL_ATTEMPTS = 5


class UnsupportedOperationError(A2AScaleError, NotImplementedError):
    """A backend cannot do an operator's operation (named in the message)."""


class UnknownTaskError(A2AScaleError, LookupError):
    """No task of the namespace has the given id."""

    def __init__(self, task_id: str, namespace: str) -> None:
        super().__init__(f'No task {task_id[:200]!r} in namespace {namespace!r}')
        self.task_id = task_id


@dataclass(frozen=True)
class OperatorTask:
    """A task read by an operator, with the owner it belongs to.

    Attributes:
        task: The stored task, bodies included: show them only when asked.
        owner: The owner the task is scoped to.
        version: The stored version.
        access: Always ``'operator'``: the read ignored owner scoping.
    """

    task: Task
    owner: str
    version: int
    access: str = OPERATOR_ACCESS


@dataclass(frozen=True)
class TaskPage:
    """One page of an operator's listing."""

    tasks: list[OperatorTask]
    next_page_token: str | None
    total: int


@dataclass(frozen=True)
class FeedEvent:
    """One event of the namespace as it was saved.

    Attributes:
        task_id: The task.
        version: The task version the event belongs to.
        event: The event (bodies included: show them only when asked).
        saved_at: When it was saved (epoch seconds), if the backend knows.
    """

    task_id: str
    version: int
    event: Event
    saved_at: float | None = None


@dataclass(frozen=True)
class ReplicaInfo:
    """A registered replica.

    Attributes:
        instance_id: The replica's id.
        last_heartbeat: Its last heartbeat (epoch seconds), if known.
        running: The tasks it runs, or `None` if the backend cannot tell.
        subscriptions: Its open subscriptions, or `None` if unknown.
    """

    instance_id: str
    last_heartbeat: float | None
    running: list[RunningTask] | None
    subscriptions: int | None = None


class ClusterView(ABC):
    """An operator's view of one namespace, across owners and replicas.

    Args:
        backend_name: The backend's name, for errors.
        namespace: The namespace viewed.
    """

    feed_source: str = ''
    """Where `events` reads from, in a few words, for the user."""

    process_local: bool = False
    """Whether the state lives in one process (another process sees none)."""

    def __init__(self, backend_name: str, namespace: str) -> None:
        self.backend_name = backend_name
        self.namespace = namespace

    @abstractmethod
    async def all_tasks(self) -> list[OperatorTask]:
        """Every stored task of the namespace (reads the whole namespace)."""

    @abstractmethod
    async def find_task(self, task_id: str) -> OperatorTask | None:
        """The task with `task_id`, whoever owns it, or `None`."""

    @abstractmethod
    async def heartbeats(self) -> dict[str, float]:
        """Each registered replica's last heartbeat, in epoch seconds."""

    async def subscriptions(self) -> dict[str, int] | None:
        """Open subscriptions per replica, or `None` where unknown."""
        return None

    def events(self) -> AsyncIterator[FeedEvent]:
        """Yields every event saved in the namespace from now on, forever.

        Raises:
            UnsupportedOperationError: If the backend cannot follow events.
        """
        raise UnsupportedOperationError(
            f'The {self.backend_name!r} backend cannot follow the events of a namespace'
        )

    async def list_tasks(
        self,
        *,
        state: int = 0,
        context_id: str = '',
        page_size: int = 50,
        page_token: str = '',
    ) -> TaskPage:
        """Lists the namespace's tasks in ``ListTasks`` order, every owner.

        Raises:
            InvalidParamsError: If `page_token` is not one this listing gave.
        """
        query = ListQuery.from_request(
            ListTasksRequest(
                context_id=context_id,
                status=state,  # type: ignore[arg-type]
                page_size=page_size,
                page_token=page_token,
            )
        )
        found = {t.task.id: t for t in await self.all_tasks()}
        page, token, total = paginate(query, [t.task for t in found.values()])
        return TaskPage([found[t.id] for t in page], token, total)


def cluster_view(backend: Backend) -> ClusterView:
    """The backend's `ClusterView`; raises `UnsupportedOperationError`."""
    view = getattr(backend, 'cluster_view', None)
    if not isinstance(view, ClusterView):
        raise UnsupportedOperationError(
            f'The {backend.name!r} backend has no operator view (tasks, '
            'replicas, tail, cancel): its plugin does not implement '
            'Backend.cluster_view'
        )
    return view


@contextlib.asynccontextmanager
async def connected(backend: Backend) -> AsyncIterator[Backend]:
    """Connects `backend` for an operator, without joining as a replica.

    Unlike ``async with backend``, nothing is provisioned, no heartbeat is
    recorded and no replica is reaped: the operator is not a replica.
    """
    await backend._connect()
    try:
        yield backend
    finally:
        await backend._close()


async def replicas(backend: Backend) -> list[ReplicaInfo]:
    """The registered replicas, with what they run where the backend knows."""
    view = cluster_view(backend)
    beats = await view.heartbeats()
    subscriptions = await view.subscriptions()
    store = backend.running_tasks
    records = await store.running() if store is not None else None
    by_replica: dict[str, list[RunningTask]] = {i: [] for i in beats}
    for record in records or []:
        by_replica.setdefault(record.instance_id, []).append(record)
    return [
        ReplicaInfo(
            instance_id=instance_id,
            last_heartbeat=beats.get(instance_id),
            running=tasks if records is not None else None,
            subscriptions=(
                subscriptions.get(instance_id, 0) if subscriptions is not None else None
            ),
        )
        for instance_id, tasks in sorted(by_replica.items())
    ]


async def cancel_task(backend: Backend, task_id: str) -> OperatorTask:
    """Cancels a task for an operator, whoever owns it.

    Writes CANCELED through the store's compare-and-set with an event, as a
    cancel served by a replica that does not run the task does: every
    subscriber sees it, and the replica running the agent stops it.

    Returns:
        The cancelled task (or the task as found if it was already CANCELED).

    Raises:
        UnknownTaskError: If no task has `task_id`.
        TerminalTaskError: If the task already finished in another state.
    """
    view = cluster_view(backend)
    found = await view.find_task(task_id)
    if found is None:
        raise UnknownTaskError(task_id, view.namespace)
    context = OwnerContext.of(found.owner)
    store = backend.task_store
    for _ in range(_CANCEL_ATTEMPTS):
        stored = await store.get(task_id, context)
        if stored is None:
            raise UnknownTaskError(task_id, view.namespace)
        current = stored.task
        if current.status.state == TaskState.TASK_STATE_CANCELED:
            return OperatorTask(current, found.owner, version_int(stored.version))
        if is_terminal(current.status.state):
            raise TerminalTaskError(
                task_id,
                state=TaskState.Name(current.status.state),
                requested='TASK_STATE_CANCELED',
            )
        cancelled = Task()
        cancelled.CopyFrom(current)
        cancelled.status.state = TaskState.TASK_STATE_CANCELED
        cancelled.status.ClearField('message')
        cancelled.status.timestamp.FromNanoseconds(time.time_ns())
        event = TaskStatusUpdateEvent(
            task_id=task_id, context_id=current.context_id, status=cancelled.status
        )
        try:
            version = await store.save(
                cancelled,
                event=event,
                prev=current,
                prev_version=stored.version,
                context=context,
            )
        except ConcurrentTaskModificationError:
            continue  # saved meanwhile, or finished: read it again
        await backend.event_stream.publish(
            task_id, VersionedEvent(event=event, version=version)
        )
        return OperatorTask(cancelled, found.owner, version_int(version))
    raise A2AScaleError(
        f'Task {task_id[:200]!r} changed {_CANCEL_ATTEMPTS} times while it was '
        'being cancelled; try again'
    )
