"""`DynamoDBTaskStore`: a versioned task store and event log on DynamoDB."""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, NoReturn

from a2a.server.cluster import (
    ConcurrentTaskModificationError,
    StoredTask,
    TaskVersion,
    VersionedTaskStore,
)
from a2a.server.context import ServerCallContext
from a2a.server.events.event_queue import Event
from a2a.server.owner_resolver import OwnerResolver, resolve_user_scope
from a2a.types.a2a_pb2 import ListTasksRequest, ListTasksResponse, Task, TaskState
from a2a.utils.errors import InvalidParamsError

from a2a_scale import PayloadTooLargeError, codec
from a2a_scale.tasks import (
    TERMINAL_STATES,
    ListQuery,
    check_terminal_save,
    is_terminal,
    status_timestamp_ns,
    version_int,
)
from a2a_scale_aws import items
from a2a_scale_aws.errors import (
    AWSBackendError,
    cancellation_codes,
    error_code,
    error_message,
)
from a2a_scale_aws.listing import delete_partition, list_page
from a2a_scale_aws.payloads import (
    DYNAMODB_ITEM_LIMIT,
    TASK_ID_LIMIT,
    check_item,
    check_payload,
    check_task_id,
    item_size,
    pack,
    unpack,
)

logger = logging.getLogger(__name__)

OnSaved = Callable[[str, int, bytes], Awaitable[None]]

_CANCEL_BUDGET = 30.0
_TERMINAL_VALUES = tuple(f':t{i}' for i in range(len(TERMINAL_STATES)))
_REJECTED = ('ValidationException', 'TransactionCanceledException')


def _list_key(task: Task) -> str:
    ts = status_timestamp_ns(task)
    return items.list_sort_key(ts is not None, ts or 0, task.id)


@dataclass(frozen=True)
class _Write:
    """The encoded payloads of one save."""

    task: Task
    owner: str
    body: bytes
    compressed: bool
    event: tuple[bytes, bool] | None


def _expired(item: dict[str, Any], now: float) -> bool:
    exp = item.get(items.TTL_ATTRIBUTE)
    return exp is not None and int(exp['N']) <= now


class DynamoDBTaskStore(VersionedTaskStore):
    """`VersionedTaskStore` whose saves append to a per-task event log.

    Each save is one ``TransactWriteItems``: a conditional put of the task
    item (the version compare-and-swap, or the CANCELED rule) and a put of
    the event item keyed by task id and the new version. The event items are
    the ordered log that `SnsSqsEventStream` reads.
    """

    def __init__(
        self,
        client: Any,
        table_name: str,
        *,
        owner_resolver: OwnerResolver = resolve_user_scope,
        retention_seconds: int = 86_400,
        active_ttl_seconds: int = 7 * 86_400,
        compress_threshold: int = 4096,
        on_saved: OnSaved | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Initializes the store over an open aiobotocore DynamoDB client.

        Args:
            client: The DynamoDB client.
            table_name: The namespace's table (see `a2a_scale_aws.items`).
            owner_resolver: Scopes tasks to the caller.
            retention_seconds: How long a terminal task, and each event,
                is kept (DynamoDB TTL; reads also hide expired items).
            active_ttl_seconds: How long an unfinished task is kept after
                its last save (0: until it finishes).
            compress_threshold: Payloads larger than this are compressed.
            on_saved: Awaited with ``(task_id, version, event bytes)`` after each save
                that logged an event (the stream's doorbell).
            clock: Returns the time in seconds (for tests).
        """
        self._db = client
        self.table_name = table_name
        self.owner_resolver = owner_resolver
        self._retention = retention_seconds
        self._active_ttl = active_ttl_seconds
        self._threshold = compress_threshold
        self.on_saved = on_saved
        self._clock = clock

    # -- save ---------------------------------------------------------------

    async def save(
        self,
        task: Task,
        *,
        event: Event | None,
        prev: Task | None,
        prev_version: TaskVersion,
        context: ServerCallContext,
    ) -> TaskVersion:
        """Persists `task` and its event in one transaction; see the class."""
        del prev
        check_task_id(task.id)
        owner = self.owner_resolver(context)
        body, compressed = pack(codec.encode_task(task), threshold=self._threshold)
        check_payload(task.id, body, what='Task')
        event_body: tuple[bytes, bool] | None = None
        event_data = b''
        if event is not None:
            event_data = codec.encode_event(event)
            event_body = pack(event_data, threshold=self._threshold)
            check_payload(task.id, event_body[0], what='Event')
        write = _Write(task, owner, body, compressed, event_body)
        if task.status.state == TaskState.TASK_STATE_CANCELED:
            version = await self._save_cancel(write)
        else:
            if prev_version.is_missing:
                condition = f'attribute_not_exists({items.PK})'
                values: dict[str, Any] = {}
                version = 1
            else:
                previous = version_int(prev_version)
                # Terminal is final: the version alone does not protect a
                # CANCELED task from a replica that reloaded it and then
                # saves a backlog of agent events over it. A re-save in the
                # same terminal state is accepted.
                condition = (
                    '#v = :prev AND #o = :owner AND (#st = :state OR NOT (#st IN '
                    f'({", ".join(_TERMINAL_VALUES)})))'
                )
                values = {
                    ':prev': {'N': str(previous)},
                    ':owner': {'S': owner},
                    ':state': {'N': str(int(task.status.state))},
                    **{
                        name: {'N': str(int(state))}
                        for name, state in zip(
                            _TERMINAL_VALUES, sorted(TERMINAL_STATES), strict=True
                        )
                    },
                }
                version = previous + 1
            ok = await self._transact(write, version, condition, values)
            if not ok:
                await self._raise_refused(write, version - 1)
        if event is not None and self.on_saved is not None:
            try:
                await self.on_saved(task.id, version, event_data)
            except Exception as e:
                logger.warning(
                    'Saved task %s v%d but its notification failed (%s); '
                    'subscribers will catch up on their next resync.',
                    task.id,
                    version,
                    error_code(e) or type(e).__name__,
                )
        return TaskVersion(version)

    async def _raise_refused(self, write: _Write, previous: int) -> NoReturn:
        """Raises the error of a refused save: a terminal exit or a conflict."""
        current = await self._get_item(write.task.id) if previous else None
        if (
            current is not None
            and current['o']['S'] == write.owner
            and int(current['v']['N']) == previous
        ):
            check_terminal_save(
                write.task.id, int(current['st']['N']), write.task.status.state
            )
        raise ConcurrentTaskModificationError(write.task.id)

    async def _save_cancel(self, write: _Write) -> int:
        """CANCELED overwrites any non-terminal task: CAS on what is stored.

        Under contention the transaction is retried, with a short jittered
        backoff, for as long as the task stays non-terminal (the SDK's
        cancel carries no version check), up to `_CANCEL_BUDGET` seconds.
        """
        task, owner = write.task, write.owner
        deadline = time.monotonic() + _CANCEL_BUDGET
        for attempt in itertools.count():
            if attempt and time.monotonic() > deadline:
                break
            if attempt:
                await asyncio.sleep(random.uniform(0, min(0.05, 0.002 * 2**attempt)))  # noqa: S311
            current = await self._get_item(task.id)
            if (
                current is None
                or current['o']['S'] != owner
                or is_terminal(int(current['st']['N']))
                or _expired(current, self._clock())
            ):
                raise ConcurrentTaskModificationError(task.id)
            stored = int(current['v']['N'])
            ok = await self._transact(
                write,
                stored + 1,
                '#v = :prev AND #o = :owner',
                {':prev': {'N': str(stored)}, ':owner': {'S': owner}},
            )
            if ok:
                return stored + 1
        raise ConcurrentTaskModificationError(task.id)

    def _task_item(self, write: _Write, version: int) -> dict[str, Any]:
        task, owner = write.task, write.owner
        key = _list_key(task)
        item: dict[str, Any] = {
            items.PK: {'S': items.task_pk(task.id)},
            items.SK: {'S': items.TASK_SK},
            'o': {'S': owner},
            'v': {'N': str(version)},
            'st': {'N': str(int(task.status.state))},
            'ctx': {'S': task.context_id},
            'b': {'B': write.body},
            items.GSI1_PK: {'S': items.owner_part(owner)},
            items.GSI1_SK: {'S': key},
            items.GSI2_PK: {'S': items.context_partition(owner, task.context_id)},
            items.GSI2_SK: {'S': key},
        }
        if write.compressed:
            item['z'] = {'BOOL': True}
        ttl = self._retention if is_terminal(task.status.state) else self._active_ttl
        if ttl > 0:
            item[items.TTL_ATTRIBUTE] = {'N': str(int(self._clock()) + ttl)}
        return item

    async def _transact(
        self, write: _Write, version: int, condition: str, values: dict[str, Any]
    ) -> bool:
        """Runs the save transaction; returns False on a failed condition."""
        task, event_body = write.task, write.event
        task_item = self._task_item(write, version)
        check_item(task.id, task_item, what='Task')
        put: dict[str, Any] = {
            'TableName': self.table_name,
            'Item': task_item,
            'ConditionExpression': condition,
        }
        if values:
            put['ExpressionAttributeNames'] = {'#v': 'v', '#o': 'o'}
            if '#st' in condition:
                put['ExpressionAttributeNames']['#st'] = 'st'
            put['ExpressionAttributeValues'] = values
        operations: list[dict[str, Any]] = [{'Put': put}]
        if event_body is not None:
            event_item: dict[str, Any] = {
                items.PK: {'S': items.task_pk(task.id)},
                items.SK: {'S': items.event_sk(version)},
                'b': {'B': event_body[0]},
                items.TTL_ATTRIBUTE: {'N': str(int(self._clock()) + self._retention)},
            }
            if event_body[1]:
                event_item['z'] = {'BOOL': True}
            check_item(task.id, event_item, what='Event')
            operations.append(
                {'Put': {'TableName': self.table_name, 'Item': event_item}}
            )
        try:
            await self._db.transact_write_items(TransactItems=operations)
        except Exception as e:
            code = error_code(e)
            if code == 'TransactionCanceledException':
                reasons = cancellation_codes(e)
                if not reasons or any(
                    r in ('ConditionalCheckFailed', 'TransactionConflict')
                    for r in reasons
                ):
                    return False
            if code in _REJECTED and 'item size' in error_message(e).lower():
                # Our own size check is exact for AWS; this is a safety net
                # (moto, for one, counts binary values base64-encoded).
                largest = max(item_size(op['Put']['Item']) for op in operations)
                raise PayloadTooLargeError(
                    task.id,
                    largest,
                    DYNAMODB_ITEM_LIMIT,
                    f'Task or event item (rejected by DynamoDB: {error_message(e)})',
                ) from None
            if code:
                raise AWSBackendError(
                    f'TransactWriteItems on table {self.table_name!r} for task '
                    f'{task.id!r} failed: {code}'
                ) from e
            raise
        return True

    # -- read, delete -------------------------------------------------------

    async def _get_item(self, task_id: str) -> dict[str, Any] | None:
        response = await self._db.get_item(
            TableName=self.table_name,
            Key={
                items.PK: {'S': items.task_pk(task_id)},
                items.SK: {'S': items.TASK_SK},
            },
            ConsistentRead=True,
        )
        item: dict[str, Any] | None = response.get('Item')
        return item

    def _decode(self, item: dict[str, Any]) -> Task:
        key = f'{self.table_name}/{item[items.PK]["S"]}/{item[items.SK]["S"]}'
        data = unpack(
            item['b']['B'], compressed='z' in item and item['z']['BOOL'], key=key
        )
        return codec.decode_task(data, key=key)

    async def get(self, task_id: str, context: ServerCallContext) -> StoredTask | None:
        """Returns the caller's task with its version, or `None`."""
        if len(task_id.encode('utf-8')) > TASK_ID_LIMIT:
            return None
        owner = self.owner_resolver(context)
        item = await self._get_item(task_id)
        if item is None or item['o']['S'] != owner or _expired(item, self._clock()):
            return None
        return StoredTask(self._decode(item), TaskVersion(int(item['v']['N'])))

    async def delete(self, task_id: str, context: ServerCallContext) -> None:
        """Deletes the caller's task, its event log and its push configs.

        A no-op if the task is not the caller's.
        """
        owner = self.owner_resolver(context)
        try:
            await self._db.delete_item(
                TableName=self.table_name,
                Key={
                    items.PK: {'S': items.task_pk(task_id)},
                    items.SK: {'S': items.TASK_SK},
                },
                ConditionExpression='#o = :owner',
                ExpressionAttributeNames={'#o': 'o'},
                ExpressionAttributeValues={':owner': {'S': owner}},
            )
        except Exception as e:
            if error_code(e) == 'ConditionalCheckFailedException':
                return
            raise
        await delete_partition(self._db, self.table_name, task_id)

    # -- list ---------------------------------------------------------------

    async def list(
        self, params: ListTasksRequest, context: ServerCallContext
    ) -> ListTasksResponse:
        """Lists the caller's tasks newest first, from a GSI (no scan)."""
        query = ListQuery.from_request(params)
        owner = self.owner_resolver(context)
        start = await self._page_start(query, context)
        return await list_page(
            self._db,
            self.table_name,
            owner,
            query,
            start,
            decode=self._decode,
            now=int(self._clock()),
        )

    async def _page_start(
        self, query: ListQuery, context: ServerCallContext
    ) -> tuple[str | None, bool]:
        """The sort key a page starts at, and whether that key is included."""
        if query.after is not None:
            has_ts, ts, task_id = query.after
            return items.list_sort_key(has_ts, ts, task_id), False
        if query.legacy_start_id is not None:
            stored = await self.get(query.legacy_start_id, context)
            if stored is None:
                raise InvalidParamsError(
                    f'Invalid page token: unknown task {query.legacy_start_id!r}'
                )
            return _list_key(stored.task), True
        return None, False
