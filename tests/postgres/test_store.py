"""PostgreSQL store specifics: indexes, hostile ids, corrupt rows, migrations."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import asyncpg
import pytest
from a2a.server.cluster import TaskVersion
from a2a.types.a2a_pb2 import ListTasksRequest, TaskState

from a2a_scale import (
    BackendUnavailableError,
    ConfigurationError,
    CorruptDataError,
    ScaleSettings,
)
from a2a_scale.tasks import ListQuery
from a2a_scale.testing import TaskWriter, make_task, timestamp, user_context
from a2a_scale_postgres.backend import PostgresBackend
from a2a_scale_postgres.migrations import LATEST
from a2a_scale_postgres.schema import SchemaNotReadyError, migrate
from a2a_scale_postgres.settings import PostgresSettings, redact_dsn

pytestmark = pytest.mark.postgres

ALICE = user_context('alice')


def _plan_nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    nodes = [plan]
    for child in plan.get('Plans', []):
        nodes += _plan_nodes(child)
    return nodes


async def _explain(conn: asyncpg.Connection, statement: tuple[Any, ...]) -> list[str]:
    sql, *args = statement
    raw = await conn.fetchval(f'EXPLAIN (FORMAT JSON) {sql}', *args)
    plan = json.loads(raw)[0]['Plan']
    return [node['Node Type'] for node in _plan_nodes(plan)]


@pytest.mark.asyncio
@pytest.mark.parametrize(
    'params',
    [
        ListTasksRequest(),
        ListTasksRequest(context_id='ctx-7'),
        ListTasksRequest(status=TaskState.TASK_STATE_WORKING),
        ListTasksRequest(context_id='ctx-7', status=TaskState.TASK_STATE_WORKING),
    ],
    ids=['all', 'context', 'status', 'both'],
)
async def test_listing_reads_an_index_not_every_task(
    backend: PostgresBackend, raw: asyncpg.Connection, schema: str, params: Any
) -> None:
    await raw.execute(
        f'INSERT INTO "{schema}".tasks (id, owner, version, state, context_id, '
        "has_ts, ts_ns, terminal, data) SELECT 't' || g, 'owner-' || (g % 500), 1, "
        "g % 8, 'ctx-' || (g % 20), true, g, false, '\\x'::bytea "
        'FROM generate_series(1, 20000) g'
    )
    await raw.execute(f'ANALYZE "{schema}".tasks')
    store = backend.task_store
    query = ListQuery.from_request(params)
    for statement in (
        store.page_statement(query, 'owner-7'),
        store.count_statement(query, 'owner-7'),
    ):
        nodes = await _explain(raw, statement)
        assert 'Seq Scan' not in nodes, (statement[0], nodes)
        assert any('Index' in n for n in nodes), nodes


@pytest.mark.asyncio
@pytest.mark.parametrize(
    'task_id',
    [
        'it\'s "quoted"; DROP TABLE tasks; --',
        '{braces}:[brackets]%_*?',
        'ünïcødé-🚀-任务',
        'x' * 20_000,
        '\\x00 back\\slash',
    ],
    ids=['quotes', 'braces', 'unicode', 'very-long', 'backslash'],
)
async def test_hostile_task_ids_round_trip_and_stream(
    backend: PostgresBackend, task_id: str
) -> None:
    writer = TaskWriter(backend.task_store, ALICE, make_task(task_id))
    stream = backend.event_stream.subscribe(task_id, after=TaskVersion.MISSING)
    created = await writer.create()
    assert created is not None
    got = await anext(stream)
    assert got.version == created.version
    await writer.set_state(TaskState.TASK_STATE_WORKING)
    stored = await backend.task_store.get(task_id, ALICE)
    assert stored is not None
    assert stored.task.id == task_id
    listed = await backend.task_store.list(ListTasksRequest(), ALICE)
    assert [t.id for t in listed.tasks] == [task_id]
    await stream.aclose()
    await backend.task_store.delete(task_id, ALICE)
    assert await backend.task_store.get(task_id, ALICE) is None


@pytest.mark.asyncio
async def test_corrupt_row_names_table_and_row(
    backend: PostgresBackend, raw: asyncpg.Connection, schema: str
) -> None:
    writer = TaskWriter(
        backend.task_store, ALICE, make_task('broken-1', at=timestamp(1))
    )
    await writer.create()
    await TaskWriter(
        backend.task_store, ALICE, make_task('fine-2', at=timestamp(2))
    ).create()
    await raw.execute(
        f'UPDATE "{schema}".tasks SET data = $1 WHERE id = $2',
        b'\xff\xfe junk',
        'broken-1',
    )
    with pytest.raises(CorruptDataError) as caught:
        await backend.task_store.get('broken-1', ALICE)
    assert f'{schema}.tasks' in str(caught.value)
    assert 'broken-1' in str(caught.value)
    # Another owner never learns about it; a listing skips it.
    assert await backend.task_store.get('broken-1', user_context('bob')) is None
    listed = await backend.task_store.list(ListTasksRequest(), ALICE)
    assert [t.id for t in listed.tasks] == ['fine-2']


@pytest.mark.asyncio
async def test_start_without_migrations_names_the_fix(
    postgres_dsn: str, schema: str
) -> None:
    backend = PostgresBackend(
        ScaleSettings(namespace='pg', backend='postgres'),
        PostgresSettings(dsn=postgres_dsn, schema_name=schema),
    )
    with pytest.raises(SchemaNotReadyError) as caught:
        await backend.start()
    assert 'a2a-scale postgres migrate' in str(caught.value)
    assert 'A2A_SCALE_POSTGRES_CREATE_SCHEMA' in str(caught.value)
    assert not backend.started


@pytest.mark.asyncio
async def test_migrate_is_recorded_and_idempotent(
    raw: asyncpg.Connection, schema: str
) -> None:
    assert await migrate(raw, schema) == list(range(1, LATEST + 1))
    assert await migrate(raw, schema) == []
    versions = await raw.fetch(f'SELECT version FROM "{schema}".schema_migrations')
    assert [r['version'] for r in versions] == list(range(1, LATEST + 1))


def test_schema_name_must_be_an_identifier() -> None:
    with pytest.raises(ConfigurationError):
        PostgresBackend(
            ScaleSettings(namespace='pg', backend='postgres'),
            PostgresSettings.model_construct(
                **{**PostgresSettings().model_dump(), 'schema_name': 'a"; DROP'}
            ),
        )


def test_dsn_password_is_redacted() -> None:
    settings = PostgresSettings(dsn='postgresql://app:s3cr3t@db.example:5432/app')
    assert 's3cr3t' not in settings.display_dsn
    assert 's3cr3t' not in repr(settings)
    assert settings.mask('FATAL: password s3cr3t wrong') == 'FATAL: password *** wrong'
    assert 's3cr3t' not in redact_dsn('postgresql://h/db?password=s3cr3t')


@pytest.mark.asyncio
async def test_unreachable_server_error_hides_password() -> None:
    backend = PostgresBackend(
        ScaleSettings(namespace='pg', backend='postgres'),
        PostgresSettings(
            dsn='postgresql://app:hunter2@127.0.0.1:6899/app', connect_timeout=2
        ),
    )
    with pytest.raises(BackendUnavailableError) as caught:
        await backend.start()
    message = str(caught.value)
    assert 'hunter2' not in caught.value.address
    assert 'hunter2' not in message
    assert '127.0.0.1:6899' in message
    assert 'A2A_SCALE_POSTGRES_DSN' in message


@pytest.mark.asyncio
async def test_concurrent_migrations_apply_once(postgres_dsn: str, schema: str) -> None:
    conns = [await asyncpg.connect(postgres_dsn) for _ in range(4)]
    try:
        results = await asyncio.gather(*(migrate(c, schema) for c in conns))
    finally:
        for conn in conns:
            await conn.close()
    assert sorted(map(len, results)) == [0, 0, 0, LATEST]


@pytest.mark.asyncio
async def test_synchronous_commit_setting_reaches_every_connection(
    postgres_dsn: str, schema: str
) -> None:
    backend = PostgresBackend(
        ScaleSettings(namespace='pg', backend='postgres'),
        PostgresSettings(
            dsn=postgres_dsn,
            schema_name=schema,
            create_schema=True,
            synchronous_commit='off',
        ),
    )
    async with backend:
        assert await backend.pool.fetchval('SHOW synchronous_commit') == 'off'
