"""The `Backend` interface: the stores and lifecycle of one replica."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar, Self

from a2a.server.owner_resolver import OwnerResolver, resolve_user_scope

from a2a_scale import telemetry
from a2a_scale.errors import BackendNotStartedError
from a2a_scale.recovery import RecoveryPolicy, owner_aware

if TYPE_CHECKING:
    from types import TracebackType

    from a2a.server.agent_execution import AgentExecutor
    from a2a.server.cluster import TaskEventStream, VersionedTaskStore
    from a2a.server.tasks import PushNotificationConfigStore
    from a2a.types.a2a_pb2 import AgentCard

    from a2a_scale.handler import ClusterRequestHandler
    from a2a_scale.health import ComponentHealth
    from a2a_scale.lifecycle import QueueLifecycle
    from a2a_scale.ops import ClusterView
    from a2a_scale.recovery import RunningTask, RunningTasks
    from a2a_scale.settings import ScaleSettings


logger = logging.getLogger(__name__)


class Backend(ABC):
    """A replica's view of the shared cluster state.

    A backend bundles a `VersionedTaskStore`, a `TaskEventStream`, a
    `PushNotificationConfigStore` and a `QueueLifecycle` over one connection.
    Constructing it does no I/O; `start()` (or ``async with backend``)
    connects and provisions per-replica resources, `stop()` releases them.
    """

    name: ClassVar[str] = ''

    def __init__(
        self,
        settings: ScaleSettings,
        *,
        owner_resolver: OwnerResolver = resolve_user_scope,
    ) -> None:
        self.settings = settings
        # An `OwnerContext` (recovery) resolves to its owner on every backend.
        self.owner_resolver = owner_aware(owner_resolver)
        self._started = False
        self._loops: list[asyncio.Task[None]] = []
        self._handlers: list[ClusterRequestHandler] = []

    @property
    @abstractmethod
    def task_store(self) -> VersionedTaskStore:
        """The shared, versioned task store."""

    @property
    @abstractmethod
    def event_stream(self) -> TaskEventStream:
        """The cross-replica event stream."""

    @property
    @abstractmethod
    def push_config_store(self) -> PushNotificationConfigStore:
        """The shared push-notification config store."""

    @property
    @abstractmethod
    def lifecycle(self) -> QueueLifecycle:
        """This replica's per-instance resources."""

    @property
    def running_tasks(self) -> RunningTasks | None:
        """Which replica runs which task; `None` if the backend cannot recover."""
        return None

    @property
    def cluster_view(self) -> ClusterView:
        """An operator's view of the namespace: every task, replicas, events.

        Raises:
            UnsupportedOperationError: If the backend does not provide one.
        """
        from a2a_scale.ops import UnsupportedOperationError  # noqa: PLC0415

        raise UnsupportedOperationError(
            f'The {self.name!r} backend has no operator view (tasks, replicas, '
            'tail, cancel): its plugin does not implement Backend.cluster_view'
        )

    @abstractmethod
    async def health(self) -> list[ComponentHealth]:
        """Checks each component; one report per component."""

    async def _connect(self) -> None:  # noqa: B027
        """Opens connections; called by `start()` before provisioning."""

    async def _close(self) -> None:  # noqa: B027
        """Closes connections; called by `stop()` after teardown."""

    async def _observe(self) -> None:  # noqa: B027
        """Sets backend-specific gauges (`a2a_scale.telemetry.set_gauge`).

        Called at each heartbeat, only while metrics are recorded.
        """

    @property
    def started(self) -> bool:
        """Whether `start()` has completed and `stop()` has not run."""
        return self._started

    @property
    def address(self) -> str:
        """Where the backend connects, password hidden; ``''`` if in process."""
        return ''

    @property
    def instance_id(self) -> str:
        """The id of this replica."""
        return self.settings.instance_id

    def ensure_started(self) -> None:
        """Raises `BackendNotStartedError` unless the backend is started."""
        if not self._started:
            raise BackendNotStartedError(
                f'The {self.name!r} backend is not started: use '
                '"async with backend:" or "await backend.start()" first.'
            )

    async def start(self) -> None:
        """Connects, provisions per-replica resources and starts heartbeats."""
        if self._started:
            return
        await self._connect()
        try:
            await self.lifecycle.provision()
        except BaseException:
            await self._close()
            raise
        await self._note_inherited_records()
        self._started = True
        self._loops.append(
            asyncio.create_task(
                self._every(self.settings.heartbeat_interval, self._beat),
                name=f'a2a-scale-heartbeat-{self.instance_id}',
            )
        )

    async def _note_inherited_records(self) -> None:
        """Notes the running-task records already under this replica's id.

        Nothing runs here yet, so they were left by an earlier process with
        the same instance id (a fixed id, such as a pod name, restarted after
        a crash). No other replica sees them as orphans, since this one
        heartbeats under that id: this replica's handler recovers them.
        """
        self._inherited: list[RunningTask] = []
        records = self.running_tasks
        if records is None or self.settings.recovery == RecoveryPolicy.OFF:
            return
        try:
            self._inherited = await records.running(self.instance_id)
        except Exception:
            logger.exception('Reading the running tasks left under this id failed')
        if self._inherited:
            logger.warning(
                'An earlier process with instance id %s left %d running tasks; '
                'they are recovered under the recovery policy',
                self.instance_id,
                len(self._inherited),
            )

    def take_inherited_records(self) -> list[RunningTask]:
        """Returns, once, the records an earlier process left under this id."""
        inherited = getattr(self, '_inherited', [])
        self._inherited = []
        return inherited

    async def stop(self) -> None:
        """Stops handlers and loops, tears down resources, disconnects."""
        if not self._started:
            return
        await self._stop_serving()
        try:
            await self.lifecycle.teardown()
        finally:
            await self._close()

    async def purge(self) -> list[str]:
        """Stops this replica, then deletes everything the namespace stores.

        For demos and tests that own their namespace: every task, event log,
        push config and shared resource (table, topic, keys) of the namespace
        is gone afterwards, for every replica. Stop the other replicas first.

        Returns:
            One line per deleted resource, e.g. ``'42 Redis keys'``.

        Raises:
            NotImplementedError: If the backend cannot delete a namespace.
        """
        self.ensure_started()
        await self._stop_serving()
        try:
            await self.lifecycle.teardown()
            return await self._purge()
        finally:
            await self._close()

    async def _purge(self) -> list[str]:
        """Deletes the namespace's data; called by `purge()` while connected."""
        raise NotImplementedError(
            f'The {self.name!r} backend cannot delete a namespace'
        )

    async def _stop_serving(self) -> None:
        """Marks the backend stopped; closes its handlers and periodic loops."""
        self._started = False
        for handler in self._handlers:
            await handler.aclose()
        self._handlers.clear()
        for loop in self._loops:
            loop.cancel()
        for loop in self._loops:
            with contextlib.suppress(asyncio.CancelledError):
                await loop
        self._loops.clear()

    async def _beat(self) -> None:
        await self.lifecycle.heartbeat()
        with telemetry.span(self, 'a2a_scale.replicas.reap'):
            reaped = await self.lifecycle.reap(older_than=self.settings.reap_after)
        if reaped:
            logger.info('Reaped resources of dead replicas: %s', reaped)
            telemetry.count_reaped(self, reaped)
        if self._handlers:
            # Only a replica that serves recovers dead replicas' tasks.
            with telemetry.span(self, 'a2a_scale.tasks.recover'):
                recovered = await self._handlers[0].recover_orphans()
            telemetry.count_recovered(self, recovered, str(self.settings.recovery))
        await telemetry.observe(self)

    @staticmethod
    async def _every(interval: float, action: Any) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await action()
            except Exception:
                logger.exception('Periodic backend task failed; will retry')

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def request_handler(
        self,
        *,
        agent_executor: AgentExecutor,
        agent_card: AgentCard,
        **kwargs: Any,
    ) -> ClusterRequestHandler:
        """Builds a cluster-ready `DefaultRequestHandler` on this backend.

        Args:
            agent_executor: The agent to run.
            agent_card: The agent's card.
            **kwargs: Passed on to `DefaultRequestHandler` (``push_sender``,
                ``interrupted_task_timeout``, ...). The stores, the event
                stream and, when the card allows push notifications, a push
                sender are filled in from this backend.
        """
        from a2a_scale.handler import build_request_handler  # noqa: PLC0415

        handler = build_request_handler(
            self, agent_executor=agent_executor, agent_card=agent_card, **kwargs
        )
        self._handlers.append(handler)
        return handler
