"""``a2a-scale postgres ...``: apply migrations, show the schema, import tasks.

The commands read the same settings as the backend (``A2A_SCALE_NAMESPACE``,
``A2A_SCALE_POSTGRES_*``). Importing this module does not import asyncpg.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer
from pydantic import SecretStr

from a2a_scale import A2AScaleError, ScaleSettings, load_settings
from a2a_scale_postgres.settings import PostgresSettings, mask_secret, redact_dsn

if TYPE_CHECKING:
    import asyncpg

T = TypeVar('T')

app = typer.Typer(
    name='postgres',
    help='PostgreSQL backend: apply migrations, show status, import SDK tasks.',
    no_args_is_help=True,
)

EXIT_FAILED = 1
EXIT_CONFIG = 2


def _fail(message: str, code: int) -> NoReturn:
    typer.echo(f'error: {message}', err=True)
    raise typer.Exit(code)


def _settings() -> tuple[str, PostgresSettings]:
    try:
        core = load_settings(ScaleSettings)
        postgres = load_settings(PostgresSettings)
        postgres.check_dsn()
    except A2AScaleError as e:
        _fail(str(e), EXIT_CONFIG)
    return postgres.schema_name or core.namespace, postgres


def _run(
    postgres: PostgresSettings,
    action: Callable[[asyncpg.Connection], Awaitable[T]],
) -> T:
    from a2a_scale_postgres.connection import connect  # noqa: PLC0415

    async def main() -> T:
        conn = await connect(postgres, name='a2a-scale-cli')
        try:
            return await action(conn)
        finally:
            await conn.close()

    try:
        return asyncio.run(main())
    except A2AScaleError as e:
        _fail(postgres.mask(str(e)), EXIT_FAILED)
    except (OSError, TimeoutError) as e:
        _fail(
            f'cannot reach PostgreSQL at {postgres.display_dsn} '
            f'(A2A_SCALE_POSTGRES_DSN): {postgres.mask(str(e))}',
            EXIT_FAILED,
        )
    except Exception as e:
        _fail(f'{type(e).__name__}: {postgres.mask(str(e))}', EXIT_FAILED)


@app.command('migrate')
def migrate_command() -> None:
    """Create the schema if missing and apply the migrations it lacks."""
    from a2a_scale_postgres.migrations import LATEST  # noqa: PLC0415
    from a2a_scale_postgres.schema import migrate  # noqa: PLC0415

    schema, postgres = _settings()
    applied = _run(postgres, lambda conn: migrate(conn, schema))
    for version in applied:
        typer.echo(f'applied  migration {version}')
    typer.echo(f'schema {schema!r} is at migration {LATEST}')


@app.command()
def status() -> None:
    """Show the schema's migrations and row counts."""
    from a2a_scale_postgres.migrations import LATEST  # noqa: PLC0415
    from a2a_scale_postgres.schema import (  # noqa: PLC0415
        applied_versions,
        quote_schema,
    )

    schema, postgres = _settings()

    async def action(conn: asyncpg.Connection) -> tuple[set[int], dict[str, int]]:
        versions = await applied_versions(conn, schema)
        counts: dict[str, int] = {}
        if versions:
            q = quote_schema(schema)
            for table in ('tasks', 'events', 'push_configs', 'replicas'):
                counts[table] = int(
                    await conn.fetchval(f'SELECT count(*) FROM {q}.{table}')  # noqa: S608
                )
        return versions, counts

    versions, counts = _run(postgres, action)
    typer.echo(f'database {postgres.display_dsn}')
    shown = ', '.join(map(str, sorted(versions))) or 'none'
    typer.echo(f'schema   {schema!r}: migrations {shown} (latest {LATEST})')
    for table, count in counts.items():
        typer.echo(f'{table:<13}{count} row(s)')
    if LATEST not in versions:
        _fail(
            'the schema is not migrated: run "a2a-scale postgres migrate"', EXIT_FAILED
        )


@app.command('import-sdk')
def import_sdk(
    from_dsn: Annotated[
        str,
        typer.Option(
            '--from-dsn',
            help='postgresql:// DSN of the database holding the SDK tables '
            '(defaults to A2A_SCALE_POSTGRES_DSN).',
        ),
    ] = '',
    from_schema: Annotated[
        str, typer.Option(help='Schema of the SDK tables.')
    ] = 'public',
    tasks_table: Annotated[str, typer.Option(help="The SDK's task table.")] = 'tasks',
    events_table: Annotated[
        str, typer.Option(help="The SDK's event table.")
    ] = 'task_events',
) -> None:
    """Copy tasks and their event logs from the SDK's SQL cluster-mode tables."""
    from a2a_scale_postgres.importer import import_sdk_tasks  # noqa: PLC0415

    schema, postgres = _settings()
    source = PostgresSettings(dsn=SecretStr(from_dsn)) if from_dsn else postgres
    try:
        source.check_dsn()
    except A2AScaleError as e:
        _fail(str(e).replace('A2A_SCALE_POSTGRES_DSN', '--from-dsn'), EXIT_CONFIG)

    async def action(conn: asyncpg.Connection) -> Any:
        from a2a_scale_postgres.connection import connect  # noqa: PLC0415

        source_conn = (
            await connect(source, name='a2a-scale-import') if from_dsn else conn
        )
        try:
            return await import_sdk_tasks(
                source_conn,
                conn,
                schema=schema,
                source_schema=from_schema,
                tasks_table=tasks_table,
                events_table=events_table,
            )
        finally:
            if source_conn is not conn:
                await source_conn.close()

    try:
        report = _run(postgres, action)
    except typer.Exit:
        raise
    typer.echo(
        f'imported {report.tasks} task(s) and {report.events} event(s) from '
        f'{mask_secret(redact_dsn(source.dsn.get_secret_value()), from_dsn)}; '
        f'skipped {report.skipped} existing task(s)'
    )
