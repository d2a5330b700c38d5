"""`ClusterRequestHandler`: the SDK handler with the cluster-mode fixes."""

from __future__ import annotations

import asyncio
import inspect
from contextlib import aclosing
from typing import TYPE_CHECKING, Any

import httpx
from a2a.server.agent_execution.active_task import (
    INTERRUPTED_TASK_STATES,
    TERMINAL_TASK_STATES,
)
from a2a.server.agent_execution.active_task_registry import ActiveTaskRegistry
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.request_handlers.request_handler import (
    validate,
    validate_request_params,
)
from a2a.server.tasks import BasePushNotificationSender
from a2a.types.a2a_pb2 import (
    SendMessageRequest,
    Task,
    TaskState,
    TaskStatusUpdateEvent,
)
from a2a.utils.errors import TaskNotFoundError, UnsupportedOperationError

from a2a_scale.handler.cancel_watch import RemoteCancelWatch
from a2a_scale.handler.pushes import PushLedger, TerminalWriteLog, status_event
from a2a_scale.handler.turns import ends_turn
from a2a_scale.settings import ScaleSettings

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator

    from a2a.server.agent_execution import AgentExecutor, RequestContext
    from a2a.server.agent_execution.active_task import ActiveTask
    from a2a.server.cluster import StoredTask, TaskEventStream, TaskVersion
    from a2a.server.context import ServerCallContext
    from a2a.server.events import Event
    from a2a.types.a2a_pb2 import (
        AgentCard,
        SubscribeToTaskRequest,
    )

    from a2a_scale.backend import Backend

DEFAULT_INTERRUPTED_TASK_TIMEOUT: float = ScaleSettings.model_fields[
    'interrupted_task_timeout'
].default
"""Seconds a replica keeps a task parked in input-required (the SDK: forever)."""

_SDK_INIT = inspect.signature(DefaultRequestHandler.__init__)


class _SettlingTaskRegistry(ActiveTaskRegistry):
    """An `ActiveTaskRegistry` that settles terminal pushes when a task ends."""

    def __init__(self, handler: ClusterRequestHandler, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._handler = handler

    def _on_active_task_cleanup(self, active_task: ActiveTask) -> None:
        super()._on_active_task_cleanup(active_task)
        self._handler._on_task_released(active_task)


class ClusterRequestHandler(DefaultRequestHandler):
    """`DefaultRequestHandler` with the fixes cluster mode needs.

    Each fix corrects one behaviour of a2a-sdk 1.3 when several replicas share
    a `VersionedTaskStore` and a `TaskEventStream`; everything else is the
    SDK's.

    - **Parked tasks are released.** The SDK keeps a task parked in
      input-required or auth-required in memory forever
      (``interrupted_task_timeout=None``). This handler defaults to
      `DEFAULT_INTERRUPTED_TASK_TIMEOUT` seconds; pass ``None`` to opt out.
    - **No stale local subscriptions.** The SDK serves ``SubscribeToTask``
      from this replica's `ActiveTask` whenever it holds one, even a parked
      one whose follow-up went to another replica: the subscriber sees stale
      state and hangs. Here a task the store shows as interrupted is always
      served from the shared stream, and a subscription tapping a task that
      runs here ends at the next interrupted or terminal state, like the
      SDK's remote path, instead of staying on the parked task.
    - **Subscriptions survive the start of a follow-up.** The SDK's remote
      path stops at the first logged event whose state is interrupted. When a
      follow-up arrives, the SDK first logs the task with the new message in
      its history, still in input-required, so every subscriber of a waiting
      task stops there and never sees the follow-up's work. Here only a move
      into an interrupted state ends a subscription.
    - **contextId of a follow-up.** A message that carries only ``taskId``
      gets a fresh contextId from the SDK (a2a-python issue #1206), which
      then conflicts with the stored task. Here the contextId is taken from
      the stored task (an owner-scoped read) on a copy of the request.
    - **Pushes the SDK skips.** The SDK pushes the events an agent emits, but
      not the states it writes itself: CANCELED written by a cancel served on
      a replica that does not run the task, CANCELED written after an
      executor whose ``cancel`` emits nothing, and FAILED written after an
      executor raises. This handler pushes each of those once; states the
      SDK already pushed are not pushed again.
    - **A cancel from any replica stops the agent.** A cancel served on a
      replica that does not run the task only writes CANCELED to the store;
      the SDK on the running replica notices at the agent's next save, so an
      idle agent (awaiting a model, a timer, an event) runs on, possibly
      forever. Here, while a turn runs, the replica follows the task's shared
      stream and cancels the run on a CANCELED it did not write: the
      executor's ``cancel`` is called and the agent's coroutine cancelled, as
      for a local cancel, and nothing is written or pushed again. Cost: one
      stream subscription and one asyncio task per running task (cheap where
      the backend multiplexes subscriptions, as memory and Redis do; with the
      SDK's SQL stream each one polls). Pass ``watch_remote_cancel=False`` to
      opt out.
    """

    def __init__(
        self,
        *args: Any,
        watch_remote_cancel: bool = True,
        _owned_http_client: httpx.AsyncClient | None = None,
        **kwargs: Any,
    ) -> None:
        """Takes the SDK's arguments, plus the switches below.

        Args:
            *args: Passed on to `DefaultRequestHandler`.
            watch_remote_cancel: Whether a task running here is watched for a
                cancel served by another replica (see the class docstring).
            **kwargs: Passed on to `DefaultRequestHandler`;
                ``interrupted_task_timeout`` defaults to
                `DEFAULT_INTERRUPTED_TASK_TIMEOUT`.
        """
        bound = _SDK_INIT.bind(self, *args, **kwargs)
        arguments = dict(bound.arguments)
        del arguments['self']
        arguments.setdefault(
            'interrupted_task_timeout', DEFAULT_INTERRUPTED_TASK_TIMEOUT
        )
        sender = arguments.get('push_sender')
        self._ledger = PushLedger(sender) if sender is not None else None
        if self._ledger is not None:
            arguments['push_sender'] = self._ledger
        self._owned_http_client = _owned_http_client
        self._settling: set[asyncio.Task[None]] = set()
        super().__init__(**arguments)
        # Same registry as the SDK's, but its tasks save through a store
        # wrapper that notes the terminal states the SDK writes itself, and it
        # reports each task it releases.
        self._write_log = TerminalWriteLog(self._versioned_store)
        self._active_task_registry = _SettlingTaskRegistry(
            self,
            agent_executor=self.agent_executor,
            task_store=self._write_log,
            push_sender=self._ledger,
            event_stream=self._event_stream,
            interrupted_task_timeout=arguments['interrupted_task_timeout'],
        )
        self._cancel_watch = (
            RemoteCancelWatch(self._event_stream, self._write_log)
            if watch_remote_cancel and self._event_stream is not None
            else None
        )

    async def aclose(self) -> None:
        """Drains active tasks, watches and pushes, then closes its HTTP client."""
        await super().aclose()
        if self._cancel_watch is not None:
            await self._cancel_watch.aclose()
        while self._settling:
            await asyncio.gather(*self._settling, return_exceptions=True)
        if self._owned_http_client is not None:
            await self._owned_http_client.aclose()
            self._owned_http_client = None

    # -- contextId of a follow-up ---------------------------------------------

    async def _setup_active_task(
        self, params: SendMessageRequest, call_context: ServerCallContext
    ) -> tuple[ActiveTask, RequestContext]:
        message = params.message
        if message.task_id and not message.context_id:
            stored = await self._versioned_store.get(message.task_id, call_context)
            if stored is not None and stored.task.context_id:
                inferred = SendMessageRequest()
                inferred.CopyFrom(params)
                inferred.message.context_id = stored.task.context_id
                params = inferred
        active_task, request_context = await super()._setup_active_task(
            params, call_context
        )
        if self._cancel_watch is not None:
            self._cancel_watch.watch(active_task)
        return active_task, request_context

    # -- subscriptions ----------------------------------------------------------

    @validate_request_params
    @validate(
        lambda self: self._agent_card.capabilities.streaming,
        'Streaming is not supported by the agent',
    )
    async def on_subscribe_to_task(  # noqa: D102
        self,
        params: SubscribeToTaskRequest,
        context: ServerCallContext,
    ) -> AsyncGenerator[Event, None]:
        stream = self._event_stream
        if stream is None:
            async with aclosing(super().on_subscribe_to_task(params, context)) as sdk:
                async for event in sdk:
                    yield event
            return

        task_id = params.id
        stored = await self._stored_live_task(task_id, context)
        local = await self._active_task_registry.get(task_id)
        if local is not None and stored.task.status.state not in (
            INTERRUPTED_TASK_STATES
        ):
            tap_done = False
            async with aclosing(self._tap_running(local)) as tap:
                async for event in tap:
                    tap_done = True
                    yield event
            if tap_done:
                return
            # The local task parked or finished before the tap: read again.
            stored = await self._stored_live_task(task_id, context)

        async with aclosing(
            self._tail_shared(task_id, stored.task, stored.version, stream)
        ) as shared:
            async for event in shared:
                yield event

    async def _stored_live_task(
        self, task_id: str, context: ServerCallContext
    ) -> StoredTask:
        """Reads the task, refusing absent and terminal ones like the SDK."""
        stored = await self._versioned_store.get(task_id, context)
        if stored is None:
            raise TaskNotFoundError
        state = stored.task.status.state
        if state in TERMINAL_TASK_STATES:
            raise UnsupportedOperationError(
                message=f'Task {task_id} is in terminal state: {TaskState.Name(state)}'
            )
        return stored

    @staticmethod
    async def _tail_shared(
        task_id: str, snapshot: Task, version: TaskVersion, stream: TaskEventStream
    ) -> AsyncGenerator[Event, None]:
        """Serves the snapshot, then the shared stream until the turn ends.

        The SDK's remote path, except that it does not stop at the history
        save that starts a follow-up turn (see `ends_turn`).
        """
        yield snapshot
        status = snapshot.status
        async with aclosing(stream.subscribe(task_id, after=version)) as events:
            async for versioned in events:
                if not versioned.version.is_after(version):
                    continue
                event = versioned.event
                yield event
                if ends_turn(event, status):
                    return
                if isinstance(event, Task | TaskStatusUpdateEvent):
                    status = event.status

    @staticmethod
    async def _tap_running(local: ActiveTask) -> AsyncGenerator[Event, None]:
        """Taps a task running here until its turn ends.

        Yields nothing when the local task is parked (its snapshot is
        interrupted, possibly stale) or already finished.
        """
        async with aclosing(local.subscribe(include_initial_task=True)) as events:
            try:
                first = await anext(events, None)
            except UnsupportedOperationError:
                # Finished between the registry lookup and the tap.
                return
            if first is None or ends_turn(first):
                return
            yield first
            async for event in events:
                yield event
                if ends_turn(event):
                    return

    # -- pushes the SDK skips -----------------------------------------------------

    async def _write_cancel(
        self,
        task_id: str,
        current: Task,
        version: TaskVersion,
        context: ServerCallContext,
    ) -> Task:
        cancelled = await super()._write_cancel(task_id, current, version, context)
        if self._ledger is not None:
            await self._ledger.send_once(task_id, status_event(cancelled))
        return cancelled

    async def _cancel_local(self, task_id: str, context: ServerCallContext) -> Task:
        try:
            return await super()._cancel_local(task_id, context)
        finally:
            await self._settle(task_id)

    def _on_task_released(self, active_task: ActiveTask) -> None:
        """Ends the task's watch and settles its pushes once it is released."""
        if self._cancel_watch is not None:
            self._cancel_watch.release(active_task)
        self._write_log.cancelling.discard(active_task.task_id)
        task = asyncio.create_task(self._settle(active_task.task_id))
        self._settling.add(task)
        task.add_done_callback(self._settling.discard)

    async def _settle(self, task_id: str) -> None:
        """Pushes a FAILED or CANCELED this replica wrote, unless already pushed."""
        event = self._write_log.written.pop(task_id, None)
        if event is not None and self._ledger is not None:
            await self._ledger.send_once(task_id, event)


def build_request_handler(
    backend: Backend,
    *,
    agent_executor: AgentExecutor,
    agent_card: AgentCard,
    **kwargs: Any,
) -> ClusterRequestHandler:
    """Builds a `ClusterRequestHandler` wired to `backend`.

    Args:
        backend: The backend whose stores and stream the handler uses.
        agent_executor: The agent to run.
        agent_card: The agent's card.
        **kwargs: Passed on to `DefaultRequestHandler`. Unless given:
            ``interrupted_task_timeout`` comes from the backend's settings
            (``A2A_SCALE_INTERRUPTED_TASK_TIMEOUT``), ``push_config_store``
            is the backend's, and when the card allows push notifications a
            `BasePushNotificationSender` over its own HTTP client (closed by
            `ClusterRequestHandler.aclose`) is created.
    """
    kwargs.setdefault(
        'interrupted_task_timeout', backend.settings.interrupted_task_timeout
    )
    kwargs.setdefault('push_config_store', backend.push_config_store)
    if 'push_sender' not in kwargs and agent_card.capabilities.push_notifications:
        client = httpx.AsyncClient(timeout=10.0)
        kwargs['push_sender'] = BasePushNotificationSender(
            client, kwargs['push_config_store']
        )
        kwargs['_owned_http_client'] = client
    return ClusterRequestHandler(
        agent_executor=agent_executor,
        task_store=backend.task_store,
        agent_card=agent_card,
        event_stream=backend.event_stream,
        **kwargs,
    )
