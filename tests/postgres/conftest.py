"""Fixtures of the PostgreSQL tests: the server, a schema per test."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable
from urllib.parse import urlsplit

import pytest
import pytest_asyncio

from a2a_scale_postgres.testing import drop_schema
from service_support import reachable

POSTGRES_DSN = os.environ.get(
    'A2A_SCALE_TEST_POSTGRES_DSN', 'postgresql://postgres@127.0.0.1:5432/test'
)

RequireService = Callable[[str, bool, str], None]


def _reachable(dsn: str) -> bool:
    parts = urlsplit(dsn)
    return reachable(parts.hostname or '127.0.0.1', parts.port or 5432)


@pytest.fixture
def postgres_dsn(require_service: RequireService) -> str:
    """The shared PostgreSQL server (tests use their own schema)."""
    require_service('postgres', _reachable(POSTGRES_DSN), POSTGRES_DSN)
    return POSTGRES_DSN


@pytest_asyncio.fixture
async def schema(postgres_dsn: str) -> AsyncIterator[str]:
    """A schema name no other test uses; dropped after the test."""
    name = f'pt{uuid.uuid4().hex[:12]}'
    yield name
    await drop_schema(postgres_dsn, name)


@pytest_asyncio.fixture
async def raw(postgres_dsn: str) -> AsyncIterator[object]:
    """A plain connection to the test server."""
    import asyncpg

    conn = await asyncpg.connect(postgres_dsn)
    yield conn
    await conn.close()


@pytest_asyncio.fixture
async def backend(postgres_dsn: str, schema: str) -> AsyncIterator[object]:
    """A started backend in the test's own schema (dropped afterwards)."""
    from a2a_scale import ScaleSettings
    from a2a_scale_postgres.backend import PostgresBackend
    from a2a_scale_postgres.settings import PostgresSettings

    started = PostgresBackend(
        ScaleSettings(namespace='pg', backend='postgres'),
        PostgresSettings(dsn=postgres_dsn, schema_name=schema, create_schema=True),
    )
    async with started:
        yield started
