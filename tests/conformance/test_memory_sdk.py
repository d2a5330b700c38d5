"""The memory backend under the SDK's own request handler, as two replicas."""

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.events import EventQueue
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.tasks import TaskUpdater
from a2a.types.a2a_pb2 import (
    AgentCapabilities,
    AgentCard,
    Message,
    Part,
    Role,
    SendMessageRequest,
    SubscribeToTaskRequest,
    Task,
    TaskState,
    TaskStatus,
    TaskStatusUpdateEvent,
)

from a2a_scale.memory import MemoryBackend
from a2a_scale.settings import ScaleSettings
from a2a_scale.testing import new_id, user_context

pytestmark = pytest.mark.memory
ALICE = user_context('alice')


class GatedAgent(AgentExecutor):
    """Reports WORKING, then completes once `gate` is set."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.working = asyncio.Event()

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        updater = TaskUpdater(
            event_queue, context.task_id or '', context.context_id or ''
        )
        await event_queue.enqueue_event(
            Task(
                id=context.task_id,
                context_id=context.context_id,
                status=TaskStatus(state=TaskState.TASK_STATE_SUBMITTED),
            )
        )
        await updater.start_work()
        self.working.set()
        await self.gate.wait()
        await updater.complete()

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        raise NotImplementedError


@pytest_asyncio.fixture
async def replicas() -> AsyncIterator[tuple[MemoryBackend, MemoryBackend]]:
    namespace = new_id('sdk')[:30]
    async with (
        MemoryBackend(ScaleSettings(namespace=namespace)) as a,
        MemoryBackend(ScaleSettings(namespace=namespace)) as b,
    ):
        yield a, b


def _handler(backend: MemoryBackend, agent: AgentExecutor) -> DefaultRequestHandler:
    card = AgentCard(name='t', capabilities=AgentCapabilities(streaming=True))
    return DefaultRequestHandler(
        agent_executor=agent,
        task_store=backend.task_store,
        agent_card=card,
        event_stream=backend.event_stream,
    )


@pytest.mark.asyncio
async def test_resubscribe_on_other_replica_sees_snapshot_then_completion(
    replicas: tuple[MemoryBackend, MemoryBackend],
) -> None:
    a, b = replicas
    agent = GatedAgent()
    on_a = _handler(a, agent)
    on_b = _handler(b, GatedAgent())
    message = Message(
        message_id=new_id('m'), role=Role.ROLE_USER, parts=[Part(text='go')]
    )
    stream = on_a.on_message_send_stream(SendMessageRequest(message=message), ALICE)
    first = await asyncio.wait_for(anext(stream), 5)
    task_id = first.id if isinstance(first, Task) else first.task_id
    await asyncio.wait_for(agent.working.wait(), 5)
    await stream.aclose()  # the client drops

    events: list[object] = []

    async def follow() -> None:
        async for event in on_b.on_subscribe_to_task(
            SubscribeToTaskRequest(id=task_id), ALICE
        ):
            events.append(event)

    following = asyncio.create_task(follow())
    for _ in range(1000):  # until B tails the stream (it read the snapshot first)
        if b.event_stream.subscriber_count(task_id) == 1:
            break
        await asyncio.sleep(0)
    assert b.event_stream.subscriber_count(task_id) == 1
    agent.gate.set()
    await asyncio.wait_for(following, 5)
    assert isinstance(events[0], Task)
    assert events[0].status.state == TaskState.TASK_STATE_WORKING
    last = events[-1]
    assert isinstance(last, TaskStatusUpdateEvent)
    assert last.status.state == TaskState.TASK_STATE_COMPLETED
    with contextlib.suppress(Exception):
        await on_a.aclose()
    assert b.event_stream.subscriber_count() == 0
