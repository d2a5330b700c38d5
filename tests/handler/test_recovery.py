"""Recovery of a dead replica's running tasks, and hand-over at shutdown.

Replicas are memory backends of one namespace in this process, with a short
heartbeat. A replica "dies" the way SIGKILL leaves it: its heartbeats stop
and its agents stop without writing anything; its records stay behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import pytest_asyncio
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.context import ServerCallContext
from a2a.server.events import EventQueue
from a2a.server.tasks import TaskUpdater
from a2a.types.a2a_pb2 import (
    SubscribeToTaskRequest,
    Task,
    TaskState,
    TaskStatus,
)
from handler_support import (
    WAIT,
    RecordingPushSender,
    agent_card,
    call_context,
    send_request,
    state_of,
    user_message,
)

import a2a_scale
from a2a_scale.handler import ClusterRequestHandler, resume_count
from a2a_scale.recovery import RunningTask

pytestmark = [pytest.mark.memory, pytest.mark.asyncio]

WORKING = TaskState.TASK_STATE_WORKING
COMPLETED = TaskState.TASK_STATE_COMPLETED
FAILED = TaskState.TASK_STATE_FAILED
CANCELED = TaskState.TASK_STATE_CANCELED
INPUT_REQUIRED = TaskState.TASK_STATE_INPUT_REQUIRED
BEAT = 0.05
REAP_AFTER = 0.3


class Agent(AgentExecutor):
    """Runs until `finish` is set; a resumed turn finishes at once.

    It asks for input first when `ask` is set, and completes the follow-up.
    """

    def __init__(self, *, ask: bool = False) -> None:
        self.ask = ask
        self.resumes: list[int] = []
        self.working = asyncio.Event()
        self.finish = asyncio.Event()
        self.cancelled = asyncio.Event()

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        self.resumes.append(resume_count(context))
        task_id, context_id = str(context.task_id), str(context.context_id)
        current = context.current_task
        if current is None:
            await event_queue.enqueue_event(
                Task(
                    id=task_id,
                    context_id=context_id,
                    status=TaskStatus(state=TaskState.TASK_STATE_SUBMITTED),
                    # Resume needs the user's message in the history.
                    history=[context.message] if context.message else [],
                )
            )
        updater = TaskUpdater(event_queue, task_id, context_id)
        await updater.start_work()
        self.working.set()
        if self.ask and current is None:
            await updater.requires_input()
            return
        if resume_count(context) == 0:
            await self.finish.wait()
        await updater.complete()

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        self.cancelled.set()
        await TaskUpdater(
            event_queue, str(context.task_id), str(context.context_id)
        ).cancel()


class Replicas:
    """Memory-backend replicas of one namespace, each with its handler."""

    def __init__(self, **settings: Any) -> None:
        self.namespace = f'r{uuid.uuid4().hex[:12]}'
        self.settings = {'heartbeat_interval': BEAT, 'reap_after': REAP_AFTER}
        self.settings.update(settings)
        self.pushes = RecordingPushSender()
        self.backends: list[a2a_scale.Backend] = []
        self.handlers: list[ClusterRequestHandler] = []

    async def start(self, agent: AgentExecutor, count: int = 2) -> None:
        for _ in range(count):
            backend = a2a_scale.load_backend(
                'memory', namespace=self.namespace, **self.settings
            )
            await backend.start()
            self.backends.append(backend)
            self.handlers.append(
                backend.request_handler(
                    agent_executor=agent,
                    agent_card=agent_card(),
                    push_sender=self.pushes,
                )
            )

    async def kill(self, index: int) -> None:
        """Stops replica `index` the way SIGKILL does: no write, records left."""
        await self.backends[index]._stop_serving()

    async def aclose(self) -> None:
        for backend in self.backends:
            if backend.started:
                await backend.stop()
            else:
                await backend.lifecycle.teardown()

    async def records(self) -> list[RunningTask]:
        running = self.backends[0].running_tasks
        assert running is not None
        return await running.running()


@pytest_asyncio.fixture
async def replicas() -> AsyncIterator[Callable[..., Replicas]]:
    built: list[Replicas] = []

    def make(**settings: Any) -> Replicas:
        built.append(Replicas(**settings))
        return built[-1]

    yield make
    for each in built:
        await each.aclose()


async def eventually(check: Callable[[], Any], within: float = WAIT) -> None:
    """Waits until `check()` (maybe a coroutine) is true."""
    async with asyncio.timeout(within):
        while True:
            result = check()
            if asyncio.iscoroutine(result):
                result = await result
            if result:
                return
            await asyncio.sleep(0.01)


async def start(handler: ClusterRequestHandler, ctx: ServerCallContext) -> Task:
    task = await handler.on_message_send(
        send_request(user_message('run'), return_immediately=True), ctx
    )
    assert isinstance(task, Task)
    return task


async def stored_state(handler: ClusterRequestHandler, task_id: str) -> int:
    stored = await handler.task_store.get(task_id, call_context())  # type: ignore[union-attr]
    assert stored is not None
    return stored.task.status.state  # type: ignore[no-any-return]


async def has_state(handler: ClusterRequestHandler, task_id: str, state: int) -> bool:
    return await stored_state(handler, task_id) == state


async def subscribe_until_done(
    handler: ClusterRequestHandler, task_id: str, ctx: ServerCallContext
) -> asyncio.Task[list[Any]]:
    """Subscribes on `handler`; the task collects events to a terminal state."""
    events: list[Any] = []
    first = asyncio.Event()

    async def read() -> list[Any]:
        async for event in handler.on_subscribe_to_task(
            SubscribeToTaskRequest(id=task_id), ctx
        ):
            events.append(event)
            first.set()
            if state_of(event) in (COMPLETED, FAILED, CANCELED):
                break
        return events

    reader = asyncio.create_task(read())
    await asyncio.wait_for(first.wait(), WAIT)
    return reader


def status_text(event: Any) -> str:
    return ' '.join(part.text for part in event.status.message.parts)


async def test_a_turn_is_recorded_while_its_agent_runs(
    replicas: Callable[..., Replicas],
) -> None:
    cluster = replicas()
    agent = Agent(ask=True)
    await cluster.start(agent, count=1)
    a = cluster.handlers[0]
    ctx = call_context()

    task = await start(a, ctx)
    await eventually(lambda: has_state(a, task.id, INPUT_REQUIRED))
    # Parked in input-required: not running, no record.
    await eventually(lambda: a.running_task_ids() == [])
    await eventually(lambda: _no_records(cluster))
    assert await stored_state(a, task.id) == INPUT_REQUIRED

    follow_up = asyncio.create_task(
        a.on_message_send(send_request(user_message('more', task_id=task.id)), ctx)
    )
    await eventually(lambda: a.running_task_ids() == [task.id])
    records = await cluster.records()
    assert [(r.task_id, r.instance_id, r.resumes) for r in records] == [
        (task.id, cluster.backends[0].instance_id, 0)
    ]
    agent.finish.set()
    assert state_of(await asyncio.wait_for(follow_up, WAIT)) == COMPLETED
    assert a.running_task_ids() == []
    await eventually(lambda: _no_records(cluster))


async def _no_records(cluster: Replicas) -> bool:
    return await cluster.records() == []


async def test_off_records_nothing(replicas: Callable[..., Replicas]) -> None:
    cluster = replicas(recovery='off')
    agent = Agent()
    await cluster.start(agent, count=1)
    task = await start(cluster.handlers[0], call_context())
    await asyncio.wait_for(agent.working.wait(), WAIT)
    assert cluster.handlers[0].running_task_ids() == [task.id]
    assert await cluster.records() == []


async def test_fail_a_dead_replicas_task_for_every_subscriber_pushed_once(
    replicas: Callable[..., Replicas],
) -> None:
    cluster = replicas()
    agent = Agent()
    await cluster.start(agent, count=3)
    a, b, c = cluster.handlers
    ctx = call_context()
    task = await start(a, ctx)
    await asyncio.wait_for(agent.working.wait(), WAIT)
    watching = await subscribe_until_done(c, task.id, ctx)

    await cluster.kill(0)
    events = await asyncio.wait_for(watching, WAIT)

    last = events[-1]
    assert state_of(last) == FAILED
    assert 'stopped' in status_text(last)
    assert cluster.backends[0].instance_id in status_text(last)
    assert await stored_state(b, task.id) == FAILED
    await asyncio.sleep(3 * BEAT)  # a second claim or push would show by now
    assert cluster.pushes.count(task.id, FAILED) == 1
    assert await cluster.records() == []


async def test_resume_runs_the_agent_again_to_completion(
    replicas: Callable[..., Replicas],
) -> None:
    cluster = replicas(recovery='resume')
    agent = Agent()
    await cluster.start(agent, count=3)
    a, _, c = cluster.handlers
    ctx = call_context()
    task = await start(a, ctx)
    await asyncio.wait_for(agent.working.wait(), WAIT)
    watching = await subscribe_until_done(c, task.id, ctx)

    await cluster.kill(0)
    events = await asyncio.wait_for(watching, WAIT)

    assert state_of(events[-1]) == COMPLETED
    assert agent.resumes == [0, 1]  # the resumed turn knows it is one
    assert await stored_state(c, task.id) == COMPLETED
    stored = await c.task_store.get(task.id, ctx)  # type: ignore[union-attr]
    assert stored is not None
    user_turns = [m for m in stored.task.history if m.parts[0].text == 'run']
    assert len(user_turns) == 1  # the message is resent, not added again
    await asyncio.sleep(3 * BEAT)
    assert cluster.pushes.count(task.id, COMPLETED) == 1
    assert await cluster.records() == []


async def test_a_resumed_turn_is_recorded_with_its_resume_count(
    replicas: Callable[..., Replicas],
) -> None:
    cluster = replicas(recovery='resume', max_resumes=5)
    agent = Agent()
    await cluster.start(agent, count=2)
    a, b = cluster.handlers
    ctx = call_context()
    task = await start(a, ctx)
    await asyncio.wait_for(agent.working.wait(), WAIT)
    # A record of a dead replica whose task was already resumed twice.
    running = cluster.backends[0].running_tasks
    assert running is not None
    await cluster.kill(0)
    await running.add(
        RunningTask(task.id, _owner(cluster, ctx), 'gone-replica', resumes=2)
    )
    await eventually(lambda: agent.resumes == [0, 3])
    await eventually(lambda: has_state(b, task.id, COMPLETED))


def _owner(cluster: Replicas, ctx: ServerCallContext) -> str:
    return cluster.backends[0].owner_resolver(ctx)


async def test_a_task_resumed_too_often_fails_instead(
    replicas: Callable[..., Replicas],
) -> None:
    cluster = replicas(recovery='resume', max_resumes=0)
    agent = Agent()
    await cluster.start(agent, count=2)
    a, b = cluster.handlers
    ctx = call_context()
    task = await start(a, ctx)
    await asyncio.wait_for(agent.working.wait(), WAIT)
    watching = await subscribe_until_done(b, task.id, ctx)

    await cluster.kill(0)
    events = await asyncio.wait_for(watching, WAIT)

    assert state_of(events[-1]) == FAILED
    assert 'A2A_SCALE_MAX_RESUMES' in status_text(events[-1])
    assert agent.resumes == [0]
    await asyncio.sleep(3 * BEAT)
    assert cluster.pushes.count(task.id, FAILED) == 1


async def test_a_failed_recovery_is_retried_at_the_next_beat(
    replicas: Callable[..., Replicas], monkeypatch: pytest.MonkeyPatch
) -> None:
    cluster = replicas()
    agent = Agent()
    await cluster.start(agent, count=2)
    a, b = cluster.handlers
    ctx = call_context()
    task = await start(a, ctx)
    await asyncio.wait_for(agent.working.wait(), WAIT)
    store = b._recovery._store
    real_get = store.get
    failures = []

    async def flaky_get(task_id: str, context: ServerCallContext) -> Any:
        if not failures:
            failures.append(task_id)
            raise ConnectionError('store unreachable')
        return await real_get(task_id, context)

    monkeypatch.setattr(store, 'get', flaky_get)
    await cluster.kill(0)
    await eventually(lambda: has_state(b, task.id, FAILED))
    assert failures == [task.id]
    assert cluster.pushes.count(task.id, FAILED) == 1


async def test_hand_over_fails_running_tasks_at_once(
    replicas: Callable[..., Replicas],
) -> None:
    cluster = replicas(reap_after=60)
    agent = Agent()
    await cluster.start(agent, count=2)
    a, b = cluster.handlers
    ctx = call_context()
    task = await start(a, ctx)
    await asyncio.wait_for(agent.working.wait(), WAIT)
    watching = await subscribe_until_done(b, task.id, ctx)
    assert a.running_task_ids() == [task.id]

    await asyncio.wait_for(a.hand_over(), WAIT)

    events = await asyncio.wait_for(watching, WAIT)
    assert state_of(events[-1]) == FAILED
    assert 'shut down' in status_text(events[-1])
    assert agent.cancelled.is_set()  # the executor's cancel ran...
    assert await stored_state(b, task.id) == FAILED  # ...and wrote no CANCELED
    assert a.running_task_ids() == []
    assert await cluster.records() == []
    await cluster.backends[0].stop()
    await asyncio.sleep(3 * BEAT)
    assert await stored_state(b, task.id) == FAILED
    assert cluster.pushes.count(task.id, FAILED) == 1
    assert cluster.pushes.count(task.id, CANCELED) == 0


async def test_hand_over_under_resume_lets_a_live_replica_resume(
    replicas: Callable[..., Replicas],
) -> None:
    cluster = replicas(recovery='resume', reap_after=60)
    agent = Agent()
    await cluster.start(agent, count=2)
    a, b = cluster.handlers
    ctx = call_context()
    task = await start(a, ctx)
    await asyncio.wait_for(agent.working.wait(), WAIT)

    await asyncio.wait_for(a.hand_over(), WAIT)
    assert a.running_task_ids() == []
    assert await stored_state(b, task.id) == WORKING  # nothing written
    assert [r.instance_id for r in await cluster.records()] == [
        cluster.backends[0].instance_id
    ]
    assert agent.resumes == [0]

    await cluster.backends[0].stop()  # its heartbeat is gone: claimed at once
    await eventually(lambda: has_state(b, task.id, COMPLETED))
    assert agent.resumes == [0, 1]
    assert cluster.pushes.count(task.id, CANCELED) == 0


async def test_hand_over_under_off_stops_agents_without_writing(
    replicas: Callable[..., Replicas],
) -> None:
    cluster = replicas(recovery='off')
    agent = Agent()
    await cluster.start(agent, count=2)
    a, b = cluster.handlers
    task = await start(a, call_context())
    await asyncio.wait_for(agent.working.wait(), WAIT)

    await asyncio.wait_for(a.hand_over(), WAIT)
    with pytest.raises(RuntimeError, match='closed'):  # no new turn starts on A
        await a.on_message_send(send_request(user_message('run')), call_context())
    await cluster.backends[0].stop()
    await asyncio.sleep(3 * BEAT)

    assert a.running_task_ids() == []
    assert await stored_state(b, task.id) == WORKING
    assert not agent.cancelled.is_set()
    assert cluster.pushes.states(task.id).count(FAILED) == 0


async def test_without_a_backend_hand_over_still_fails_running_tasks() -> None:
    backend = a2a_scale.load_backend('memory', namespace=f'r{uuid.uuid4().hex[:12]}')
    async with backend:
        agent = Agent()
        handler = ClusterRequestHandler(
            agent_executor=agent,
            task_store=backend.task_store,
            agent_card=agent_card(push=False),
            event_stream=backend.event_stream,
        )
        task = await start(handler, call_context())
        await asyncio.wait_for(agent.working.wait(), WAIT)
        await asyncio.wait_for(handler.hand_over(), WAIT)
        assert await stored_state(handler, task.id) == FAILED
        with contextlib.suppress(Exception):
            await handler.aclose()


async def test_a_replica_restarted_under_the_same_id_recovers_its_old_tasks(
    replicas: Callable[..., Replicas],
) -> None:
    """A fixed instance id (a pod name) restarted after a crash.

    The new process heartbeats under the dead one's id, so no other replica
    ever sees the old records as orphans: the new process takes them itself.
    """
    cluster = replicas(instance_id='pod-a')
    agent = Agent()
    await cluster.start(agent, count=1)
    ctx = call_context()
    task = await start(cluster.handlers[0], ctx)
    await asyncio.wait_for(agent.working.wait(), WAIT)
    await cluster.kill(0)

    await cluster.start(Agent(), count=1)  # the same pod, restarted
    restarted = cluster.handlers[1]
    await eventually(lambda: has_state(restarted, task.id, FAILED))
    await eventually(lambda: _no_records(cluster))
