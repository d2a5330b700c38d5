"""`RedisTaskStore`: the versioned task store on Redis."""

from __future__ import annotations

import itertools
import logging
import uuid
from collections.abc import Sequence
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
from redis.exceptions import ResponseError

from a2a_scale.codec import decode_task, encode_event, encode_task
from a2a_scale.errors import CorruptDataError
from a2a_scale.sdk_compat import task_version_value
from a2a_scale.tasks import (
    ListQuery,
    LoggedEvents,
    check_task_id,
    check_terminal_save,
    is_terminal,
    status_timestamp_ns,
)
from a2a_scale_redis.batching import CommandBatcher
from a2a_scale_redis.errors import raise_as_wrong_type
from a2a_scale_redis.indexes import (
    INDEX_DELETE,
    INDEX_LIST,
    PRUNE_PENDING,
    cursor_of,
)
from a2a_scale_redis.keys import (
    KeySpace,
    encode_id,
    index_member,
    member_task_id,
    timestamp_floor,
)
from a2a_scale_redis.saves import ClusterFollowUp, SaveHook
from a2a_scale_redis.scripts import DELETE, save_script

if TYPE_CHECKING:
    from a2a.server.context import ServerCallContext
    from a2a.server.events.event_queue import Event
    from a2a.server.tasks.task_store import TaskStore
    from a2a.types.a2a_pb2 import ListTasksRequest, Task

    from a2a_scale_redis.connection import AnyRedis

logger = logging.getLogger(__name__)

_SAVED, _REPLAYED, _TERMINAL = 1, 2, -2


def version_value(version: TaskVersion) -> int:
    """The integer inside a `TaskVersion` of this store."""
    value = task_version_value(version)
    if not isinstance(value, int):
        raise TypeError(f'RedisTaskStore uses integer versions, got {value!r}')
    return value


def _is_wrong_type(error: ResponseError) -> bool:
    return 'WRONGTYPE' in str(error)


class RedisTaskStore(VersionedTaskStore):
    """`VersionedTaskStore` on Redis or Redis Cluster.

    One Lua script per save checks the owner, the version and the
    finished-task rule, writes the task, appends the event to the task's
    stream and rings the task's wake-up channel, atomically. On a single
    Redis the same script also updates the owner's list indexes; on a Cluster
    they live in another slot and are updated right after, by a
    version-guarded, idempotent script.

    A task whose key cannot be read (wrong type, or another owner's) is
    missing for the caller; the key is logged for the operator.
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
        inline_event_bytes: int = 0,
    ) -> None:
        self._client = client
        self.keys = KeySpace(namespace, sharded=cluster)
        self.owner_resolver = owner_resolver
        self._cluster = cluster
        self._retention_ms = retention_seconds * 1000
        self._active_ttl_ms = active_ttl_seconds * 1000
        self.logged = logged or LoggedEvents()
        self.save_hook: SaveHook | None = None
        """Told of each save of an event (the event stream's own writes)."""
        self._save = client.register_script(
            save_script(
                retention_ms=self._retention_ms,
                active_ttl_ms=self._active_ttl_ms,
                maxlen=stream_maxlen,
                mode=mode,
                feed_maxlen=feed_maxlen,
                inline_bytes=inline_event_bytes,
                registry='' if cluster else self.keys.sweep,
            )
        )
        # Write ids: unique per save call, cheaper than a uuid each.
        self._write_prefix = uuid.uuid4().hex[:16]
        self._write_count = itertools.count()
        self._cluster_follow_up = ClusterFollowUp(
            client,
            self.keys,
            feed_maxlen=feed_maxlen,
            retention_ms=self._retention_ms,
        )
        self._index_delete = client.register_script(INDEX_DELETE)
        self._index_list = client.register_script(INDEX_LIST)
        self._delete = client.register_script(DELETE)
        self.batcher = CommandBatcher(client, enabled=not cluster)
        """Sends saves and gets together while others are in flight."""

    @property
    def cluster(self) -> bool:
        """Whether the store runs on a Redis Cluster."""
        return self._cluster

    @property
    def client(self) -> AnyRedis:
        """The Redis client of the store."""
        return self._client

    @property
    def as_task_store(self) -> TaskStore:
        """A plain `TaskStore` view (last write wins) of this store."""
        from a2a_scale_redis.plain import RedisPlainTaskStore  # noqa: PLC0415

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
        """Saves `task` if `prev_version` is current; logs `event` with it.

        Raises:
            InvalidTaskIdError: If the task id is empty.
            TerminalTaskError: If the stored task is terminal and `task`
                has another state.
            ConcurrentTaskModificationError: If `prev_version` is not
                current (or the CANCELED rule refuses the write).
        """
        del prev
        check_task_id(task.id)
        owner = self.owner_resolver(context)
        keys = self.keys.task(task.id)
        prefix = self.keys.owner(owner).prefix
        ts = status_timestamp_ns(task)
        member = index_member(ts is not None, ts or 0, task.id)
        state = int(task.status.state)
        tid = encode_id(task.id)
        ctx = encode_id(task.context_id)
        data = encode_event(event) if event is not None else b''
        inline = not self._cluster
        hook = self.save_hook
        token = hook.saving(task.id) if hook is not None and data else None
        reply: Any = None
        try:
            reply = await self.batcher.script(
                self._save,
                [
                    keys.task,
                    keys.events,
                    keys.push,
                    self.keys.feed if inline else keys.task,
                ],
                [
                    owner,
                    version_value(prev_version),
                    int(state == TaskState.TASK_STATE_CANCELED),
                    f'{self._write_prefix}{next(self._write_count):x}',
                    encode_task(task),
                    data,
                    state,
                    int(is_terminal(state)),
                    ctx,
                    member,
                    keys.channel,
                    tid,
                    prefix if inline else '',
                ],
            )
        except ResponseError as e:
            raise_as_wrong_type(e, keys.task)
        finally:
            if token is not None:
                # Tells the hook of the entry the save logged, if it did.
                hook.saved(token, self._logged_entry(reply, data))  # type: ignore[union-attr]
        status, version = int(reply[0]), int(reply[1])
        if status == _TERMINAL:
            check_terminal_save(task.id, int(reply[2]), state)
        if status not in (_SAVED, _REPLAYED):
            raise ConcurrentTaskModificationError(task.id)
        if self._cluster:
            await self._cluster_follow_up.run(
                prefix,
                tid,
                version,
                (state, ctx, member),
                int(reply[3]) if int(reply[4]) else None,
                owner,
                data,
            )
        if event is not None:
            self.logged.add(task.id, version)
        return TaskVersion(version)

    @staticmethod
    def _logged_entry(reply: Any, event: bytes) -> tuple[Any, int, bytes] | None:
        """The entry a save logged (id, version, event), from its reply."""
        if reply and int(reply[0]) == _SAVED and reply[2]:
            return (reply[2], int(reply[1]), event)
        return None

    async def get(self, task_id: str, context: ServerCallContext) -> StoredTask | None:
        """Returns the caller's task `task_id` with its version, or `None`."""
        owner = self.owner_resolver(context)
        key = self.keys.task(task_id).task
        try:
            reply: Any = await self.batcher.execute('HMGET', key, 'd', 'v', 'o')
        except ResponseError as e:
            if not _is_wrong_type(e):
                raise
            logger.error('Task key %r holds the wrong kind of value: %s', key, e)
            return None
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
        try:
            (deleted,) = await self._delete(
                keys=[keys.task, keys.events, keys.push],
                args=[owner, keys.channel],
            )
        except ResponseError as e:
            if not _is_wrong_type(e):
                raise
            logger.error('Task key %r holds the wrong kind of value: %s', keys.task, e)
            return
        okeys = self.keys.owner(owner)
        if deleted:
            await self._index_delete(
                keys=[okeys.all],
                args=[
                    okeys.prefix,
                    encode_id(task_id),
                    '' if self._cluster else self.keys.sweep,
                ],
            )

    async def list(
        self, params: ListTasksRequest, context: ServerCallContext
    ) -> ListTasksResponse:
        """Lists the caller's tasks: filtered, ordered, keyset-paginated.

        Expired entries are never counted nor paged over. `total_size` counts
        the tasks the listing can return: a task that is gone, or whose key
        cannot be read, is left out of the page and of the count, and its key
        is logged. Any other error reply to a read fails the listing.
        """
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
        args: list[Any] = [
            okeys.prefix,
            suffix,
            high,
            low,
            query.page_size + 1,
            state_filter,
            legacy,
            '' if self._cluster else self.keys.sweep,
        ]
        reply = await self._index_list(keys=[okeys.all], args=args)
        while reply[0] == PRUNE_PENDING:  # each call drops a bounded batch
            reply = await self._index_list(keys=[okeys.all], args=args)
        if reply[0] == -1:
            raise InvalidParamsError(f'Invalid page token: {params.page_token}')
        total, members = int(reply[0]), [m.decode() for m in reply[1:]]
        more = len(members) > query.page_size
        members = members[: query.page_size]
        tasks, skipped = await self._fetch(owner, members)
        token = cursor_of(members[-1]) if more and members else None
        return ListTasksResponse(
            tasks=tasks,
            next_page_token=token or '',
            page_size=query.page_size,
            total_size=max(total - skipped, len(tasks)),
        )

    async def _fetch(
        self, owner: str, members: Sequence[str]
    ) -> tuple[Sequence[Task], int]:
        """Reads the tasks of index `members`; also counts those it skipped."""
        keys = [self.keys.task(member_task_id(m)).task for m in members]
        async with self._client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.hmget(key, 'd', 'o')
            replies = await pipe.execute(raise_on_error=False)
        tasks: list[Task] = []
        for key, reply in zip(keys, replies, strict=True):
            if isinstance(reply, Exception):
                # Only a key that holds the wrong kind of value is skipped: a
                # transient error (BUSY, LOADING, ...) must not shrink a page.
                if not isinstance(reply, ResponseError) or not _is_wrong_type(reply):
                    raise reply
                logger.error('Skipping task key %r in a listing: %s', key, reply)
                continue
            data, stored_owner = reply
            if data is None or stored_owner is None or stored_owner.decode() != owner:
                continue
            try:
                tasks.append(decode_task(data, key=key))
            except CorruptDataError as e:
                logger.error('Skipping a task in a listing: %s', e)
        return tasks, len(keys) - len(tasks)
