"""Retention: finished tasks and their logs go, running ones stay bounded."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
from a2a.server.cluster import TaskVersion, VersionedEvent
from a2a.types.a2a_pb2 import TaskPushNotificationConfig, TaskState

from a2a_scale import ScaleSettings
from a2a_scale.testing import TaskWriter, agent_message, make_task, new_id, user_context
from a2a_scale_postgres.backend import PostgresBackend
from a2a_scale_postgres.schema import lock_key
from a2a_scale_postgres.settings import PostgresSettings

pytestmark = pytest.mark.postgres

ALICE = user_context('alice')


def _backend(dsn: str, schema: str, **options: object) -> PostgresBackend:
    return PostgresBackend(
        ScaleSettings(namespace='pg', backend='postgres', retention_seconds=3600),
        PostgresSettings(
            dsn=dsn,
            schema_name=schema,
            create_schema=True,
            **options,  # type: ignore[arg-type]
        ),
    )


async def _count(conn: asyncpg.Connection, schema: str, table: str, task: str) -> int:
    column = 'id' if table == 'tasks' else 'task_id'
    return int(
        await conn.fetchval(
            f'SELECT count(*) FROM "{schema}".{table} WHERE {column} = $1', task
        )
    )


async def _finished_task(backend: PostgresBackend) -> str:
    writer = TaskWriter(backend.task_store, ALICE, make_task())
    await writer.create()
    await writer.set_state(TaskState.TASK_STATE_WORKING)
    await writer.set_state(TaskState.TASK_STATE_COMPLETED)
    await backend.push_config_store.set_info(
        writer.task_id,
        TaskPushNotificationConfig(id='hook', url='http://127.0.0.1:9/hook'),
        ALICE,
    )
    return writer.task_id


@pytest.mark.asyncio
async def test_old_finished_tasks_go_with_events_and_push_configs(
    postgres_dsn: str, schema: str, raw: asyncpg.Connection
) -> None:
    async with _backend(postgres_dsn, schema) as backend:
        old, recent = await _finished_task(backend), await _finished_task(backend)
        running = TaskWriter(backend.task_store, ALICE, make_task())
        await running.create()
        await raw.execute(
            f'UPDATE "{schema}".tasks SET finished_at = now() - interval \'2 hours\' '
            'WHERE id = $1',
            old,
        )
        await raw.execute(
            f'UPDATE "{schema}".tasks SET updated_at = now() - interval \'2 hours\' '
            'WHERE id = $1',
            running.task_id,
        )
        result = await backend.run_retention()
        assert result.ran
        assert result.tasks == 1
        for table in ('tasks', 'events', 'streams', 'push_configs'):
            assert await _count(raw, schema, table, old) == 0, table
        assert await _count(raw, schema, 'events', recent) == 3
        assert await _count(raw, schema, 'push_configs', recent) == 1
        assert await backend.task_store.get(running.task_id, ALICE) is not None
        assert await backend.task_store.get(old, ALICE) is None


@pytest.mark.asyncio
async def test_a_run_is_bounded_by_the_batch(
    postgres_dsn: str, schema: str, raw: asyncpg.Connection
) -> None:
    async with _backend(postgres_dsn, schema, retention_batch=2) as backend:
        for _ in range(5):
            await _finished_task(backend)
        await raw.execute(
            f'UPDATE "{schema}".tasks SET finished_at = now() - interval \'2 hours\''
        )
        deleted = [(await backend.run_retention()).tasks for _ in range(4)]
    assert deleted == [2, 2, 1, 0]


@pytest.mark.asyncio
async def test_one_replica_at_a_time(
    postgres_dsn: str, schema: str, raw: asyncpg.Connection
) -> None:
    async with _backend(postgres_dsn, schema) as backend:
        await _finished_task(backend)
        await raw.execute(
            f'UPDATE "{schema}".tasks SET finished_at = now() - interval \'2 hours\''
        )
        key = lock_key(schema, 'retention')
        await raw.execute('SELECT pg_advisory_lock($1)', key)
        try:
            assert not (await backend.run_retention()).ran
        finally:
            await raw.execute('SELECT pg_advisory_unlock($1)', key)
        result = await backend.run_retention()
        assert result.ran
        assert result.tasks == 1


@pytest.mark.asyncio
async def test_logs_without_a_task_go_once_silent(
    postgres_dsn: str, schema: str, raw: asyncpg.Connection
) -> None:
    async with _backend(postgres_dsn, schema) as backend:
        quiet, fresh = new_id(), new_id()
        for task_id in (quiet, fresh):
            await backend.event_stream.publish(
                task_id,
                VersionedEvent(agent_message('hi', task_id=task_id), TaskVersion(0)),
            )
        await raw.execute(
            f'UPDATE "{schema}".streams SET updated_at = now() - interval \'2 hours\' '
            'WHERE task_id = $1',
            quiet,
        )
        result = await backend.run_retention()
        assert result.logs == 1
        assert await _count(raw, schema, 'events', quiet) == 0
        assert await _count(raw, schema, 'events', fresh) == 1


@pytest.mark.asyncio
async def test_running_task_log_is_capped(
    postgres_dsn: str, schema: str, raw: asyncpg.Connection
) -> None:
    async with _backend(postgres_dsn, schema, max_events_per_task=20) as backend:
        writer = TaskWriter(backend.task_store, ALICE, make_task())
        await writer.create()
        for i in range(200):
            await writer.add_artifact(f'part {i}')
        kept = await _count(raw, schema, 'events', writer.task_id)
        assert 20 <= kept <= 22
        newest = await raw.fetchval(
            f'SELECT max(version) FROM "{schema}".events WHERE task_id = $1',
            writer.task_id,
        )
        assert newest == 201


@pytest.mark.asyncio
async def test_retention_loop_runs_in_the_background(
    postgres_dsn: str, schema: str, raw: asyncpg.Connection
) -> None:
    async with _backend(postgres_dsn, schema, retention_interval=0.2) as backend:
        old = await _finished_task(backend)
        await raw.execute(
            f'UPDATE "{schema}".tasks SET finished_at = now() - interval \'2 hours\''
        )
        for _ in range(100):
            if not await _count(raw, schema, 'tasks', old):
                break
            await asyncio.sleep(0.1)
        assert await _count(raw, schema, 'tasks', old) == 0
