"""a2a-scale backends (memory, redis, aws, postgres) loaded by name, as users do."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from a2a.server.cluster import StoredTask, TaskVersion, VersionedEvent

from a2a_scale import load_backend
from benchmarks.adapters.base import Target, TargetSpec
from benchmarks.workload import call_context

if TYPE_CHECKING:
    from a2a.server.agent_execution import AgentExecutor
    from a2a.server.cluster import TaskEventStream, VersionedTaskStore
    from a2a.server.events.event_queue import Event
    from a2a.server.request_handlers import RequestHandler
    from a2a.types.a2a_pb2 import AgentCard, Task

    from a2a_scale.backend import Backend


class ScaleTarget(Target):
    """A backend from ``a2a_scale.load_backend``; one instance per replica."""

    def __init__(self, spec: TargetSpec, *, role: str = 'main') -> None:
        super().__init__(spec, role=role)
        params = dict(spec.params)
        self.backend_name: str = params.pop('backend')
        self.namespace: str = params.pop('namespace')
        self.instance_id = f'bench-{role}-{uuid.uuid4().hex[:8]}'
        self.cross_process = self.backend_name != 'memory'
        self.server_port = params.pop('server_port', None)
        self.replays = params.get('mode') != 'pubsub'
        # off / api / sdk: see benchmarks.telemetry (absent: as users get it).
        self.telemetry: str | None = params.pop('telemetry', None)
        self._overrides: dict[str, Any] = params
        self._backend: Backend | None = None
        self._store: VersionedTaskStore | None = None
        self._stream: TaskEventStream | None = None
        self._external = False
        self._context = call_context()

    @classmethod
    def around(cls, backend: Backend, name: str) -> ScaleTarget:
        """A target over an already started `backend` (not stopped by it)."""
        spec = TargetSpec(
            name, 'scale', {'backend': backend.name, 'namespace': 'external'}
        )
        target = cls(spec)
        target._backend = backend
        target._external = True
        return target

    @property
    def backend(self) -> Backend:
        """The started backend."""
        if self._backend is None:
            raise RuntimeError(f'{self.name} is not started')
        return self._backend

    @property
    def task_store(self) -> VersionedTaskStore:
        """The store the scenarios use (traced in a telemetry comparison)."""
        return self._store or self.backend.task_store

    @property
    def event_stream(self) -> TaskEventStream:
        """The stream the scenarios use (traced in a telemetry comparison)."""
        return self._stream or self.backend.event_stream

    async def start(self) -> None:
        self._backend = load_backend(
            self.backend_name,
            namespace=self.namespace,
            instance_id=self.instance_id,
            **self._overrides,
        )
        await self._backend.start()
        if self.telemetry is not None:
            from benchmarks.telemetry import instrumented

            self._store, self._stream = instrumented(self._backend, self.telemetry)

    async def stop(self) -> None:
        if self._backend is not None and not self._external:
            await self._backend.stop()
            self._backend = None

    async def save(
        self, task: Task, event: Event, prev_version: TaskVersion
    ) -> TaskVersion:
        version = await self.task_store.save(
            task,
            event=event,
            prev=None,
            prev_version=prev_version,
            context=self._context,
        )
        # The SDK publishes every saved event right after the save.
        await self.event_stream.publish(task.id, VersionedEvent(event, version))
        return version

    async def get(self, task_id: str) -> StoredTask | None:
        return await self.task_store.get(task_id, self._context)

    def subscribe(
        self, task_id: str, *, after: TaskVersion
    ) -> AsyncIterator[VersionedEvent]:
        return self.event_stream.subscribe(task_id, after=after)

    def request_handler(
        self, executor: AgentExecutor, card: AgentCard
    ) -> RequestHandler:
        return self.backend.request_handler(agent_executor=executor, agent_card=card)
