"""Test agents, a recording push sender and a cluster of handler replicas.

Several request handlers over one shared set of stores act as replicas: each
has its own `ActiveTaskRegistry` (the per-process state that causes the SDK
gaps), while the task store, event stream and push-config store are shared.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.cluster import TaskEventStream, VersionedTaskStore
from a2a.server.context import ServerCallContext
from a2a.server.events import EventQueue
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.tasks import (
    PushNotificationConfigStore,
    PushNotificationEvent,
    PushNotificationSender,
    TaskUpdater,
)
from a2a.types.a2a_pb2 import (
    AgentCapabilities,
    AgentCard,
    AgentInterface,
    AgentSkill,
    Message,
    Part,
    Role,
    SendMessageConfiguration,
    SendMessageRequest,
    Task,
    TaskState,
    TaskStatus,
    TaskStatusUpdateEvent,
)

from a2a_scale.handler import ClusterRequestHandler
from a2a_scale.testing.helpers import user_context

WAIT = 10.0
"""Upper bound for any single wait in these tests: a bug fails, not hangs."""


def call_context(user: str = 'alice') -> ServerCallContext:
    """A call context for `user`."""
    return user_context(user)


def user_message(
    text: str = 'hi', *, task_id: str = '', context_id: str = ''
) -> Message:
    """A user message, optionally continuing a task or context."""
    return Message(
        message_id=str(uuid.uuid4()),
        role=Role.ROLE_USER,
        parts=[Part(text=text)],
        task_id=task_id,
        context_id=context_id,
    )


def send_request(
    message: Message, *, return_immediately: bool = False
) -> SendMessageRequest:
    """A `SendMessageRequest` for `message`."""
    return SendMessageRequest(
        message=message,
        configuration=SendMessageConfiguration(return_immediately=return_immediately),
    )


async def start_task(handler: DefaultRequestHandler, ctx: ServerCallContext) -> Task:
    """Starts a task on `handler` and returns it at once; the agent runs on."""
    task = await asyncio.wait_for(
        handler.on_message_send(
            send_request(user_message(), return_immediately=True), ctx
        ),
        WAIT,
    )
    assert isinstance(task, Task)
    return task


async def wait_until_stored(
    cluster: Cluster, task_id: str, state: int, ctx: ServerCallContext
) -> None:
    """Waits until the shared task store holds `task_id` in `state`.

    An agent's event is saved after the agent enqueued it, a few loop turns
    later; how many differs between Python versions (from 3.12
    `asyncio.wait_for` awaits in the caller's task instead of a new one). A
    test that needs the state saved, not just produced, waits for this.
    """
    assert cluster.shared is not None
    store = cluster.shared.task_store
    async with asyncio.timeout(WAIT):
        while True:
            stored = await store.get(task_id, ctx)
            if stored is not None and stored.task.status.state == state:
                return
            await asyncio.sleep(0.005)


def agent_card(*, push: bool = True) -> AgentCard:
    """A minimal card with streaming and, optionally, push support."""
    return AgentCard(
        name='test-agent',
        description='An agent for handler tests.',
        version='1.0.0',
        supported_interfaces=[
            AgentInterface(
                url='http://127.0.0.1:1/',
                protocol_binding='JSONRPC',
                protocol_version='1.0',
            )
        ],
        default_input_modes=['text/plain'],
        default_output_modes=['text/plain'],
        skills=[
            AgentSkill(id='echo', name='echo', description='Echoes.', tags=['test'])
        ],
        capabilities=AgentCapabilities(streaming=True, push_notifications=push),
    )


def state_of(event: Any) -> int | None:
    """The task state an event carries, if any."""
    if isinstance(event, Task | TaskStatusUpdateEvent):
        return event.status.state
    return None


def _updater(context: RequestContext, queue: EventQueue) -> TaskUpdater:
    return TaskUpdater(queue, str(context.task_id), str(context.context_id))


async def _start(context: RequestContext, queue: EventQueue) -> TaskUpdater:
    if context.current_task is None:
        await queue.enqueue_event(
            Task(
                id=str(context.task_id),
                context_id=str(context.context_id),
                status=TaskStatus(state=TaskState.TASK_STATE_SUBMITTED),
            )
        )
    updater = _updater(context, queue)
    await updater.start_work()
    return updater


class InputThenComplete(AgentExecutor):
    """Asks for input on the first turn and completes on the follow-up."""

    def __init__(self) -> None:
        self.turns: list[tuple[str | None, str | None]] = []
        self.release = asyncio.Event()
        """Set to let a follow-up turn finish; set by default."""
        self.release.set()
        self.first_release = asyncio.Event()
        """Set to let the first turn ask for input; set by default."""
        self.first_release.set()
        self.follow_up_started = asyncio.Event()

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        self.turns.append((context.task_id, context.context_id))
        first = context.current_task is None
        updater = await _start(context, event_queue)
        if first:
            await self.first_release.wait()
            await updater.requires_input(updater.new_agent_message([Part(text='?')]))
            return
        self.follow_up_started.set()
        await self.release.wait()
        await updater.complete()

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        await _updater(context, event_queue).cancel()


class Raises(AgentExecutor):
    """Creates the task, starts work, then raises."""

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        await _start(context, event_queue)
        raise RuntimeError('the agent broke')

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        raise NotImplementedError


class FailsThenRaises(AgentExecutor):
    """Reports FAILED itself, then raises (the SDK pushes this FAILED)."""

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        updater = await _start(context, event_queue)
        await updater.failed()
        raise RuntimeError('the agent broke after reporting failure')

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        raise NotImplementedError


class Completes(AgentExecutor):
    """Completes in one turn."""

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        updater = await _start(context, event_queue)
        await updater.complete()

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        raise NotImplementedError


class WaitsForCancel(AgentExecutor):
    """Works until cancelled; `cancel` reports CANCELED unless told not to."""

    def __init__(self, *, report_cancel: bool = True) -> None:
        self.report_cancel = report_cancel
        self.working = asyncio.Event()
        self.cancelled = asyncio.Event()

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        await _start(context, event_queue)
        self.working.set()
        await asyncio.Event().wait()

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        self.cancelled.set()
        if self.report_cancel:
            await _updater(context, event_queue).cancel()


class RecordingPushSender(PushNotificationSender):
    """Records every push the handler asks for."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, PushNotificationEvent]] = []
        self._changed = asyncio.Condition()

    async def send_notification(
        self, task_id: str, event: PushNotificationEvent
    ) -> None:
        # The SDK may hand over its live task object, which it keeps
        # updating in place: record the event as it was when pushed.
        snapshot = type(event)()
        snapshot.CopyFrom(event)
        async with self._changed:
            self.sent.append((task_id, snapshot))
            self._changed.notify_all()

    def states(self, task_id: str) -> list[int]:
        """The task states pushed for `task_id`, in order."""
        return [
            s for t, e in self.sent if t == task_id and (s := state_of(e)) is not None
        ]

    def count(self, task_id: str, state: int) -> int:
        """How many pushes for `task_id` carried `state`."""
        return self.states(task_id).count(state)

    async def wait_for(self, task_id: str, state: int, *, within: float = WAIT) -> None:
        """Waits until a push for `task_id` carries `state`."""
        async with self._changed:
            await asyncio.wait_for(
                self._changed.wait_for(lambda: self.count(task_id, state) > 0),
                within,
            )


@dataclass
class SharedStores:
    """One replica's view of the shared state."""

    task_store: VersionedTaskStore
    event_stream: TaskEventStream
    push_config_store: PushNotificationConfigStore


@dataclass
class Cluster:
    """Replica handlers of one handler class over shared stores."""

    handler_class: type[DefaultRequestHandler]
    stores: Callable[[], SharedStores]
    handlers: list[DefaultRequestHandler] = field(default_factory=list)
    shared: SharedStores | None = None
    """The stores of the first replica built, for direct reads in tests."""
    pushes: RecordingPushSender = field(default_factory=RecordingPushSender)
    sql_gate: threading.Event | None = None
    """SQL stores only: while set, every statement waits inside its query."""

    @property
    def fixed(self) -> bool:
        """Whether the handlers under test carry the a2a-scale fixes."""
        return issubclass(self.handler_class, ClusterRequestHandler)

    def replicas(
        self, executor: AgentExecutor, count: int = 2, **kwargs: Any
    ) -> list[DefaultRequestHandler]:
        """Builds `count` replicas that all run `executor`."""
        kwargs.setdefault('push_sender', self.pushes)
        built = []
        for _ in range(count):
            stores = self.stores()
            if self.shared is None:
                self.shared = stores
            handler = self.handler_class(
                agent_executor=executor,
                task_store=stores.task_store,
                agent_card=agent_card(),
                event_stream=stores.event_stream,
                push_config_store=stores.push_config_store,
                **kwargs,
            )
            built.append(handler)
        self.handlers.extend(built)
        return built

    async def aclose(self) -> None:
        """Closes every replica.

        A close that overruns is left to finish rather than cancelled: a
        second cancel can interrupt a SQL subscription's cleanup and strand
        its connection, whose close then hangs the event loop's shutdown.
        """
        for handler in self.handlers:
            closing = asyncio.ensure_future(handler.aclose())
            await asyncio.wait({closing}, timeout=WAIT)
            if closing.done() and not closing.cancelled():
                closing.exception()  # retrieved: a failed close is not the test's


async def collect(
    events: AsyncIterator[Any],
    *,
    until: Callable[[Any], bool] | None = None,
    close: bool = True,
) -> list[Any]:
    """Reads `events` to their end (or through the first `until` match).

    The generator is closed afterwards unless `close` is false.
    """
    seen: list[Any] = []

    async def read() -> None:
        async for event in events:
            seen.append(event)
            if until is not None and until(event):
                return

    try:
        await asyncio.wait_for(read(), WAIT)
    finally:
        aclose = getattr(events, 'aclose', None)
        if close and aclose is not None:
            await aclose()
    return seen


async def first_event(events: AsyncIterator[Any]) -> Any:
    """The first event of `events`, within the test bound."""
    return await asyncio.wait_for(anext(aiter(events)), WAIT)


def expect_sdk_gap(cluster: Cluster, request: Any, gap: str) -> None:
    """Marks the plain-SDK variant of a test as a strict expected failure.

    The same assertions then prove both sides: they pass with our handler and
    fail with the SDK's. If an SDK release fixes the gap, the XPASS fails the
    run, which says the workaround can go.
    """
    if not cluster.fixed:
        import pytest

        request.applymarker(pytest.mark.xfail(strict=True, reason=f'SDK gap: {gap}'))


async def ends_within(events: AsyncIterator[Any], seconds: float) -> bool:
    """Whether `events` ends (with no further event) within `seconds`.

    Unlike `asyncio.wait_for`, this never cancels the read: the SDK's
    subscriptions swallow cancellation and end as if finished.
    """
    read = asyncio.ensure_future(anext(aiter(events)))
    done, _ = await asyncio.wait({read}, timeout=seconds)
    if not done:
        read.cancel()
        with contextlib.suppress(BaseException):
            await read
        return False
    return isinstance(read.exception(), StopAsyncIteration)


async def wait_for_logged_state(
    cluster: Cluster, task_id: str, state: int, *, after: Any
) -> None:
    """Waits until the shared log holds an event in `state` after version `after`."""
    assert cluster.shared is not None
    events = cluster.shared.event_stream.subscribe(task_id, after=after)

    async def scan() -> None:
        async for versioned in events:
            if state_of(versioned.event) == state:
                return

    try:
        await asyncio.wait_for(scan(), WAIT)
    finally:
        await events.aclose()
