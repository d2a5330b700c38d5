"""Imports tasks from the SDK's SQL cluster-mode tables.

The SDK's `VersionedDatabaseTaskStore` keeps a task in ``tasks`` (JSON
columns), its version in ``task_versions`` and its events in ``task_events``
(serialized `StreamResponse` protos, the same bytes this backend stores).
`import_sdk_tasks` copies every task with its owner, version and event log
into a migrated schema of this backend, skipping ids it already holds, so a
team can switch without losing tasks. It runs in batches, one transaction
per batch, and can be run again: a second run imports only new tasks.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from a2a.types.a2a_pb2 import Task
from google.protobuf.json_format import ParseDict, ParseError

from a2a_scale import ConfigurationError
from a2a_scale.tasks import is_terminal, status_timestamp_ns
from a2a_scale_postgres.schema import quote_schema

if TYPE_CHECKING:
    import asyncpg

logger = logging.getLogger(__name__)

_NAME = re.compile(r'^[A-Za-z_][A-Za-z0-9_]{0,62}$')


def _quote(name: str, what: str) -> str:
    if not _NAME.match(name):
        raise ConfigurationError(f'Invalid {what} {name!r}: not a plain SQL name')
    return f'"{name}"'


@dataclass
class ImportReport:
    """What an import copied and what it left out."""

    tasks: int = 0
    events: int = 0
    skipped: int = 0
    unreadable: list[str] = field(default_factory=list)
    """Ids of source rows that could not be read (kept in the source)."""


def sdk_row_to_task(row: asyncpg.Record) -> Task:
    """Builds a `Task` from a row of the SDK's ``tasks`` table (protocol 1.0).

    Raises:
        ValueError: If the row is not in the SDK's 1.0 layout.
    """
    if row['protocol_version'] not in ('1.0', None):
        raise ValueError(f'protocol version {row["protocol_version"]!r}')
    task = Task(id=row['id'], context_id=row['context_id'])

    def load(column: str) -> Any:
        raw = row[column]
        return json.loads(raw) if isinstance(raw, str) else raw

    try:
        if status := load('status'):
            ParseDict(status, task.status)
        for artifact in load('artifacts') or []:
            ParseDict(artifact, task.artifacts.add())
        for message in load('history') or []:
            ParseDict(message, task.history.add())
        if metadata := load('metadata'):
            task.metadata.update(metadata)
    except (ParseError, TypeError, ValueError, json.JSONDecodeError) as e:
        raise ValueError(str(e)) from None
    return task


async def import_sdk_tasks(
    source: asyncpg.Connection,
    target: asyncpg.Connection,
    *,
    schema: str,
    source_schema: str = 'public',
    tasks_table: str = 'tasks',
    events_table: str = 'task_events',
    versions_table: str = 'task_versions',
    batch: int = 200,
) -> ImportReport:
    """Copies the SDK's tasks, versions and event logs into `schema`.

    Args:
        source: A connection to the database with the SDK's tables.
        target: A connection to the database with this backend's schema.
        schema: The backend's (migrated) schema.
        source_schema: The schema of the SDK's tables.
        tasks_table: The SDK's task table.
        events_table: The SDK's event table.
        versions_table: The SDK's version table.
        batch: Tasks per transaction.
    """
    q = quote_schema(schema)
    s = _quote(source_schema, 'source schema')
    tasks = f'{s}.{_quote(tasks_table, "task table")}'
    events = f'{s}.{_quote(events_table, "event table")}'
    versions = f'{s}.{_quote(versions_table, "version table")}'
    report = ImportReport()
    after = ''
    while True:
        rows = await source.fetch(
            'SELECT t.id, t.context_id, t.owner, t.status::text AS status, '  # noqa: S608
            't.artifacts::text AS artifacts, t.history::text AS history, '
            't.metadata::text AS metadata, t.protocol_version, v.version '
            f'FROM {tasks} t LEFT JOIN {versions} v ON v.task_id = t.id '
            'WHERE t.id > $1 ORDER BY t.id LIMIT $2',
            after,
            batch,
        )
        if not rows:
            return report
        after = rows[-1]['id']
        async with target.transaction():
            for row in rows:
                await _import_one(
                    source, target, row, q=q, events=events, report=report
                )


async def _import_one(
    source: asyncpg.Connection,
    target: asyncpg.Connection,
    row: asyncpg.Record,
    *,
    q: str,
    events: str,
    report: ImportReport,
) -> None:
    try:
        task = sdk_row_to_task(row)
    except ValueError as e:
        logger.error('Not importing SDK task %r: %s', row['id'][:200], e)
        report.unreadable.append(row['id'])
        return
    state = int(task.status.state)
    ts = status_timestamp_ns(task)
    inserted = await target.fetchval(
        f'INSERT INTO {q}.tasks (id, owner, version, state, context_id, has_ts, '  # noqa: S608
        'ts_ns, terminal, data, finished_at) VALUES ($1, $2, $3, $4, $5, $6, $7, '
        '$8, $9, CASE WHEN $8 THEN now() END) ON CONFLICT (id) DO NOTHING RETURNING 1',
        task.id,
        row['owner'] or '',
        int(row['version'] or 1),
        state,
        task.context_id,
        ts is not None,
        ts or 0,
        is_terminal(state),
        task.SerializeToString(),
    )
    if not inserted:
        report.skipped += 1
        return
    logged = await source.fetch(
        f'SELECT task_version, event_data FROM {events} '  # noqa: S608
        'WHERE task_id = $1 ORDER BY seq',
        task.id,
    )
    if logged:
        await target.executemany(
            f'INSERT INTO {q}.events (task_id, seq, version, data) '  # noqa: S608
            'VALUES ($1, $2, $3, $4)',
            [
                (task.id, seq, int(e['task_version']), bytes(e['event_data']))
                for seq, e in enumerate(logged, start=1)
            ],
        )
        await target.execute(
            f'INSERT INTO {q}.streams (task_id, last_seq) VALUES ($1, $2) '  # noqa: S608
            'ON CONFLICT (task_id) DO NOTHING',
            task.id,
            len(logged),
        )
    report.tasks += 1
    report.events += len(logged)
