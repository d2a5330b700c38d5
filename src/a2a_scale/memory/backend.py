"""`MemoryBackend`: the embedded backend, shared by replicas of one process."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from a2a.server.owner_resolver import OwnerResolver, resolve_user_scope

from a2a_scale.backend import Backend
from a2a_scale.health import PUSH_STORE, REPLICAS, STORE, STREAM, ComponentHealth
from a2a_scale.memory.lifecycle import MemoryQueueLifecycle
from a2a_scale.memory.ops import MemoryClusterView
from a2a_scale.memory.push import MemoryPushNotificationConfigStore
from a2a_scale.memory.running import MemoryRunningTasks
from a2a_scale.memory.settings import MemorySettings
from a2a_scale.memory.space import MemorySpace, get_space
from a2a_scale.memory.store import MemoryTaskStore
from a2a_scale.memory.stream import MemoryEventStream

if TYPE_CHECKING:
    from pydantic_settings import BaseSettings

    from a2a_scale.settings import ScaleSettings


class MemoryBackend(Backend):
    """A backend whose state lives in this process.

    Every `MemoryBackend` of the same namespace shares one `MemorySpace`, so
    several of them (in one event loop or in several threads) behave as
    replicas of one cluster. Nothing survives the process.

    Args:
        settings: The core settings (namespace, instance id, retention).
        memory_settings: The memory backend's settings.
        owner_resolver: Maps a call context to the owner of tasks and
            push configs.
        space: The state to use instead of the namespace's shared one.
    """

    name = 'memory'

    def __init__(
        self,
        settings: ScaleSettings,
        memory_settings: MemorySettings | None = None,
        *,
        owner_resolver: OwnerResolver = resolve_user_scope,
        space: MemorySpace | None = None,
    ) -> None:
        super().__init__(settings, owner_resolver=owner_resolver)
        self.memory_settings = memory_settings or MemorySettings()
        self.space = space if space is not None else get_space(settings.namespace)
        limits = {
            'retention_seconds': settings.retention_seconds,
            'max_events_per_task': self.memory_settings.max_events_per_task,
        }
        self._task_store = MemoryTaskStore(
            self.space, owner_resolver=self.owner_resolver, **limits
        )
        self._event_stream = MemoryEventStream(
            self.space, instance_id=settings.instance_id, **limits
        )
        self._push_config_store = MemoryPushNotificationConfigStore(
            self.space, owner_resolver=self.owner_resolver
        )
        self._lifecycle = MemoryQueueLifecycle(self.space, settings.instance_id)
        self._running_tasks = MemoryRunningTasks(self.space, settings.instance_id)

    @property
    def task_store(self) -> MemoryTaskStore:
        """The shared, versioned task store."""
        return self._task_store

    @property
    def event_stream(self) -> MemoryEventStream:
        """The cross-replica event stream."""
        return self._event_stream

    @property
    def push_config_store(self) -> MemoryPushNotificationConfigStore:
        """The shared push-notification config store."""
        return self._push_config_store

    @property
    def lifecycle(self) -> MemoryQueueLifecycle:
        """This replica's registration in the space."""
        return self._lifecycle

    @property
    def running_tasks(self) -> MemoryRunningTasks:
        """Which replica of the space runs which task."""
        return self._running_tasks

    @property
    def cluster_view(self) -> MemoryClusterView:
        """An operator's view of the space: every task, replica and event."""
        return MemoryClusterView(self.space)

    async def _purge(self) -> list[str]:
        dropped = self.space.clear()
        return [f'{dropped} tasks in memory']

    async def health(self) -> list[ComponentHealth]:
        """Reports the space's size per component; memory is always reachable."""
        started = time.perf_counter()
        tasks = self.space.task_count()
        replicas = self.space.replicas()
        silent = self.space.silent_replicas(
            self.settings.reap_after, exclude=self.instance_id
        )
        latency = (time.perf_counter() - started) * 1000
        registered = self.instance_id in replicas
        where = f'in this process, namespace {self.space.namespace!r}'
        return [
            ComponentHealth(STORE, True, where, latency, {'tasks': tasks}),
            ComponentHealth(
                STREAM,
                True,
                'in this process',
                counts={'subscriptions': self._event_stream.subscriber_count()},
            ),
            ComponentHealth(PUSH_STORE, True, 'in this process'),
            ComponentHealth(
                REPLICAS,
                registered or not self.started,
                '' if registered or not self.started else 'this replica was reaped',
                counts={'live': len(replicas) - len(silent)},
            ),
        ]


def create_backend(
    settings: ScaleSettings,
    plugin_settings: BaseSettings,
    *,
    owner_resolver: OwnerResolver,
) -> MemoryBackend:
    """Builds a `MemoryBackend` (the ``memory`` plugin's factory)."""
    if not isinstance(plugin_settings, MemorySettings):
        raise TypeError(
            f'The memory backend needs MemorySettings, got {type(plugin_settings)!r}'
        )
    return MemoryBackend(settings, plugin_settings, owner_resolver=owner_resolver)
