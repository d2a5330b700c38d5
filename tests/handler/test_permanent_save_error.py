"""A save that can never succeed ends the task FAILED instead of stranding it.

The store here refuses a task over a small size limit with
`PayloadTooLargeError`, as the AWS backend does over DynamoDB's item limit.
The SDK then tries to write FAILED from the task it holds in memory, which
still carries the refused artifact: that write is refused too and the task
stays WORKING on every replica for ever.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.cluster import VersionedTaskStore
from a2a.server.events import EventQueue
from a2a.server.tasks import TaskUpdater
from a2a.types.a2a_pb2 import (
    GetTaskRequest,
    Part,
    SubscribeToTaskRequest,
    Task,
    TaskState,
    TaskStatus,
)
from handler_support import (
    WAIT,
    Cluster,
    SharedStores,
    call_context,
    collect,
    expect_sdk_gap,
    send_request,
    state_of,
    user_message,
    wait_until_stored,
)

from a2a_scale.errors import PayloadTooLargeError

if TYPE_CHECKING:
    from a2a.server.cluster import StoredTask, TaskVersion
    from a2a.server.context import ServerCallContext
    from a2a.server.events import Event
    from a2a.types.a2a_pb2 import ListTasksRequest, ListTasksResponse

LIMIT = 4096
BODY = 'secret-payload-' * 1000
FAILED = TaskState.TASK_STATE_FAILED
WORKING = TaskState.TASK_STATE_WORKING


class LimitedStore(VersionedTaskStore):
    """Refuses any task whose serialized size is over `LIMIT` bytes."""

    def __init__(self, store: VersionedTaskStore) -> None:
        self._store = store

    async def save(
        self,
        task: Task,
        *,
        event: Event | None,
        prev: Task | None,
        prev_version: TaskVersion,
        context: ServerCallContext,
    ) -> TaskVersion:
        size = task.ByteSize()
        if size > LIMIT:
            raise PayloadTooLargeError(task.id, size, LIMIT, 'Task')
        return await self._store.save(
            task, event=event, prev=prev, prev_version=prev_version, context=context
        )

    async def get(self, task_id: str, context: ServerCallContext) -> StoredTask | None:
        return await self._store.get(task_id, context)

    async def list(
        self, params: ListTasksRequest, context: ServerCallContext
    ) -> ListTasksResponse:
        return await self._store.list(params, context)

    async def delete(self, task_id: str, context: ServerCallContext) -> None:
        await self._store.delete(task_id, context)


class WritesTooMuch(AgentExecutor):
    """Starts work, waits for `go`, then sends an artifact over the limit."""

    def __init__(self) -> None:
        self.go = asyncio.Event()

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        task_id, context_id = str(context.task_id), str(context.context_id)
        await event_queue.enqueue_event(
            Task(
                id=task_id,
                context_id=context_id,
                status=TaskStatus(state=TaskState.TASK_STATE_SUBMITTED),
            )
        )
        updater = TaskUpdater(event_queue, task_id, context_id)
        await updater.start_work()
        await self.go.wait()
        await updater.add_artifact([Part(text=BODY)], name='big')
        await updater.complete()

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        raise NotImplementedError


def _limited(cluster: Cluster) -> None:
    stores = cluster.stores

    def limited() -> SharedStores:
        shared = stores()
        return SharedStores(
            LimitedStore(shared.task_store),
            shared.event_stream,
            shared.push_config_store,
        )

    cluster.stores = limited


@pytest.mark.parametrize(
    'cluster',
    [('memory', 'fixed'), ('sqlite', 'fixed')],
    ids=['memory-fixed', 'sqlite-fixed'],
    indirect=True,
)
@pytest.mark.asyncio
async def test_an_update_over_a_store_limit_fails_the_task_everywhere(
    cluster: Cluster,
) -> None:
    """Subscribers on another replica and the push see FAILED, once.

    (With the SDK's handler the subscription would wait for ever.)
    """
    _limited(cluster)
    agent = WritesTooMuch()
    a, b = cluster.replicas(agent)
    ctx = call_context()
    started = await asyncio.wait_for(
        a.on_message_send(send_request(user_message(), return_immediately=True), ctx),
        WAIT,
    )
    assert isinstance(started, Task)
    await wait_until_stored(cluster, started.id, WORKING, ctx)
    watched = asyncio.ensure_future(
        collect(b.on_subscribe_to_task(SubscribeToTaskRequest(id=started.id), ctx))
    )
    await asyncio.sleep(0.1)  # The subscription on B is live.
    agent.go.set()

    seen = await asyncio.wait_for(watched, WAIT)
    assert state_of(seen[-1]) == FAILED
    stored = await b.on_get_task(GetTaskRequest(id=started.id), ctx)
    assert isinstance(stored, Task)
    assert stored.status.state == FAILED
    reason = stored.status.message.parts[0].text
    assert f'over the {LIMIT}-byte limit' in reason
    assert 'secret-payload' not in reason
    await cluster.pushes.wait_for(started.id, FAILED)
    await cluster.aclose()
    assert cluster.pushes.count(started.id, FAILED) == 1


@pytest.mark.asyncio
async def test_the_client_of_a_refused_update_gets_the_limit(
    cluster: Cluster, request: pytest.FixtureRequest
) -> None:
    """A streaming client gets the store's error, and the task is FAILED."""
    expect_sdk_gap(cluster, request, 'a refused update strands the task')
    _limited(cluster)
    agent = WritesTooMuch()
    agent.go.set()
    (a,) = cluster.replicas(agent, count=1)
    ctx = call_context()
    events: list[object] = []

    async def stream() -> None:
        async for event in a.on_message_send_stream(send_request(user_message()), ctx):
            events.append(event)

    with pytest.raises(PayloadTooLargeError, match=f'over the {LIMIT}-byte limit'):
        await asyncio.wait_for(stream(), WAIT)
    assert events
    first = events[0]
    assert isinstance(first, Task)
    stored = await a.on_get_task(GetTaskRequest(id=first.id), ctx)
    assert state_of(stored) == FAILED
