"""`PostgresTaskStore`: the versioned task store on PostgreSQL."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from a2a.server.cluster import (
    ConcurrentTaskModificationError,
    StoredTask,
    TaskVersion,
    VersionedTaskStore,
)
from a2a.server.owner_resolver import OwnerResolver, resolve_user_scope
from a2a.types.a2a_pb2 import ListTasksResponse, TaskState
from a2a.utils.errors import InvalidParamsError
from a2a.utils.task import ListTasksCursor, encode_list_tasks_cursor

from a2a_scale.codec import decode_task, encode_event, encode_task
from a2a_scale.errors import CorruptDataError, TerminalTaskError
from a2a_scale.tasks import (
    ListQuery,
    LoggedEvents,
    check_task_id,
    is_terminal,
    status_timestamp_ns,
)
from a2a_scale.tasks import version_int as version_value
from a2a_scale.views import VersionedTaskStoreView
from a2a_scale_postgres.errors import row_key
from a2a_scale_postgres.notify import PostgresNotifier, format_notice
from a2a_scale_postgres.schema import channel_name, quote_schema

if TYPE_CHECKING:
    from a2a.server.context import ServerCallContext
    from a2a.server.events.event_queue import Event
    from a2a.server.tasks import TaskStore
    from a2a.types.a2a_pb2 import ListTasksRequest, Task

    from a2a_scale_postgres.connection import PoolHandle

logger = logging.getLogger(__name__)

_TERMINAL = -2
"""``save_task_v2``'s answer to a save that would leave a terminal state."""

__all__ = ['PostgresTaskStore', 'version_value']


class PostgresTaskStore(VersionedTaskStore):
    """`VersionedTaskStore` on PostgreSQL with asyncpg.

    Each save is one call of the schema's ``save_task_v2`` function, so one
    round trip and one transaction check the owner and the version, write
    the task and append the event to the task's log. Once that commits, the
    notification is handed to the replica's `PostgresNotifier`, which sends
    it in a tiny transaction of its own (see `a2a_scale_postgres.notify`),
    so a notification is sent only if the save commits.

    Args:
        pool: The backend's pool handle.
        schema: The schema holding the tables (already migrated).
        owner_resolver: Scopes tasks to a caller.
        max_events_per_task: Events kept in a task's log.
        logged: Shared with the event stream, to skip re-publishing.
        notify_payload_limit: Largest event (bytes) a notification carries.
        notifier: Sends the notifications (shared with the event stream).
    """

    def __init__(
        self,
        pool: PoolHandle,
        *,
        schema: str,
        owner_resolver: OwnerResolver = resolve_user_scope,
        max_events_per_task: int = 1_000,
        logged: LoggedEvents | None = None,
        notify_payload_limit: int = 2_000,
        notifier: PostgresNotifier | None = None,
    ) -> None:
        self._pool = pool
        self.schema = schema
        self._q = q = quote_schema(schema)
        self.channel = channel_name(schema)
        self.owner_resolver = owner_resolver
        self.max_events = max_events_per_task
        self.logged = logged or LoggedEvents()
        self.notify_payload_limit = notify_payload_limit
        self.notifier = notifier or PostgresNotifier(pool, self.channel)
        self._save_sql = (
            f'SELECT {q}.save_task_v2($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, '
            '$11, $12)'
        )
        self._get_sql = (
            f'SELECT data, version FROM {q}.tasks WHERE id = $1 AND owner = $2'  # noqa: S608
        )

    @property
    def as_task_store(self) -> TaskStore:
        """A plain `TaskStore` view (last write wins) of this store."""
        return VersionedTaskStoreView(self)

    async def save(
        self,
        task: Task,
        *,
        event: Event | None = None,
        prev: Task | None = None,
        prev_version: TaskVersion,
        context: ServerCallContext,
    ) -> TaskVersion:
        """Saves `task` if `prev_version` is current; logs `event` with it.

        Raises:
            ConcurrentTaskModificationError: If the version is stale, the id
                belongs to another owner, a first write finds it taken, or a
                cancel finds the task absent or terminal.
            TerminalTaskError: If the save would move a finished task to
                another state.
            InvalidTaskIdError: If the task id is empty.
        """
        del prev
        check_task_id(task.id)
        owner = self.owner_resolver(context)
        state = int(task.status.state)
        ts = status_timestamp_ns(task)
        data = encode_event(event) if event is not None else None
        result = await self._pool.fetchval(
            self._save_sql,
            task.id,
            owner,
            version_value(prev_version),
            state == TaskState.TASK_STATE_CANCELED,
            state,
            is_terminal(state),
            task.context_id,
            ts is not None,
            ts or 0,
            encode_task(task),
            data,
            self.max_events,
        )
        version, position = (int(v) for v in result)
        if version >= 0 and position > 0:
            self.notifier.send(
                format_notice(
                    task.id, position, version, data, self.notify_payload_limit
                )
            )
        if version == _TERMINAL:
            raise TerminalTaskError(
                task.id, state=TaskState.Name(position), requested=TaskState.Name(state)
            )
        if version < 0:
            raise ConcurrentTaskModificationError(task.id)
        if event is not None:
            self.logged.add(task.id, version)
        return TaskVersion(int(version))

    async def get(self, task_id: str, context: ServerCallContext) -> StoredTask | None:
        """Returns the caller's task `task_id` with its version, or `None`."""
        owner = self.owner_resolver(context)
        row = await self._pool.fetchrow(self._get_sql, task_id, owner)
        if row is None:
            return None
        task = decode_task(bytes(row['data']), key=self._key(task_id))
        if task.id != task_id:
            raise CorruptDataError(self._key(task_id), 'the stored Task has another id')
        return StoredTask(task, TaskVersion(int(row['version'])))

    async def delete(self, task_id: str, context: ServerCallContext) -> None:
        """Deletes the caller's task `task_id`, its events and push configs."""
        owner = self.owner_resolver(context)
        q = self._q
        async with self._pool.acquire() as conn, conn.transaction():
            deleted = await conn.fetchval(
                f'DELETE FROM {q}.tasks WHERE id = $1 AND owner = $2 RETURNING 1',  # noqa: S608
                task_id,
                owner,
            )
            if deleted:
                await conn.execute(
                    f'DELETE FROM {q}.events WHERE task_id = $1',  # noqa: S608
                    task_id,
                )
                await conn.execute(
                    f'DELETE FROM {q}.push_configs WHERE task_id = $1',  # noqa: S608
                    task_id,
                )

    async def list(
        self, params: ListTasksRequest, context: ServerCallContext
    ) -> ListTasksResponse:
        """Lists the caller's tasks: filtered, newest first, keyset-paged.

        Raises:
            InvalidParamsError: If the page token is invalid.
        """
        owner = self.owner_resolver(context)
        query = ListQuery.from_request(params)
        async with self._pool.acquire() as conn:
            total = await conn.fetchval(*self.count_statement(query, owner))
            start: tuple[bool, int, str] | None = None
            if query.legacy_start_id is not None:
                where, args = _filters(query, owner)
                found = await conn.fetchrow(
                    f'SELECT has_ts, ts_ns FROM {self._q}.tasks '  # noqa: S608
                    f'WHERE {" AND ".join(where)} AND id = ${len(args) + 1}',
                    *args,
                    query.legacy_start_id,
                )
                if found is None:
                    raise InvalidParamsError(
                        f'Invalid page token: unknown task {query.legacy_start_id!r}'
                    )
                start = (found['has_ts'], found['ts_ns'], query.legacy_start_id)
            rows = await conn.fetch(*self.page_statement(query, owner, start=start))
        more = len(rows) > query.page_size
        page = rows[: query.page_size]
        tasks = []
        for row in page:
            try:
                tasks.append(decode_task(bytes(row['data']), key=self._key(row['id'])))
            except CorruptDataError as e:
                logger.error('Skipping a task in a listing: %s', e)
        token = None
        if more and page:
            last = page[-1]
            token = encode_list_tasks_cursor(
                ListTasksCursor(
                    timestamp_ns=last['ts_ns'] if last['has_ts'] else None,
                    task_id=last['id'],
                )
            )
        return ListTasksResponse(
            tasks=tasks,
            next_page_token=token or '',
            page_size=query.page_size,
            total_size=int(total),
        )

    def count_statement(self, query: ListQuery, owner: str) -> tuple[Any, ...]:
        """The SQL and arguments that count a listing's matches."""
        where, args = _filters(query, owner)
        sql = f'SELECT count(*) FROM {self._q}.tasks WHERE {" AND ".join(where)}'  # noqa: S608
        return (sql, *args)

    def page_statement(
        self,
        query: ListQuery,
        owner: str,
        *,
        start: tuple[bool, int, str] | None = None,
    ) -> tuple[Any, ...]:
        """The SQL and arguments that read one page (plus one row) of a listing.

        Args:
            query: The listing.
            owner: The caller.
            start: The sort key of a legacy page token's task (inclusive).
        """
        where, args = _filters(query, owner)
        bound, op = (query.after, '<') if query.after is not None else (start, '<=')
        if bound is not None:
            n = len(args)
            where.append(f'(has_ts, ts_ns, id) {op} (${n + 1}, ${n + 2}, ${n + 3})')
            args += list(bound)
        sql = (
            f'SELECT id, has_ts, ts_ns, data FROM {self._q}.tasks '  # noqa: S608
            f'WHERE {" AND ".join(where)} '
            'ORDER BY has_ts DESC, ts_ns DESC, id DESC '
            f'LIMIT {int(query.page_size) + 1}'
        )
        return (sql, *args)

    def _key(self, task_id: str) -> str:
        return row_key(self.schema, 'tasks', id=task_id)


def _filters(query: ListQuery, owner: str) -> tuple[list[str], list[Any]]:
    """The WHERE terms and arguments of a listing's filters."""
    where = ['owner = $1']
    args: list[Any] = [owner]
    if query.context_id:
        args.append(query.context_id)
        where.append(f'context_id = ${len(args)}')
    if query.state:
        args.append(int(query.state))
        where.append(f'state = ${len(args)}')
    if query.timestamp_after_ns is not None:
        args.append(query.timestamp_after_ns)
        where.append(f'has_ts AND ts_ns >= ${len(args)}')
    return where, args
