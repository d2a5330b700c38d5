"""`PostgresClusterView`: an operator's view of a PostgreSQL namespace."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from a2a_scale.codec import decode_event, decode_task
from a2a_scale.ops import ClusterView, FeedEvent, OperatorTask
from a2a_scale_postgres.schema import quote_schema

if TYPE_CHECKING:
    import asyncpg

    from a2a_scale_postgres.connection import PoolHandle
    from a2a_scale_postgres.hub import PostgresListener

_KNOWN_KEYS = 10_000
"""How many task keys (md5 of the id) the feed remembers the id of."""


class PostgresClusterView(ClusterView):
    """Every task, replica and event of a namespace (schema) on PostgreSQL.

    Events come from the namespace's notification channel, which every save
    notifies with the task's key and the event's position; each is read
    from the ``events`` table. A notification sent while the LISTEN
    connection was down is not seen again.

    Args:
        pool: The backend's pool.
        listener: The backend's LISTEN connection on the namespace channel.
        schema: The namespace's schema.
        recent_seconds: How far back the feed looks for a task it has not
            seen yet (by the ``streams`` table's update time).
    """

    feed_source = 'the PostgreSQL notification channel'

    def __init__(
        self,
        pool: PoolHandle,
        listener: PostgresListener,
        *,
        schema: str,
        recent_seconds: float = 600.0,
    ) -> None:
        super().__init__('postgres', schema)
        self._pool = pool
        self._listener = listener
        self._q = quote_schema(schema)
        self._recent = recent_seconds

    async def all_tasks(self) -> list[OperatorTask]:
        """Every stored task of the namespace."""
        rows = await self._pool.fetch(
            f'SELECT id, owner, version, data FROM {self._q}.tasks'  # noqa: S608
        )
        return [self._task(r) for r in rows]

    async def find_task(self, task_id: str) -> OperatorTask | None:
        """The task with `task_id`, whoever owns it, or `None`."""
        row = await self._pool.fetchrow(
            f'SELECT id, owner, version, data FROM {self._q}.tasks '  # noqa: S608
            'WHERE id = $1',
            task_id,
        )
        return self._task(row) if row is not None else None

    def _task(self, row: asyncpg.Record) -> OperatorTask:
        task = decode_task(row['data'], key=f'{self._q}.tasks:{row["id"]}')
        return OperatorTask(task, row['owner'], int(row['version']))

    async def heartbeats(self) -> dict[str, float]:
        """Each registered replica's last heartbeat (the server's clock)."""
        rows = await self._pool.fetch(
            'SELECT instance_id, extract(epoch FROM heartbeat_at)::float8 AS at '  # noqa: S608
            f'FROM {self._q}.replicas'
        )
        return {r['instance_id']: float(r['at']) for r in rows}

    async def events(self) -> AsyncIterator[FeedEvent]:
        """Yields every event the namespace's channel announces from now on."""
        queue: asyncio.Queue[tuple[str, int]] = asyncio.Queue()

        def on_notice(key: str, position: int) -> None:
            if key:  # '' marks a reconnection: what was missed is not replayed
                queue.put_nowait((key, position))

        known: OrderedDict[str, str] = OrderedDict()
        self._listener.add_feed(on_notice)
        try:
            while True:
                key, position = await queue.get()
                task_id = known.get(key) or await self._task_id(key)
                if task_id is None:
                    continue  # deleted, or older than `recent_seconds`
                known[key] = task_id
                known.move_to_end(key)
                while len(known) > _KNOWN_KEYS:
                    known.popitem(last=False)
                row = await self._pool.fetchrow(
                    'SELECT version, data, '  # noqa: S608
                    'extract(epoch FROM created_at)::float8 AS at '
                    f'FROM {self._q}.events WHERE task_id = $1 AND seq = $2',
                    task_id,
                    position,
                )
                if row is None:
                    continue  # trimmed or deleted since
                yield FeedEvent(
                    task_id,
                    int(row['version']),
                    decode_event(
                        row['data'], key=f'{self._q}.events:{task_id}#{position}'
                    ),
                    float(row['at']),
                )
        finally:
            self._listener.remove_feed(on_notice)

    async def _task_id(self, key: str) -> str | None:
        found: str | None = await self._pool.fetchval(
            f'SELECT task_id FROM {self._q}.streams '  # noqa: S608
            'WHERE updated_at >= now() - make_interval(secs => $2) '
            'AND md5(task_id) = $1 LIMIT 1',
            key,
            self._recent,
        )
        return found
