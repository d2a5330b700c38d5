"""Schema names, keys and locks of the PostgreSQL backend; applying migrations.

Every namespace lives in its own schema. Migrations are numbered; the
``schema_migrations`` table records which ones a schema has, and applying
them takes an advisory lock so that replicas starting together migrate once.
"""

from __future__ import annotations

import hashlib
import re
from typing import TYPE_CHECKING

from a2a_scale import ConfigurationError
from a2a_scale_postgres.migrations import MIGRATIONS

if TYPE_CHECKING:
    import asyncpg

_IDENTIFIER = re.compile(r'^[A-Za-z0-9_][A-Za-z0-9_-]{0,62}$')


def quote_schema(name: str) -> str:
    """Returns `name` as a quoted SQL identifier.

    Raises:
        ConfigurationError: If `name` is not a plain schema name.
    """
    if not _IDENTIFIER.match(name):
        raise ConfigurationError(
            f'Invalid PostgreSQL schema name {name!r}: letters, digits, "_" and '
            '"-", at most 63 characters',
            variable='A2A_SCALE_POSTGRES_SCHEMA_NAME',
        )
    return f'"{name}"'


def channel_name(schema: str) -> str:
    """The NOTIFY channel of `schema` (a bounded, plain identifier)."""
    return 'a2a_scale_' + hashlib.sha1(schema.encode()).hexdigest()[:24]  # noqa: S324


def task_key(task_id: str) -> str:
    """The fixed-size key a notification names a task by (``md5`` of its id)."""
    return hashlib.md5(task_id.encode()).hexdigest()  # noqa: S324


def lock_key(schema: str, purpose: str) -> int:
    """A 63-bit advisory-lock key for `purpose` in `schema`."""
    digest = hashlib.sha1(f'{purpose}:{schema}'.encode()).digest()  # noqa: S324
    return int.from_bytes(digest[:8], 'big') >> 1


class SchemaNotReadyError(ConfigurationError, LookupError):
    """The schema lacks tables or migrations this version needs."""


async def applied_versions(conn: asyncpg.Connection, schema: str) -> set[int]:
    """The migrations `schema` has (empty if it has none)."""
    exists = await conn.fetchval(
        'SELECT to_regclass($1) IS NOT NULL',
        f'{quote_schema(schema)}.schema_migrations',
    )
    if not exists:
        return set()
    rows = await conn.fetch(
        f'SELECT version FROM {quote_schema(schema)}.schema_migrations'  # noqa: S608
    )
    return {int(r['version']) for r in rows}


async def migrate(conn: asyncpg.Connection, schema: str) -> list[int]:
    """Creates `schema` if needed and applies the missing migrations.

    Returns:
        The versions applied by this call.
    """
    quoted = quote_schema(schema)
    async with conn.transaction():
        await conn.execute(
            'SELECT pg_advisory_xact_lock($1)', lock_key(schema, 'migrate')
        )
        await conn.execute(f'CREATE SCHEMA IF NOT EXISTS {quoted}')
        await conn.execute(
            f'CREATE TABLE IF NOT EXISTS {quoted}.schema_migrations ('
            'version integer PRIMARY KEY, name text NOT NULL, '
            'applied_at timestamptz NOT NULL DEFAULT now())'
        )
        done = await applied_versions(conn, schema)
        applied = []
        for migration in MIGRATIONS:
            if migration.version in done:
                continue
            await conn.execute(migration.sql.replace('{schema}', quoted))
            await conn.execute(
                f'INSERT INTO {quoted}.schema_migrations (version, name) '  # noqa: S608
                'VALUES ($1, $2)',
                migration.version,
                migration.name,
            )
            applied.append(migration.version)
    return applied


async def check_schema(conn: asyncpg.Connection, schema: str) -> None:
    """Raises `SchemaNotReadyError` unless `schema` has every migration."""
    missing = sorted(
        {m.version for m in MIGRATIONS} - await applied_versions(conn, schema)
    )
    if missing:
        raise SchemaNotReadyError(
            f'The PostgreSQL schema {schema!r} lacks migration(s) '
            f'{", ".join(map(str, missing))}: run "a2a-scale postgres migrate" '
            'or set A2A_SCALE_POSTGRES_CREATE_SCHEMA=true',
            variable='A2A_SCALE_POSTGRES_CREATE_SCHEMA',
        )
