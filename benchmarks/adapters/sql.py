"""The baseline: the SDK's own SQL cluster mode, on PostgreSQL and SQLite.

`VersionedDatabaseTaskStore` + `DatabaseTaskEventStream` with the SDK's
defaults (the stream polls every 0.5 s), what a user gets without a2a-scale.
One change: the engine's pool. SQLAlchemy's default (5 + 10 overflow
connections, 30 s checkout timeout) makes 1,000 subscriptions on one replica
fail with ``QueuePool limit ... reached``, since every poll checks a
connection out; a user would size the pool, so the baseline gets `POOL`.
Plus ``sdk-inmemory``: one replica with the SDK's in-memory store, the
reference of the e2e scenario.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from a2a.server.cluster import (
    DatabaseTaskEventStream,
    StoredTask,
    TaskVersion,
    VersionedDatabaseTaskStore,
    VersionedEvent,
)
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.tasks import InMemoryTaskStore
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from benchmarks.adapters.base import Target, TargetSpec
from benchmarks.workload import call_context

if TYPE_CHECKING:
    from a2a.server.agent_execution import AgentExecutor
    from a2a.server.events.event_queue import Event
    from a2a.server.request_handlers import RequestHandler
    from a2a.types.a2a_pb2 import AgentCard, Task

POSTGRES_PORT = 5432
POOL: dict[str, Any] = {'pool_size': 10, 'max_overflow': 10, 'pool_timeout': 300}


class SqlTarget(Target):
    """The SDK's SQL store and polling stream over one `AsyncEngine`."""

    def __init__(self, spec: TargetSpec, *, role: str = 'main') -> None:
        super().__init__(spec, role=role)
        self.url: str = spec.params['url']
        self.server_port = POSTGRES_PORT if self.url.startswith('postgres') else None
        self._engine: AsyncEngine | None = None
        self._store: VersionedDatabaseTaskStore | None = None
        self._stream: DatabaseTaskEventStream | None = None
        self._context = call_context()

    async def start(self) -> None:
        kwargs: dict[str, Any] = dict(POOL)
        if self.server_port is not None:
            kwargs['connect_args'] = {
                'server_settings': {'application_name': f'bench-{self.role}'}
            }
        self._engine = create_async_engine(self.url, **kwargs)
        self._store = VersionedDatabaseTaskStore(self._engine, create_table=True)
        self._stream = DatabaseTaskEventStream(self._engine, create_table=True)
        await self._store.initialize()
        await self._stream.initialize()

    async def stop(self) -> None:
        if self._engine is not None:
            await self._engine.dispose()
            self._engine = None

    @property
    def store(self) -> VersionedDatabaseTaskStore:
        """The started store."""
        if self._store is None:
            raise RuntimeError(f'{self.name} is not started')
        return self._store

    @property
    def stream(self) -> DatabaseTaskEventStream:
        """The started stream."""
        if self._stream is None:
            raise RuntimeError(f'{self.name} is not started')
        return self._stream

    async def save(
        self, task: Task, event: Event, prev_version: TaskVersion
    ) -> TaskVersion:
        version = await self.store.save(
            task,
            event=event,
            prev=None,
            prev_version=prev_version,
            context=self._context,
        )
        await self.stream.publish(task.id, VersionedEvent(event, version))
        return version

    async def get(self, task_id: str) -> StoredTask | None:
        return await self.store.get(task_id, self._context)

    def subscribe(
        self, task_id: str, *, after: TaskVersion
    ) -> AsyncIterator[VersionedEvent]:
        return self.stream.subscribe(task_id, after=after)

    def request_handler(
        self, executor: AgentExecutor, card: AgentCard
    ) -> RequestHandler:
        return DefaultRequestHandler(
            agent_executor=executor,
            task_store=self.store,
            agent_card=card,
            event_stream=self.stream,
        )


class SdkInMemoryTarget(Target):
    """One replica with the SDK's in-memory stores (e2e reference only)."""

    cross_process = False

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def save(
        self, task: Task, event: Event, prev_version: TaskVersion
    ) -> TaskVersion:
        raise NotImplementedError('sdk-inmemory serves the e2e scenario only')

    async def get(self, task_id: str) -> StoredTask | None:
        raise NotImplementedError('sdk-inmemory serves the e2e scenario only')

    def subscribe(
        self, task_id: str, *, after: TaskVersion
    ) -> AsyncIterator[VersionedEvent]:
        raise NotImplementedError('sdk-inmemory serves the e2e scenario only')

    def request_handler(
        self, executor: AgentExecutor, card: AgentCard
    ) -> RequestHandler:
        return DefaultRequestHandler(
            agent_executor=executor, task_store=InMemoryTaskStore(), agent_card=card
        )
