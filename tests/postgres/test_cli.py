"""``a2a-scale postgres``: migrate, status, and the import from the SDK's tables."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
import pytest_asyncio
from a2a.server.cluster import TaskVersion
from a2a.server.cluster.database_task_store import VersionedDatabaseTaskStore
from a2a.types.a2a_pb2 import ListTasksRequest, TaskState
from sqlalchemy.ext.asyncio import create_async_engine
from typer.testing import CliRunner

from a2a_scale import ScaleSettings
from a2a_scale.cli import build_app
from a2a_scale.testing import TaskWriter, make_task, timestamp, user_context
from a2a_scale_postgres.backend import PostgresBackend
from a2a_scale_postgres.settings import PostgresSettings
from a2a_scale_postgres.testing import drop_schema
from cli_support import run_cli

pytestmark = pytest.mark.postgres

runner = CliRunner()


@pytest.fixture
def env(postgres_dsn: str, schema: str) -> dict[str, str]:
    return {
        'A2A_SCALE_POSTGRES_DSN': postgres_dsn,
        'A2A_SCALE_POSTGRES_SCHEMA_NAME': schema,
        'COLUMNS': '200',
    }


def test_migrate_is_idempotent_and_status_shows_it(
    env: dict[str, str], schema: str
) -> None:
    cli = build_app()
    before = runner.invoke(cli, ['postgres', 'status'], env=env)
    assert before.exit_code == 1, before.output
    assert 'a2a-scale postgres migrate' in before.output
    first = runner.invoke(cli, ['postgres', 'migrate'], env=env)
    assert first.exit_code == 0, first.output
    assert 'applied  migration 1' in first.output
    second = runner.invoke(cli, ['postgres', 'migrate'], env=env)
    assert second.exit_code == 0, second.output
    assert 'applied' not in second.output
    status = runner.invoke(cli, ['postgres', 'status'], env=env)
    assert status.exit_code == 0, status.output
    assert f"schema   '{schema}': migrations 1" in status.output
    assert 'tasks        0 row(s)' in status.output


def test_unreachable_server_is_one_line_without_password() -> None:
    result = runner.invoke(
        build_app(),
        ['postgres', 'migrate'],
        env={
            'A2A_SCALE_POSTGRES_DSN': 'postgresql://app:hunter2@127.0.0.1:6899/app',
            'A2A_SCALE_POSTGRES_CONNECT_TIMEOUT': '2',
        },
    )
    assert result.exit_code == 1
    assert 'hunter2' not in result.output
    assert 'Traceback' not in result.output
    assert 'A2A_SCALE_POSTGRES_DSN' in result.output


def test_invalid_setting_names_the_variable() -> None:
    result = runner.invoke(
        build_app(),
        ['postgres', 'migrate'],
        env={'A2A_SCALE_POSTGRES_DSN': 'mysql://app:hunter2@127.0.0.1/app'},
    )
    assert result.exit_code == 2
    assert 'A2A_SCALE_POSTGRES_DSN' in result.output
    assert 'hunter2' not in result.output


@pytest_asyncio.fixture
async def sdk_schema(postgres_dsn: str) -> AsyncIterator[str]:
    name = f'sdk{uuid.uuid4().hex[:12]}'
    conn = await asyncpg.connect(postgres_dsn)
    await conn.execute(f'CREATE SCHEMA "{name}"')
    await conn.close()
    yield name
    await drop_schema(postgres_dsn, name)


@pytest.mark.asyncio
async def test_import_from_the_sdk_cluster_tables(
    postgres_dsn: str, schema: str, sdk_schema: str, env: dict[str, str]
) -> None:
    alice, bob = user_context('alice'), user_context('bob')
    url = postgres_dsn.replace('postgresql://', 'postgresql+asyncpg://', 1)
    engine = create_async_engine(
        url, connect_args={'server_settings': {'search_path': sdk_schema}}
    )
    sdk_store = VersionedDatabaseTaskStore(engine)
    await sdk_store.initialize()
    written: dict[str, TaskWriter] = {}
    for owner, context in (('alice', alice), ('alice', alice), ('bob', bob)):
        task = make_task(str(uuid.uuid4()), at=timestamp(len(written)))
        writer = TaskWriter(sdk_store, context, task)
        await writer.create()
        await writer.set_state(TaskState.TASK_STATE_WORKING, text=f'hi {owner}')
        await writer.add_artifact('result')
        written[writer.task_id] = writer
    done = next(iter(written.values()))
    await done.set_state(TaskState.TASK_STATE_COMPLETED)
    await engine.dispose()

    args = ['postgres', 'import-sdk', '--from-schema', sdk_schema]
    cli = build_app()
    migrated = await asyncio.to_thread(
        runner.invoke, cli, ['postgres', 'migrate'], env=env
    )
    assert migrated.exit_code == 0, migrated.output
    first = await asyncio.to_thread(runner.invoke, cli, args, env=env)
    assert first.exit_code == 0, first.output
    assert 'imported 3 task(s) and 10 event(s)' in first.output
    again = await asyncio.to_thread(runner.invoke, cli, args, env=env)
    assert again.exit_code == 0, again.output
    assert 'imported 0 task(s)' in again.output
    assert 'skipped 3 existing task(s)' in again.output

    backend = PostgresBackend(
        ScaleSettings(namespace='pg', backend='postgres'),
        PostgresSettings(dsn=postgres_dsn, schema_name=schema),
    )
    async with backend:
        for task_id, writer in written.items():
            owner = writer.context
            stored = await backend.task_store.get(task_id, owner)
            assert stored is not None
            assert stored.task == writer.task
            assert stored.version == TaskVersion(writer.version._value)  # type: ignore[misc]
            other = bob if owner is alice else alice
            assert await backend.task_store.get(task_id, other) is None
            stream = backend.event_stream.subscribe(task_id, after=TaskVersion(1))
            replayed = [await anext(stream) for _ in range(2)]
            await stream.aclose()
            assert [e.version._value for e in replayed] == [2, 3]  # type: ignore[misc]
        # An imported task goes on under the backend's compare-and-set.
        running = list(written.values())[1]
        resumed = TaskWriter(backend.task_store, alice, running.task)
        resumed.version = TaskVersion(running.version._value)  # type: ignore[misc]
        await resumed.set_state(TaskState.TASK_STATE_COMPLETED)
        listing = await backend.task_store.list(ListTasksRequest(), alice)
        assert len(listing.tasks) == 2


async def _schema_exists(dsn: str, schema: str) -> bool:
    conn = await asyncpg.connect(dsn)
    try:
        return bool(
            await conn.fetchval(
                'SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)', schema
            )
        )
    finally:
        await conn.close()


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_demo_runs_across_3_processes_and_drops_its_schema_unless_kept(
    postgres_dsn: str, schema: str
) -> None:
    # The user's own schema setting must neither be used nor dropped.
    env = {
        'A2A_SCALE_BACKEND': 'postgres',
        'A2A_SCALE_POSTGRES_DSN': postgres_dsn,
        'A2A_SCALE_POSTGRES_SCHEMA_NAME': schema,
    }
    asyncio.run(_create_schema(postgres_dsn, schema))
    run = run_cli('demo', '--quiet', env=env, timeout=300)
    assert run.code == 0, (run.stdout, run.stderr)
    assert 'Traceback' not in run.stderr
    namespace = run.demo_namespace()
    assert f"cleaned up namespace '{namespace}': PostgreSQL schema" in run.stdout
    assert not asyncio.run(_schema_exists(postgres_dsn, namespace))
    assert asyncio.run(_schema_exists(postgres_dsn, schema))

    kept = run_cli('demo', '--quiet', '--replicas', '2', '--keep', env=env, timeout=300)
    assert kept.code == 0, (kept.stdout, kept.stderr)
    kept_namespace = kept.demo_namespace()
    try:
        assert f"kept namespace '{kept_namespace}'" in kept.stdout
        assert asyncio.run(_schema_exists(postgres_dsn, kept_namespace))
    finally:
        asyncio.run(drop_schema(postgres_dsn, kept_namespace))


async def _create_schema(dsn: str, schema: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f'CREATE SCHEMA "{schema}"')
    finally:
        await conn.close()
