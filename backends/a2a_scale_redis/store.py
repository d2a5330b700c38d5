"""`RedisTaskStore`: the versioned task store on Redis."""

from __future__ import annotations

import logging
import uuid
from collections import OrderedDict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from a2a.server.cluster import (
    ConcurrentTaskModificationError,
    StoredTask,
    TaskVersion,
    VersionedTaskStore,
)
from a2a.server.owner_resolver import OwnerResolver, resolve_user_scope
from a2a.server.tasks.task_store import TaskStore
from a2a.types.a2a_pb2 import ListTasksResponse, TaskState
from a2a.utils.errors import InvalidParamsError
from a2a.utils.task import ListTasksCursor, encode_list_tasks_cursor

from a2a_scale.codec import decode_task, encode_event, encode_task
from a2a_scale.errors import CorruptDataError
from a2a_scale.tasks import ListQuery, is_terminal, status_timestamp_ns
from a2a_scale_redis.errors import wrong_type_as_error
from a2a_scale_redis.keys import (
    MEMBER_PREFIX_LEN,
    TS_OFFSET,
    KeySpace,
    encode_id,
    index_member,
    member_task_id,
    timestamp_floor,
)
from a2a_scale_redis.scripts import DELETE, INDEX_DELETE, INDEX_LIST, INDEX_PUT, SAVE

if TYPE_CHECKING:
    from a2a.server.context import ServerCallContext
    from a2a.server.events.event_queue import Event
    from a2a.types.a2a_pb2 import ListTasksRequest, Task

    from a2a_scale_redis.connection import AnyRedis

logger = logging.getLogger(__name__)

_SAVED, _REPLAYED = 1, 2


def version_value(version: TaskVersion) -> int:
    """The integer inside a `TaskVersion` of this store."""
    value = version._value
    if not isinstance(value, int):
        raise TypeError(f'RedisTaskStore uses integer versions, got {value!r}')
    return value


class LoggedEvents:
    """The (task, version) pairs whose event this replica's saves logged.

    `RedisEventStream.publish` consults it to skip events that the save
    script already appended to the task's stream.
    """

    def __init__(self, capacity: int = 10_000) -> None:
        self._capacity = capacity
        self._seen: OrderedDict[tuple[str, int], None] = OrderedDict()

    def add(self, task_id: str, version: int) -> None:
        """Records that the event of `version` is in the log."""
        self._seen[(task_id, version)] = None
        if len(self._seen) > self._capacity:
            self._seen.popitem(last=False)

    def pop(self, task_id: str, version: int) -> bool:
        """Whether the event was logged; forgets it."""
        return self._seen.pop((task_id, version), False) is None


class RedisTaskStore(VersionedTaskStore):
    """`VersionedTaskStore` on Redis or Redis Cluster.

    One Lua script per save checks the owner and the version, writes the task,
    appends the event to the task's stream and rings the task's wake-up
    channel, atomically. On a single Redis the same script also updates the
    owner's list indexes; on a Cluster they live in another slot and are
    updated right after, by a version-guarded, idempotent script.
    """

    def __init__(
        self,
        client: AnyRedis,
        *,
        namespace: str = 'a2a',
        owner_resolver: OwnerResolver = resolve_user_scope,
        mode: str = 'streams',
        cluster: bool = False,
        retention_seconds: int = 86_400,
        active_ttl_seconds: int = 7 * 86_400,
        stream_maxlen: int = 1_000,
        feed_maxlen: int = 10_000,
        logged: LoggedEvents | None = None,
    ) -> None:
        self._client = client
        self.keys = KeySpace(namespace)
        self.owner_resolver = owner_resolver
        self._mode = mode
        self._cluster = cluster
        self._retention_ms = retention_seconds * 1000
        self._active_ttl_ms = active_ttl_seconds * 1000
        self._key_ttl_ms = (
            max(self._retention_ms, self._active_ttl_ms) + 60_000
            if self._active_ttl_ms
            else 0
        )
        self._maxlen = stream_maxlen
        self._feed_maxlen = feed_maxlen
        self.logged = logged or LoggedEvents()
        self._save = client.register_script(SAVE)
        self._index_put = client.register_script(INDEX_PUT)
        self._index_delete = client.register_script(INDEX_DELETE)
        self._index_list = client.register_script(INDEX_LIST)
        self._delete = client.register_script(DELETE)

    @property
    def as_task_store(self) -> TaskStore:
        """A plain `TaskStore` view (last write wins) of this store."""
        return RedisPlainTaskStore(self)

    async def save(
        self,
        task: Task,
        *,
        event: Event | None = None,
        prev: Task | None = None,
        prev_version: TaskVersion,
        context: ServerCallContext,
    ) -> TaskVersion:
        """Saves `task` if `prev_version` is current; logs `event` with it."""
        del prev
        owner = self.owner_resolver(context)
        keys = self.keys.task(task.id)
        okeys = self.keys.owner(owner)
        ts = status_timestamp_ns(task)
        member = index_member(ts is not None, ts or 0, task.id)
        state = int(task.status.state)
        terminal = is_terminal(state)
        tid = encode_id(task.id)
        ctx = encode_id(task.context_id)
        args: list[Any] = [
            owner,
            version_value(prev_version),
            int(state == TaskState.TASK_STATE_CANCELED),
            uuid.uuid4().hex,
            encode_task(task),
            encode_event(event) if event is not None else b'',
            state,
            int(terminal),
            ctx,
            member,
            self._retention_ms,
            self._active_ttl_ms,
            self._maxlen,
            keys.channel,
            self._mode,
            self._feed_maxlen,
            tid,
            '' if self._cluster else okeys.prefix,
            self._key_ttl_ms,
        ]
        with wrong_type_as_error(keys.task):
            status, version, _ = await self._save(
                keys=[
                    keys.task,
                    keys.events,
                    keys.push,
                    self.keys.feed if not self._cluster else keys.task,
                ],
                args=args,
            )
        if status not in (_SAVED, _REPLAYED):
            raise ConcurrentTaskModificationError(task.id)
        if self._cluster:
            ttl = self._retention_ms if terminal else self._active_ttl_ms
            await self._after_save_on_cluster(
                okeys.prefix,
                tid,
                int(version),
                state,
                ctx,
                member,
                ttl,
                owner,
                args[5],
            )
        if event is not None:
            self.logged.add(task.id, int(version))
        return TaskVersion(int(version))

    async def _after_save_on_cluster(  # noqa: PLR0917
        self,
        prefix: str,
        tid: str,
        version: int,
        state: int,
        ctx: str,
        member: str,
        ttl: int,
        owner: str,
        event: bytes,
    ) -> None:
        """Updates the indexes and the feed, which live in other slots."""
        try:
            await self._index_put(
                keys=[f'{prefix}:all'],
                args=[prefix, tid, version, state, ctx, member, ttl, self._key_ttl_ms],
            )
            if event and self._feed_maxlen:
                await self._client.xadd(
                    self.keys.feed,
                    {'t': tid, 'v': version, 'o': owner, 'e': event},
                    maxlen=self._feed_maxlen,
                    approximate=True,
                )
                await self._client.pexpire(self.keys.feed, self._retention_ms)
        except Exception:
            # The task is saved; the next save or list of it repairs this.
            logger.warning(
                'Saved task %s but could not update its index or the feed',
                tid[:64],
                exc_info=True,
            )

    async def get(self, task_id: str, context: ServerCallContext) -> StoredTask | None:
        """Returns the caller's task `task_id` with its version, or `None`."""
        owner = self.owner_resolver(context)
        key = self.keys.task(task_id).task
        with wrong_type_as_error(key):
            reply: Any = await self._client.hmget(key, 'd', 'v', 'o')
        data, version, stored_owner = reply
        if data is None or stored_owner is None or stored_owner.decode() != owner:
            return None
        task = decode_task(data, key=key)
        try:
            return StoredTask(task, TaskVersion(int(version)))
        except (TypeError, ValueError):
            raise CorruptDataError(key, f'bad version {version!r}') from None

    async def delete(self, task_id: str, context: ServerCallContext) -> None:
        """Deletes the caller's task `task_id`, its events and push configs."""
        owner = self.owner_resolver(context)
        keys = self.keys.task(task_id)
        with wrong_type_as_error(keys.task):
            (deleted,) = await self._delete(
                keys=[keys.task, keys.events, keys.push], args=[owner]
            )
        okeys = self.keys.owner(owner)
        if deleted:
            await self._index_delete(
                keys=[okeys.all], args=[okeys.prefix, encode_id(task_id)]
            )

    async def list(
        self, params: ListTasksRequest, context: ServerCallContext
    ) -> ListTasksResponse:
        """Lists the caller's tasks: filtered, ordered, keyset-paginated."""
        owner = self.owner_resolver(context)
        query = ListQuery.from_request(params)
        okeys = self.keys.owner(owner)
        state_filter = ''
        if query.context_id:
            suffix = okeys.context(query.context_id)[len(okeys.prefix) :]
            state_filter = str(int(query.state)) if query.state else ''
        elif query.state:
            suffix = okeys.state(query.state)[len(okeys.prefix) :]
        else:
            suffix = okeys.all[len(okeys.prefix) :]
        low = (
            '[' + timestamp_floor(query.timestamp_after_ns)
            if query.timestamp_after_ns is not None
            else '-'
        )
        high = '+'
        if query.after is not None:
            has, ts, after_id = query.after
            high = '(' + index_member(has, ts, after_id)
        legacy = encode_id(query.legacy_start_id) if query.legacy_start_id else ''
        reply = await self._index_list(
            keys=[okeys.all],
            args=[
                okeys.prefix,
                suffix,
                high,
                low,
                query.page_size + 1,
                state_filter,
                legacy,
            ],
        )
        if reply[0] == -1:
            raise InvalidParamsError(f'Invalid page token: {params.page_token}')
        total, members = int(reply[0]), [m.decode() for m in reply[1:]]
        more = len(members) > query.page_size
        members = members[: query.page_size]
        tasks = await self._fetch(owner, members)
        token = _cursor_of(members[-1]) if more and members else None
        return ListTasksResponse(
            tasks=tasks,
            next_page_token=token or '',
            page_size=query.page_size,
            total_size=total,
        )

    async def _fetch(self, owner: str, members: Sequence[str]) -> Sequence[Task]:
        """Reads the tasks of index `members`, skipping gone or corrupt ones."""
        keys = [self.keys.task(member_task_id(m)).task for m in members]
        async with self._client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.hmget(key, 'd', 'o')
            replies = await pipe.execute(raise_on_error=False)
        tasks = []
        for key, reply in zip(keys, replies, strict=True):
            if isinstance(reply, Exception):
                logger.error('Skipping task key %r in a listing: %s', key, reply)
                continue
            data, stored_owner = reply
            if data is None or stored_owner is None or stored_owner.decode() != owner:
                continue
            try:
                tasks.append(decode_task(data, key=key))
            except CorruptDataError as e:
                logger.error('Skipping a task in a listing: %s', e)
        return tasks


def _cursor_of(member: str) -> str:
    """The page token that resumes a listing after index `member`."""
    has = member[0] == '1'
    ts = int(member[1:MEMBER_PREFIX_LEN]) - TS_OFFSET
    return encode_list_tasks_cursor(
        ListTasksCursor(
            timestamp_ns=ts if has else None, task_id=member_task_id(member)
        )
    )


class RedisPlainTaskStore(TaskStore):
    """A plain `TaskStore` over `RedisTaskStore`: each save wins."""

    def __init__(self, store: RedisTaskStore, *, max_attempts: int = 20) -> None:
        self._store = store
        self._max_attempts = max_attempts

    async def save(self, task: Task, context: ServerCallContext) -> None:
        """Saves `task` over whatever version is stored."""
        for _ in range(self._max_attempts):
            stored = await self._store.get(task.id, context)
            version = stored.version if stored is not None else TaskVersion.MISSING
            try:
                await self._store.save(
                    task, event=None, prev=None, prev_version=version, context=context
                )
            except ConcurrentTaskModificationError:
                continue
            return
        raise ConcurrentTaskModificationError(task.id)

    async def get(self, task_id: str, context: ServerCallContext) -> Task | None:
        """Returns the task, or `None`."""
        stored = await self._store.get(task_id, context)
        return stored.task if stored is not None else None

    async def list(
        self, params: ListTasksRequest, context: ServerCallContext
    ) -> ListTasksResponse:
        """Lists tasks."""
        return await self._store.list(params, context)

    async def delete(self, task_id: str, context: ServerCallContext) -> None:
        """Deletes a task."""
        await self._store.delete(task_id, context)
