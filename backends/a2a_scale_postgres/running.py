"""`PostgresRunningTasks`: which replica runs which task, next to the heartbeats.

One row per running task in ``running_tasks`` (its primary key is the task,
so recording a task again replaces its row). Replicas are dead when their
``replicas`` row is missing (stopped, or reaped) or its heartbeat, on the
server's clock, is older than the claim's limit.

A claim is two statements. The first marks the rows of dead replicas with
the claimer (``claimed_by``), skipping rows another claim has locked, and
returns them; the second deletes what was returned. Row locks make
concurrent claims take disjoint rows, so in the normal case each record
reaches exactly one claimer. When the first reply is lost, the claimer's
next claim returns the rows again; when the claimer dies before the second
statement, the next claimer to find it dead takes them over. So a fault
never loses a record; at worst (a failed second statement) a record is
returned twice.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from a2a_scale.recovery import RunningTask, RunningTasks
from a2a_scale_postgres.schema import quote_schema

if TYPE_CHECKING:
    from collections.abc import Sequence

    import asyncpg

    from a2a_scale_postgres.connection import PoolHandle

logger = logging.getLogger(__name__)

# $1 claimer, $2 seconds. A record is orphaned when its holder (or, while a
# claim holds it, its claimer) has no heartbeat newer than $2 seconds.
_CLAIM = """
WITH taken AS (
    SELECT r.task_id FROM {q}.running_tasks r
    WHERE r.claimed_by = $1
       OR (COALESCE(r.claimed_by, r.instance_id) <> $1 AND NOT EXISTS (
           SELECT 1 FROM {q}.replicas h
           WHERE h.instance_id = COALESCE(r.claimed_by, r.instance_id)
             AND h.heartbeat_at > now() - make_interval(secs => $2)))
    FOR UPDATE OF r SKIP LOCKED
)
UPDATE {q}.running_tasks r SET claimed_by = $1
FROM taken WHERE r.task_id = taken.task_id
RETURNING r.task_id, r.owner, r.instance_id, r.resumes
"""


class PostgresRunningTasks(RunningTasks):
    """Running-task records in the ``running_tasks`` table.

    Args:
        pool: The backend's pool handle.
        schema: The namespace's schema.
        instance_id: The id of this replica: the claimer of `claim_orphans`,
            whose own records it never claims.
    """

    def __init__(self, pool: PoolHandle, *, schema: str, instance_id: str) -> None:
        self._pool = pool
        self._q = q = quote_schema(schema)
        self.instance_id = instance_id
        self._claim_sql = _CLAIM.replace('{q}', q)
        self._table = f'{q}.running_tasks'

    async def add(self, record: RunningTask) -> None:
        """Records that `record.instance_id` runs `record.task_id`."""
        await self._pool.execute(
            f'INSERT INTO {self._table} AS r '  # noqa: S608
            '(task_id, owner, instance_id, resumes) VALUES ($1, $2, $3, $4) '
            'ON CONFLICT (task_id) DO UPDATE SET owner = EXCLUDED.owner, '
            'instance_id = EXCLUDED.instance_id, resumes = EXCLUDED.resumes, '
            'claimed_by = NULL, recorded_at = now()',
            record.task_id,
            record.owner,
            record.instance_id,
            record.resumes,
        )

    async def remove(self, task_id: str, instance_id: str) -> None:
        """Drops the task's record if `instance_id` still holds it."""
        await self._pool.execute(
            f'DELETE FROM {self._table} WHERE task_id = $1 '  # noqa: S608
            'AND instance_id = $2 AND claimed_by IS NULL',
            task_id,
            instance_id,
        )

    async def remove_many(self, records: Sequence[tuple[str, str]]) -> None:
        """Drops the records each holder still holds, in one statement."""
        if not records:
            return
        await self._pool.execute(
            f'DELETE FROM {self._table} r USING '  # noqa: S608
            'unnest($1::text[], $2::text[]) AS gone(task_id, instance_id) '
            'WHERE r.task_id = gone.task_id AND r.instance_id = gone.instance_id '
            'AND r.claimed_by IS NULL',
            [task_id for task_id, _ in records],
            [instance_id for _, instance_id in records],
        )

    async def running(self, instance_id: str | None = None) -> list[RunningTask]:
        """Returns the records of one replica, or of every replica."""
        query = (
            'SELECT task_id, owner, instance_id, resumes '  # noqa: S608
            f'FROM {self._table} WHERE claimed_by IS NULL'
        )
        if instance_id is None:
            rows = await self._pool.fetch(f'{query} ORDER BY task_id')
        else:
            rows = await self._pool.fetch(
                f'{query} AND instance_id = $1 ORDER BY task_id', instance_id
            )
        return [_record(row) for row in rows]

    async def claim_orphans(self, *, older_than: float) -> list[RunningTask]:
        """Takes the records of replicas silent for `older_than` s or unregistered.

        What it returns is deleted by a second statement; if that fails, the
        records are still returned, and the next claim of this replica
        returns them again (at least once, never lost).
        """
        rows = await self._pool.fetch(
            self._claim_sql, self.instance_id, float(older_than)
        )
        claimed = [_record(row) for row in rows]
        if claimed:
            try:
                await self._pool.execute(
                    f'DELETE FROM {self._table} '  # noqa: S608
                    'WHERE task_id = ANY($1::text[]) AND claimed_by = $2',
                    [r.task_id for r in claimed],
                    self.instance_id,
                )
            except Exception as e:
                logger.warning(
                    'Could not delete %d claimed running-task row(s) from %s '
                    '(%s): the next claim returns them again',
                    len(claimed),
                    self._table,
                    type(e).__name__,
                )
        return claimed


def _record(row: asyncpg.Record) -> RunningTask:
    return RunningTask(
        task_id=row['task_id'],
        owner=row['owner'],
        instance_id=row['instance_id'],
        resumes=int(row['resumes']),
    )
