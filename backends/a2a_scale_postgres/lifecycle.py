"""`PostgresQueueLifecycle`: replica heartbeats and the reaping of dead ones."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from a2a_scale.lifecycle import QueueLifecycle
from a2a_scale_postgres.schema import quote_schema

if TYPE_CHECKING:
    import asyncpg

Reaper = Callable[[str], Awaitable[None]]


class PostgresQueueLifecycle(QueueLifecycle):
    """Records live replicas in the ``replicas`` table with their last heartbeat.

    A replica's only private resource is its LISTEN connection, which
    PostgreSQL drops with the process; the table lists live replicas and
    lets any replica release what dead ones left behind. Times are the
    server's clock, so replicas with skewed clocks agree.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        schema: str,
        instance_id: str,
        reapers: list[Reaper] | None = None,
    ) -> None:
        self._pool = pool
        self._q = quote_schema(schema)
        self._instance_id = instance_id
        self.reapers: list[Reaper] = list(reapers or [])
        self._registered = False

    @property
    def instance_id(self) -> str:
        """The id of this replica."""
        return self._instance_id

    async def provision(self) -> None:
        """Registers this replica."""
        await self.heartbeat()
        self._registered = True

    async def heartbeat(self) -> None:
        """Records that this replica is alive."""
        await self._pool.execute(
            f'INSERT INTO {self._q}.replicas (instance_id) VALUES ($1) '  # noqa: S608
            'ON CONFLICT (instance_id) DO UPDATE SET heartbeat_at = now()',
            self._instance_id,
        )

    async def teardown(self) -> None:
        """Unregisters this replica; a no-op unless registered."""
        if not self._registered:
            return
        self._registered = False
        await self._pool.execute(
            f'DELETE FROM {self._q}.replicas WHERE instance_id = $1',  # noqa: S608
            self._instance_id,
        )

    async def live_instances(self) -> list[str]:
        """The ids of the registered replicas."""
        rows = await self._pool.fetch(
            f'SELECT instance_id FROM {self._q}.replicas ORDER BY instance_id'  # noqa: S608
        )
        return [r['instance_id'] for r in rows]

    async def reap(self, *, older_than: float) -> list[str]:
        """Unregisters replicas (never this one) silent for `older_than` seconds."""
        rows = await self._pool.fetch(
            f'SELECT instance_id FROM {self._q}.replicas '  # noqa: S608
            'WHERE heartbeat_at <= now() - make_interval(secs => $1) '
            'AND instance_id <> $2',
            float(older_than),
            self._instance_id,
        )
        reaped = []
        for row in rows:
            instance = row['instance_id']
            for reaper in self.reapers:
                await reaper(instance)
            deleted = await self._pool.fetchval(
                f'DELETE FROM {self._q}.replicas WHERE instance_id = $1 '  # noqa: S608
                'AND heartbeat_at <= now() - make_interval(secs => $2) RETURNING 1',
                instance,
                float(older_than),
            )
            if deleted:
                reaped.append(instance)
        return reaped
