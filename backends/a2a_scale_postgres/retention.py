"""The retention job: deletes finished tasks and orphaned logs, in batches."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from a2a_scale_postgres.schema import lock_key, quote_schema

if TYPE_CHECKING:
    from a2a_scale_postgres.connection import PoolHandle


@dataclass(frozen=True)
class RetentionResult:
    """What one run of the job deleted (or that another replica held the lock)."""

    ran: bool
    tasks: int = 0
    logs: int = 0


async def run_retention(
    pool: PoolHandle, *, schema: str, retention_seconds: float, batch: int
) -> RetentionResult:
    """Deletes up to `batch` tasks finished over `retention_seconds` ago.

    With them go their events, log counters and push configs. Logs that
    have no task (published-only messages, deleted tasks) go once silent
    for the retention period. One replica at a time runs the job: it holds
    a transaction-level advisory lock, and the others skip their turn.
    """
    q = quote_schema(schema)
    async with pool.acquire() as conn, conn.transaction():
        locked = await conn.fetchval(
            'SELECT pg_try_advisory_xact_lock($1)', lock_key(schema, 'retention')
        )
        if not locked:
            return RetentionResult(ran=False)
        rows = await conn.fetch(
            f'DELETE FROM {q}.tasks WHERE id IN (SELECT id FROM {q}.tasks '  # noqa: S608
            'WHERE finished_at < now() - make_interval(secs => $1) '
            'ORDER BY finished_at LIMIT $2 FOR UPDATE SKIP LOCKED) RETURNING id',
            float(retention_seconds),
            batch,
        )
        ids = [r['id'] for r in rows]
        orphans = await conn.fetch(
            f'DELETE FROM {q}.streams WHERE task_id IN (SELECT s.task_id '  # noqa: S608
            f'FROM {q}.streams s '
            'WHERE s.updated_at < now() - make_interval(secs => $1) '
            f'AND NOT EXISTS (SELECT 1 FROM {q}.tasks t WHERE t.id = s.task_id) '
            'LIMIT $2) RETURNING task_id',
            float(retention_seconds),
            batch,
        )
        logs = [r['task_id'] for r in orphans]
        if ids:
            await conn.execute(
                f'DELETE FROM {q}.streams WHERE task_id = ANY($1::text[])',  # noqa: S608
                ids,
            )
            await conn.execute(
                f'DELETE FROM {q}.push_configs WHERE task_id = ANY($1::text[])',  # noqa: S608
                ids,
            )
        if ids or logs:
            await conn.execute(
                f'DELETE FROM {q}.events WHERE task_id = ANY($1::text[])',  # noqa: S608
                ids + logs,
            )
    return RetentionResult(ran=True, tasks=len(ids), logs=len(logs))
