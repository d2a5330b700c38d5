"""PostgreSQL stream specifics: dropped connections, restarts, trimming, scale."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
from a2a.server.cluster import TaskVersion, VersionedEvent
from a2a.types.a2a_pb2 import TaskState

from a2a_scale import EventGapError, ScaleSettings
from a2a_scale.testing import TaskWriter, make_task, new_id, user_context
from a2a_scale_postgres.backend import PostgresBackend
from a2a_scale_postgres.errors import EventLogTrimmedError
from a2a_scale_postgres.settings import PostgresSettings
from a2a_scale_postgres.testing import PostgresServer, postgres_bin_dir

pytestmark = pytest.mark.postgres

ALICE = user_context('alice')
WORKING = TaskState.TASK_STATE_WORKING


def _backend(dsn: str, schema: str, **options: object) -> PostgresBackend:
    return PostgresBackend(
        ScaleSettings(namespace='pg', backend='postgres'),
        PostgresSettings(
            dsn=dsn,
            schema_name=schema,
            create_schema=True,
            backoff_cap=0.2,
            **options,  # type: ignore[arg-type]
        ),
    )


async def _collect(
    backend: PostgresBackend, task_id: str, count: int, out: list[VersionedEvent]
) -> None:
    async for event in backend.event_stream.subscribe(
        task_id, after=TaskVersion.MISSING
    ):
        out.append(event)
        if len(out) == count:
            return


def _versions(events: list[VersionedEvent]) -> list[int]:
    return [e.version._value for e in events]  # type: ignore[misc]


@pytest.mark.asyncio
async def test_killed_listen_connection_loses_nothing(
    postgres_dsn: str, schema: str, raw: asyncpg.Connection
) -> None:
    writer_backend = _backend(postgres_dsn, schema)
    reader = _backend(postgres_dsn, schema)
    total = 600
    async with writer_backend, reader:
        writer = TaskWriter(writer_backend.task_store, ALICE, make_task())
        got: list[VersionedEvent] = []
        consumer = asyncio.create_task(_collect(reader, writer.task_id, total, got))
        await asyncio.sleep(0.1)
        await writer.create()
        kills = 0
        for i in range(total - 1):
            await writer.add_artifact(f'part {i}')
            if i % 100 == 50:
                pid = reader.listener.backend_pid
                if pid is not None:
                    assert await raw.fetchval('SELECT pg_terminate_backend($1)', pid)
                    kills += 1
        async with asyncio.timeout(30):
            await consumer
        assert kills >= 3
        assert reader.listener.connections > kills
    assert _versions(got) == list(range(1, total + 1))


@pytest.fixture
def private_server(tmp_path: Path, require_service: object) -> Iterator[PostgresServer]:
    """A PostgreSQL server of this test only (restartable)."""
    need = require_service  # type: ignore[assignment]
    need('postgres binaries', postgres_bin_dir() is not None, 'initdb not found')  # type: ignore[operator]
    server = PostgresServer(tmp_path / 'pg', ports=(6800, 6899))
    server.start()
    yield server
    server.remove()


@pytest.mark.asyncio
@pytest.mark.slow
async def test_postgres_restart_loses_nothing(private_server: PostgresServer) -> None:
    dsn = private_server.dsn
    writer_backend = _backend(dsn, 'restart')
    reader = _backend(dsn, 'restart')
    total = 300
    async with writer_backend, reader:
        writer = TaskWriter(writer_backend.task_store, ALICE, make_task())
        got: list[VersionedEvent] = []
        consumer = asyncio.create_task(_collect(reader, writer.task_id, total, got))
        await asyncio.sleep(0.1)
        await writer.create()
        written = 1
        while written < total:
            if written == total // 2:
                await asyncio.to_thread(private_server.restart)
            try:
                await writer.add_artifact(f'part {written}')
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                # The pool reports connections the restart broke; retry the
                # save if it did not commit (re-read the version).
                await asyncio.sleep(0.05)
                stored = await writer_backend.task_store.get(writer.task_id, ALICE)
                if stored is not None and stored.version != writer.version:
                    writer.task, writer.version = stored.task, stored.version
                    written += 1
                continue
            written += 1
        async with asyncio.timeout(30):
            await consumer
        assert reader.listener.connections >= 2
    assert _versions(got) == list(range(1, total + 1))


@pytest.mark.asyncio
async def test_subscriber_behind_the_trimmed_log_gets_a_typed_error(
    postgres_dsn: str, schema: str
) -> None:
    async with _backend(postgres_dsn, schema, max_events_per_task=20) as backend:
        writer = TaskWriter(backend.task_store, ALICE, make_task())
        await writer.create()
        old = writer.version
        for i in range(60):
            await writer.add_artifact(f'part {i}')
        stream = backend.event_stream.subscribe(writer.task_id, after=old)
        with pytest.raises(EventLogTrimmedError) as caught:
            await anext(stream)
        assert writer.task_id in str(caught.value)
        # The same typed error as on every backend, for the suite and users.
        assert isinstance(caught.value, EventGapError)
        # A subscriber from a version still in the log replays it, no error.
        recent = backend.event_stream.subscribe(
            writer.task_id,
            after=TaskVersion(writer.version._value - 5),  # type: ignore[operator]
        )
        assert (await anext(recent)).version._value == writer.version._value - 4  # type: ignore[operator]
        await recent.aclose()


@pytest.mark.asyncio
async def test_slow_subscriber_catches_up_from_the_table(
    postgres_dsn: str, schema: str
) -> None:
    async with _backend(postgres_dsn, schema) as backend:
        backend.event_stream._buffer_size = 10
        writer = TaskWriter(backend.task_store, ALICE, make_task())
        fast: list[VersionedEvent] = []
        slow = backend.event_stream.subscribe(writer.task_id, after=TaskVersion.MISSING)
        consumer = asyncio.create_task(_collect(backend, writer.task_id, 200, fast))
        await asyncio.sleep(0.05)
        pending = asyncio.ensure_future(anext(slow))
        await writer.create()
        first = await pending
        for i in range(199):
            await writer.add_artifact(f'part {i}')
        async with asyncio.timeout(10):
            await consumer
        rest = [first] + [await anext(slow) for _ in range(199)]
        await slow.aclose()
    assert _versions(fast) == list(range(1, 201))
    assert _versions(rest) == list(range(1, 201))


@pytest.mark.asyncio
async def test_thousand_subscriptions_share_two_connections(
    postgres_dsn: str, schema: str, raw: asyncpg.Connection
) -> None:
    async with _backend(postgres_dsn, schema) as backend:
        tasks = [new_id() for _ in range(1000)]
        streams = [
            backend.event_stream.subscribe(t, after=TaskVersion.MISSING) for t in tasks
        ]
        pending = [asyncio.ensure_future(anext(s)) for s in streams]
        await asyncio.sleep(1.0)
        assert backend.event_stream.subscription_count == 1000
        connections = await raw.fetchval(
            'SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE $1',
            f'a2a-scale:{backend.instance_id}%',
        )
        assert connections <= 4, connections
        writer = TaskWriter(backend.task_store, ALICE, make_task(tasks[500]))
        await writer.create()
        async with asyncio.timeout(5):
            got = await pending[500]
        assert got.event.id == tasks[500]
        for future in pending:
            future.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for stream in streams:
            await stream.aclose()
        assert backend.event_stream.subscription_count == 0


@pytest.mark.asyncio
async def test_idle_subscription_past_the_log_reads_nothing(
    postgres_dsn: str, schema: str
) -> None:
    async with _backend(postgres_dsn, schema) as backend:
        writer = TaskWriter(backend.task_store, ALICE, make_task())
        await writer.create()
        await writer.set_state(WORKING)
        reads = 0
        fetch = backend.pool.fetch

        async def counting(query: str, *args: object) -> list[asyncpg.Record]:
            nonlocal reads
            reads += 1
            return await fetch(query, *args)

        backend.pool.fetch = counting  # type: ignore[method-assign]
        stream = backend.event_stream.subscribe(writer.task_id, after=writer.version)
        pending = asyncio.ensure_future(anext(stream))
        await asyncio.sleep(0.5)
        assert not pending.done()
        assert reads <= 3, f'{reads} reads of an idle log: the subscriber polls'
        live = await writer.set_state(WORKING, text='live')
        assert live is not None
        async with asyncio.timeout(5):
            got = await pending
        assert got.version == live.version
        await stream.aclose()


@pytest.mark.asyncio
async def test_replay_of_a_log_longer_than_a_page_goes_live(
    postgres_dsn: str, schema: str
) -> None:
    async with _backend(postgres_dsn, schema, max_events_per_task=5000) as backend:
        writer = TaskWriter(backend.task_store, ALICE, make_task())
        await writer.create()
        for i in range(1199):
            await writer.add_artifact(f'part {i}')
        stream = backend.event_stream.subscribe(
            writer.task_id, after=TaskVersion.MISSING
        )
        async with asyncio.timeout(10):  # no new write wakes it: replay alone
            got = [await anext(stream) for _ in range(1200)]
        live = await writer.add_artifact('live')
        assert live is not None
        async with asyncio.timeout(5):
            got.append(await anext(stream))
        await stream.aclose()
    assert _versions(got) == list(range(1, 1202))


@pytest.mark.asyncio
async def test_corrupt_event_is_skipped_and_named(
    postgres_dsn: str,
    schema: str,
    raw: asyncpg.Connection,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with _backend(postgres_dsn, schema) as backend:
        writer = TaskWriter(backend.task_store, ALICE, make_task())
        await writer.create()
        await writer.set_state(WORKING)
        await writer.set_state(TaskState.TASK_STATE_COMPLETED)
        await raw.execute(
            f'UPDATE "{schema}".events SET data = $1 WHERE task_id = $2 AND seq = 2',
            b'\xff\xff not a proto',
            writer.task_id,
        )
        stream = backend.event_stream.subscribe(
            writer.task_id, after=TaskVersion.MISSING
        )
        got = [await anext(stream), await anext(stream)]
        await stream.aclose()
    assert _versions(got) == [1, 3]
    assert f"{schema}.events(task_id='{writer.task_id}', seq='2')" in caplog.text
