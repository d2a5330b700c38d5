"""Fixtures: replica handlers over shared stores (memory backend or SQL)."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from a2a.server.request_handlers import DefaultRequestHandler
from handler_support import WAIT, Cluster, SharedStores

import a2a_scale
from a2a_scale.handler import ClusterRequestHandler

REPLICAS = 3
HANDLERS = {'sdk': DefaultRequestHandler, 'fixed': ClusterRequestHandler}


def _hold_statements_while(gate: threading.Event) -> object:
    """A `connect` listener: each statement waits in its thread while `gate` is set."""

    def wait_while_held() -> int:
        deadline = time.monotonic() + WAIT
        while gate.is_set() and time.monotonic() < deadline:
            time.sleep(0.005)
        return 0

    def install(dbapi_connection: object, _record: object) -> None:
        dbapi_connection.run_async(  # type: ignore[attr-defined]
            lambda driver: driver.set_progress_handler(wait_while_held, 10)
        )

    return install


async def _sqlite_stores(
    tmp_path: Path, gate: threading.Event
) -> tuple[object, SharedStores]:
    from a2a.server.cluster import DatabaseTaskEventStream, VersionedDatabaseTaskStore
    from a2a.server.tasks import InMemoryPushNotificationConfigStore
    from sqlalchemy import event
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(f'sqlite+aiosqlite:///{tmp_path / "tasks.db"}')
    event.listen(engine.sync_engine, 'connect', _hold_statements_while(gate))
    async with engine.connect() as connection:
        # Readers never block a writer's commit: a poll cancelled between its
        # execute and fetch can leave a statement open on a pooled connection,
        # which in the default journal mode stalls every commit behind it.
        await connection.exec_driver_sql('PRAGMA journal_mode=WAL')
    store = VersionedDatabaseTaskStore(engine, max_attempts=50)
    await store.initialize()
    stream = DatabaseTaskEventStream(engine, poll_interval_s=0.02)
    await stream.initialize()
    return engine, SharedStores(store, stream, InMemoryPushNotificationConfigStore())


@pytest_asyncio.fixture(
    params=[
        pytest.param(('memory', 'sdk'), marks=pytest.mark.memory, id='memory-sdk'),
        pytest.param(('memory', 'fixed'), marks=pytest.mark.memory, id='memory-fixed'),
        pytest.param(('sqlite', 'sdk'), id='sqlite-sdk'),
        pytest.param(('sqlite', 'fixed'), id='sqlite-fixed'),
    ]
)
async def cluster(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[Cluster]:
    """Replicas of the SDK handler or of ours, over memory or SQL stores."""
    kind, handler = request.param
    backends: list[a2a_scale.Backend] = []
    engine = None
    sql_gate = threading.Event()
    if kind == 'memory':
        namespace = f'h{uuid.uuid4().hex[:12]}'
        for _ in range(REPLICAS):
            backend = a2a_scale.load_backend('memory', namespace=namespace)
            await backend.start()
            backends.append(backend)
        handed_out = iter(backends)

        def factory() -> SharedStores:
            backend = next(handed_out)
            return SharedStores(
                backend.task_store, backend.event_stream, backend.push_config_store
            )
    else:
        engine, shared = await _sqlite_stores(tmp_path, sql_gate)

        def factory() -> SharedStores:
            return shared

    built = Cluster(HANDLERS[handler], factory)
    if kind == 'sqlite':
        built.sql_gate = sql_gate
    try:
        yield built
    finally:
        await built.aclose()
        for backend in backends:
            await backend.stop()
        if engine is not None:
            await engine.dispose()  # type: ignore[attr-defined]
