"""Connections of the PostgreSQL backend: the pool handle and connect helpers."""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any

try:
    import asyncpg
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError(
        'The postgres backend needs asyncpg, which is not installed. Install it '
        'with: pip install "a2a-scale[postgres]"'
    ) from e

from a2a_scale import BackendNotStartedError

if TYPE_CHECKING:
    from contextlib import AbstractAsyncContextManager

    from a2a_scale_postgres.settings import PostgresSettings


def _server_settings(settings: PostgresSettings, name: str) -> dict[str, str]:
    values = {'application_name': name[:63]}
    if settings.synchronous_commit is not None:
        values['synchronous_commit'] = settings.synchronous_commit
    return values


class PoolHandle:
    """Delegates to the backend's current asyncpg pool.

    The stores are built before the backend connects (construction does no
    I/O) and keep working across a stop and a start, which replace the pool.
    """

    def __init__(self, pool: asyncpg.Pool | None = None) -> None:
        self.pool = pool

    def _ready(self) -> asyncpg.Pool:
        if self.pool is None:
            raise BackendNotStartedError(
                'The postgres backend is not started: use "async with backend:" '
                'or "await backend.start()" first.'
            )
        return self.pool

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        """Runs `query`; returns its rows."""
        return await self._ready().fetch(query, *args)

    async def fetchrow(self, query: str, *args: Any) -> asyncpg.Record | None:
        """Runs `query`; returns its first row."""
        return await self._ready().fetchrow(query, *args)

    async def fetchval(self, query: str, *args: Any) -> Any:
        """Runs `query`; returns the first column of its first row."""
        return await self._ready().fetchval(query, *args)

    async def execute(self, query: str, *args: Any) -> str:
        """Runs `query`; returns its status."""
        return await self._ready().execute(query, *args)

    def acquire(self) -> AbstractAsyncContextManager[asyncpg.Connection]:
        """A pooled connection, released on exit."""
        return self._ready().acquire()


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Releases a connection to the pool without a reset round trip.

    The backend leaves no session state behind (no LISTEN, SET or session
    advisory lock on pooled connections, and asyncpg rolls back any open
    transaction itself), so asyncpg's default reset query would only cost a
    round trip per statement.
    """
    del conn


_POOL_RESET = 'reset' in inspect.signature(asyncpg.create_pool).parameters


async def create_pool(settings: PostgresSettings, *, name: str) -> asyncpg.Pool:
    """Opens the command pool described by `settings`."""
    extra: dict[str, Any] = {'reset': _keep_session} if _POOL_RESET else {}
    pool = await asyncpg.create_pool(
        settings.dsn.get_secret_value(),
        min_size=settings.min_pool_size,
        max_size=settings.max_pool_size,
        command_timeout=settings.command_timeout,
        timeout=settings.connect_timeout,
        server_settings=_server_settings(settings, name),
        **extra,
    )
    assert pool is not None
    return pool


async def connect(settings: PostgresSettings, *, name: str) -> asyncpg.Connection:
    """Opens one connection (the LISTEN connection, the CLI)."""
    return await asyncpg.connect(
        settings.dsn.get_secret_value(),
        timeout=settings.connect_timeout,
        command_timeout=settings.command_timeout,
        server_settings=_server_settings(settings, name),
    )
