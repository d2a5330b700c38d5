"""`ClusterRequestHandler`: the SDK handler with the cluster-mode fixes."""

from __future__ import annotations

import asyncio
import inspect
from contextlib import aclosing
from typing import TYPE_CHECKING, Any

import httpx
from a2a.server.cluster import LegacyTaskStoreAdapter, VersionedTaskStore
from a2a.server.request_handlers import (
    DefaultRequestHandler,
    validate_request_params,
)
from a2a.server.tasks import BasePushNotificationSender
from a2a.types.a2a_pb2 import (
    SendMessageRequest,
    Task,
    TaskState,
)
from a2a.utils.errors import TaskNotFoundError, UnsupportedOperationError

from a2a_scale import telemetry
from a2a_scale.handler.background import finish_all
from a2a_scale.handler.cancel_watch import RemoteCancelWatch, RunLog
from a2a_scale.handler.failures import FailOnPermanentError
from a2a_scale.handler.followups import DEFAULT_FOLLOW_UP_WAIT, FollowUpTurns
from a2a_scale.handler.fresh import NewTaskContextBuilder
from a2a_scale.handler.pushes import (
    PlainTerminalWriteLog,
    PushLedger,
    TerminalWriteLog,
    TerminalWrites,
)
from a2a_scale.handler.recovery import TaskRecovery
from a2a_scale.handler.registry import ClusterTaskRegistry
from a2a_scale.handler.running import RecoveryConfig
from a2a_scale.handler.turns import tail_shared, tap_running
from a2a_scale.settings import ScaleSettings
from a2a_scale.tasks import INTERRUPTED_STATES, TERMINAL_STATES

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, Coroutine

    from a2a.server.agent_execution import AgentExecutor
    from a2a.server.cluster import StoredTask, TaskEventStream
    from a2a.server.context import ServerCallContext
    from a2a.server.events import Event
    from a2a.types.a2a_pb2 import (
        AgentCard,
        CancelTaskRequest,
        Message,
        SubscribeToTaskRequest,
    )

    from a2a_scale.backend import Backend
    from a2a_scale.sdk_compat import ActiveTask

DEFAULT_INTERRUPTED_TASK_TIMEOUT: float = ScaleSettings.model_fields[
    'interrupted_task_timeout'
].default
"""Seconds a replica keeps a task parked in input-required (the SDK: forever)."""

_SDK_INIT = inspect.signature(DefaultRequestHandler.__init__)


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
    - **No lost follow-up.** The SDK runs the agent for every follow-up and
      saves the user's message at the agent's first event; of two follow-ups
      sent to two replicas at once, the loser's save conflicts twice and its
      message is dropped. Here a follow-up first claims the task's turn with
      a compare-and-set (its message into the history, the task WORKING);
      one that finds the turn taken waits, with jittered backoff, until the
      task is interrupted again and is applied then, or gets
      `FollowUpTimeoutError` after ``follow_up_wait`` seconds. A follow-up
      to a terminal task gets the SDK's terminal-state error. The agent is
      shown the task as it was before the claim.
    - **A save that can never succeed fails the task.** When a store refuses
      an agent's update for good (`PermanentStoreError`: over a size limit,
      corrupt data), the task ends FAILED with the reason as its status
      message, instead of staying in its last state; the client gets the
      store's error.
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
        follow_up_wait: float = DEFAULT_FOLLOW_UP_WAIT,
        _owned_http_client: httpx.AsyncClient | None = None,
        _recovery: RecoveryConfig | None = None,
        **kwargs: Any,
    ) -> None:
        """Takes the SDK's arguments, plus the switches below.

        Args:
            *args: Passed on to `DefaultRequestHandler`.
            watch_remote_cancel: Whether a task running here is watched for a
                cancel served by another replica (see the class docstring).
            follow_up_wait: Seconds a follow-up waits for its task to accept
                a message while another turn runs (see the class docstring).
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
        # The handler keeps its own references rather than read the SDK's.
        self._card: AgentCard = arguments['agent_card']
        self._stream: TaskEventStream | None = arguments.get('event_stream')
        # The SDK saves through the store it is given: a wrapper noting the
        # terminal states the SDK writes itself (and never pushes).
        self._writes = TerminalWrites()
        task_store = arguments['task_store']
        if isinstance(task_store, VersionedTaskStore):
            self._store: VersionedTaskStore = TerminalWriteLog(task_store, self._writes)
            arguments['task_store'] = self._store
        else:
            plain = PlainTerminalWriteLog(task_store, self._writes)
            self._store = LegacyTaskStoreAdapter(plain)
            arguments['task_store'] = plain
        self._run_log = RunLog(self._store)
        if arguments.get('request_context_builder') is None:
            # New tasks' ids are known absent until their first save.
            arguments['request_context_builder'] = NewTaskContextBuilder(
                self._run_log.fresh.add
            )
        # A follow-up claims its task's turn before the agent runs.
        self._follow_ups = FollowUpTurns(
            self._run_log, self._stream, wait=follow_up_wait
        )
        arguments['agent_executor'] = self._follow_ups.executor(
            arguments['agent_executor']
        )
        super().__init__(**arguments)
        self.task_store = task_store
        # Same registry as the SDK's, but its tasks save through a run log,
        # and it reports each turn it sets up and each task it releases.
        # Which turns run here; recorded for recovery when the backend can.
        recovery = _recovery or RecoveryConfig()
        self._turns = recovery.turns()
        self._registry = ClusterTaskRegistry(
            on_turn=self._on_turn,
            on_release=self._on_task_released,
            turns=self._turns,
            agent_executor=self.agent_executor,
            # A task whose update can never be saved ends FAILED.
            task_store=FailOnPermanentError(self._run_log, self._stream),
            push_sender=self._ledger,
            event_stream=self._stream,
            interrupted_task_timeout=arguments['interrupted_task_timeout'],
        )
        self._active_task_registry = self._registry  # Listed in sdk_compat.
        self._cancel_watch = (
            RemoteCancelWatch(self._stream, self._run_log)
            if watch_remote_cancel and self._stream is not None
            else None
        )
        self._recovery = TaskRecovery(
            recovery,
            self._turns,
            store=self._store,
            stream=self._stream,
            settle=self._settle,
            send=self.on_message_send,
        )

    async def aclose(self) -> None:
        """Drains active tasks, watches and pushes, then closes its HTTP client.

        Turns still running stop without any write and keep their records,
        so live replicas recover them once this replica's backend stops.
        """
        await self._recovery.aclose()
        await super().aclose()
        if self._cancel_watch is not None:
            await self._cancel_watch.aclose()
        await finish_all(self._settling)
        if self._owned_http_client is not None:
            await self._owned_http_client.aclose()
            self._owned_http_client = None

    # -- recovery and hand-over (see a2a_scale.handler.recovery) ----------------

    def running_task_ids(self) -> list[str]:
        """The tasks whose agent runs on this replica now (parked ones excluded)."""
        return self._turns.task_ids()

    async def hand_over(self) -> None:
        """Stops the agents running here and applies the recovery policy at once.

        For a replica that shuts down: under ``fail`` each running task is
        saved FAILED (pushed once, seen by every subscriber); under
        ``resume`` the runs stop without a write and a live replica resumes
        them once this replica's backend stops; under ``off`` they stop
        without a write. Afterwards the handler starts no other turn (a new
        message gets an error) and its local subscriptions end.
        """
        await self._recovery.hand_over()
        await self._registry.aclose()

    async def recover_orphans(self) -> int:
        """Claims and recovers the running tasks of dead replicas.

        The backend calls it at every heartbeat. Returns how many tasks were
        claimed.
        """
        return await self._recovery.recover_orphans()

    # -- follow-ups: contextId, one turn at a time -----------------------------

    async def on_message_send(  # noqa: D102
        self, params: SendMessageRequest, context: ServerCallContext
    ) -> Message | Task:
        params = await self._with_context_id(params, context)
        async with self._follow_ups.turn(params, context):
            return await super().on_message_send(params, context)

    async def on_message_send_stream(  # noqa: D102
        self, params: SendMessageRequest, context: ServerCallContext
    ) -> AsyncGenerator[Event, None]:
        params = await self._with_context_id(params, context)
        async with (
            self._follow_ups.turn(params, context),
            aclosing(super().on_message_send_stream(params, context)) as sdk,
        ):
            async for event in sdk:
                yield event

    async def _with_context_id(
        self, params: SendMessageRequest, context: ServerCallContext
    ) -> SendMessageRequest:
        """`params`, or a copy carrying the contextId of the task it names."""
        message = params.message
        if not message.task_id or message.context_id:
            return params
        stored = await self._store.get(message.task_id, context)
        if stored is None or not stored.task.context_id:
            return params  # The SDK refuses an unknown task itself.
        inferred = SendMessageRequest()
        inferred.CopyFrom(params)
        inferred.message.context_id = stored.task.context_id
        return inferred

    def _on_turn(self, active_task: ActiveTask, context: ServerCallContext) -> None:
        """Starts (or renews) the cancel watch of a turn set up here."""
        if self._cancel_watch is not None:
            self._cancel_watch.watch(active_task, context)

    # -- subscriptions ----------------------------------------------------------

    @validate_request_params
    async def on_subscribe_to_task(  # noqa: D102
        self,
        params: SubscribeToTaskRequest,
        context: ServerCallContext,
    ) -> AsyncGenerator[Event, None]:
        stream = self._stream
        if stream is None:
            async with aclosing(super().on_subscribe_to_task(params, context)) as sdk:
                async for event in sdk:
                    yield event
            return
        if not self._card.capabilities.streaming:
            raise UnsupportedOperationError('Streaming is not supported by the agent')

        task_id = params.id
        stored = await self._stored_live_task(task_id, context)
        local = await self._registry.get(task_id)
        if local is not None and stored.task.status.state not in INTERRUPTED_STATES:
            tap_done = False
            async with aclosing(tap_running(local)) as tap:
                async for event in tap:
                    tap_done = True
                    yield event
            if tap_done:
                return
            # The local task parked or finished before the tap: read again.
            stored = await self._stored_live_task(task_id, context)

        async with aclosing(
            tail_shared(task_id, stored.task, stored.version, stream)
        ) as shared:
            async for event in shared:
                yield event

    async def _stored_live_task(
        self, task_id: str, context: ServerCallContext
    ) -> StoredTask:
        """Reads the task, refusing absent and terminal ones like the SDK."""
        stored = await self._store.get(task_id, context)
        if stored is None:
            raise TaskNotFoundError
        state = stored.task.status.state
        if state in TERMINAL_STATES:
            raise UnsupportedOperationError(
                message=f'Task {task_id} is in terminal state: {TaskState.Name(state)}'
            )
        return stored

    # -- pushes the SDK skips -----------------------------------------------------

    async def on_cancel_task(  # noqa: D102
        self, params: CancelTaskRequest, context: ServerCallContext
    ) -> Task | None:
        try:
            return await super().on_cancel_task(params, context)
        finally:
            # A CANCELED written here, by the SDK's remote path or after an
            # executor whose cancel emitted nothing, was not pushed.
            await self._settle(params.id)

    def _on_task_released(self, active_task: ActiveTask) -> None:
        """Ends the task's watch and settles its pushes once it is released."""
        if self._cancel_watch is not None:
            self._cancel_watch.release(active_task)
        self._run_log.cancelling.discard(active_task.task_id)
        self._run_log.fresh.discard(active_task.task_id)
        push = self._unpushed(active_task.task_id)
        if push is None:
            return  # Nothing to push: most turns.
        task = asyncio.create_task(push)
        self._settling.add(task)
        task.add_done_callback(self._settling.discard)

    async def _settle(self, task_id: str) -> None:
        """Pushes a FAILED or CANCELED this replica wrote, unless already pushed."""
        push = self._unpushed(task_id)
        if push is not None:
            await push

    def _unpushed(self, task_id: str) -> Coroutine[Any, Any, None] | None:
        """The push of a FAILED or CANCELED written here and not yet pushed."""
        event = self._writes.pop(task_id)
        if event is None or self._ledger is None:
            return None
        return self._ledger.send_once(task_id, event)


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
            (``A2A_SCALE_INTERRUPTED_TASK_TIMEOUT``) and ``follow_up_wait``
            (``A2A_SCALE_FOLLOW_UP_WAIT``), ``push_config_store``
            is the backend's, and when the card allows push notifications a
            `BasePushNotificationSender` over its own HTTP client (closed by
            `ClusterRequestHandler.aclose`) is created.
    """
    kwargs.setdefault(
        'interrupted_task_timeout', backend.settings.interrupted_task_timeout
    )
    kwargs.setdefault('push_config_store', backend.push_config_store)
    kwargs.setdefault('follow_up_wait', backend.settings.follow_up_wait)
    kwargs.setdefault('_recovery', RecoveryConfig.of(backend))
    if 'push_sender' not in kwargs and agent_card.capabilities.push_notifications:
        client = httpx.AsyncClient(timeout=10.0)
        kwargs['push_sender'] = BasePushNotificationSender(
            client, kwargs['push_config_store']
        )
        kwargs['_owned_http_client'] = client
    # Traced and metered store, stream and push sender while telemetry is on.
    task_store, event_stream, push_sender = telemetry.instrument(
        backend, backend.task_store, backend.event_stream, kwargs.get('push_sender')
    )
    if push_sender is not None:
        kwargs['push_sender'] = push_sender
    return ClusterRequestHandler(
        agent_executor=agent_executor,
        task_store=task_store,
        agent_card=agent_card,
        event_stream=event_stream,
        **kwargs,
    )
