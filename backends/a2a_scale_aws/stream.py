"""`SnsSqsEventStream`: SNS doorbells over the ordered DynamoDB event log.

The event items written by `DynamoDBTaskStore` are the log: one item per
logged version, in version order within the task's partition. A save rings
a doorbell, one SNS message naming the task and version, which SNS fans out
to one SQS queue per replica. A replica's single long-poll loop reads its
queue in batches of 10 and, for each task that has local subscribers, reads
the log after the last version it holds with one consistent ``Query``.

Events the SDK publishes without saving them (a message-mode reply) are
appended to the log by `publish`, right after the saved event of the version
they carry; an event the log already holds (same version and payload) is not
appended again, and the usual publish right after a save costs no call.

SQS may reorder, duplicate or (if a publish fails) miss doorbells; none of
that reaches subscribers. Order and the absence of gaps come from the log,
duplicates are dropped because a subscriber only moves forward in versions,
and a task whose subscribers have heard nothing for ``resync_interval``
seconds is re-read anyway.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import hashlib
import itertools
import json
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field
from typing import Any

from a2a.server.cluster import (
    ConcurrentTaskModificationError,
    TaskEventStream,
    TaskVersion,
    VersionedEvent,
)

from a2a_scale import codec
from a2a_scale.tasks import version_int
from a2a_scale_aws import items
from a2a_scale_aws.errors import error_code
from a2a_scale_aws.payloads import check_payload, check_task_id, pack, unpack

logger = logging.getLogger(__name__)

_BATCH = 10
_DELETE_DELAY_S = 2.0
_RETRY_DELAY_S = 1.0
_RECENT_SAVES = 4096
_APPEND_ATTEMPTS = 8


def doorbell(task_id: str, version: int) -> str:
    """The body of a doorbell: the task and version only, never the event."""
    return json.dumps({'t': task_id, 'v': version}, separators=(',', ':'))


def parse_doorbell(body: str) -> tuple[str, int] | None:
    """Reads a doorbell body; `None` if it is not one."""
    try:
        data = json.loads(body)
        task_id, version = data['t'], data['v']
    except (ValueError, TypeError, KeyError):
        return None
    if (
        not isinstance(task_id, str)
        or not isinstance(version, int)
        or isinstance(version, bool)
    ):
        return None
    return task_id, version


def _digest(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=16).digest()


@dataclass
class _Feed:
    """The log of one task as read by this replica, shared by its subscribers.

    ``keys``/``bodies`` hold every logged event whose sort key is in
    ``(floor, head]``; cursors are event sort keys too.
    """

    task_id: str
    floor: str | None = None
    head: str = items.EVENT_PREFIX
    keys: list[str] = field(default_factory=list)
    bodies: list[tuple[bytes, bool]] = field(default_factory=list)
    cursors: dict[int, str] = field(default_factory=dict)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    fetching: asyncio.Task[None] | None = None
    dirty: bool = False

    def pulse(self) -> None:
        old, self.changed = self.changed, asyncio.Event()
        old.set()


class SnsSqsEventStream(TaskEventStream):
    """`TaskEventStream` over SNS doorbells and the DynamoDB event log."""

    def __init__(
        self,
        dynamodb: Any,
        sns: Any,
        sqs: Any,
        *,
        table_name: str,
        topic_arn: str | None = None,
        resync_interval: float = 30.0,
        receive_wait_seconds: int = 20,
        receive_linger: float = 0.05,
        retention_seconds: int = 86_400,
        compress_threshold: int = 4096,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Initializes the stream over open aiobotocore clients.

        Args:
            dynamodb: The DynamoDB client (reads the log).
            sns: The SNS client (rings doorbells).
            sqs: The SQS client (reads this replica's queue).
            table_name: The namespace's table.
            topic_arn: The doorbell topic; may be set later.
            resync_interval: Seconds of silence after which a subscribed task
                is re-read without a doorbell.
            receive_wait_seconds: Long-poll wait of each receive (1..20).
            receive_linger: After a partial batch, seconds to let doorbells
                gather before the next receive (fewer calls under load; the
                first doorbell after a quiet spell is never delayed).
            retention_seconds: How long a published-only event is kept.
            compress_threshold: Larger published-only events are compressed.
            clock: Returns the time in seconds (for tests).
        """
        self._db = dynamodb
        self._sns = sns
        self._sqs = sqs
        self.table_name = table_name
        self.topic_arn = topic_arn
        self._resync = resync_interval
        self._wait = receive_wait_seconds
        self._linger = receive_linger
        self._retention = retention_seconds
        self._threshold = compress_threshold
        self._clock = clock
        self._recent: OrderedDict[tuple[str, int], bytes] = OrderedDict()
        self._feeds: dict[str, _Feed] = {}
        self._ids = itertools.count(1)
        self._queue_url: str | None = None
        self._receiver: asyncio.Task[None] | None = None
        self._deletes: list[str] = []
        self._delete_flush: asyncio.Task[None] | None = None
        self._stopped = False
        self.queue_lost = False

    # -- publishing ---------------------------------------------------------

    async def publish(self, task_id: str, event: VersionedEvent) -> None:
        """Appends `event` to the log unless it already holds it.

        The event the SDK publishes right after saving it is recognised from
        this replica's recent saves and costs no call; otherwise one
        ``Query`` of the version's events decides, and a new event is put
        after them and rings the doorbell.
        """
        version = version_int(event.version)
        data = codec.encode_event(event.event)
        digest = _digest(data)
        if self._recent.get((task_id, version)) == digest:
            return
        check_task_id(task_id)
        body, compressed = pack(data, threshold=self._threshold)
        check_payload(task_id, body, what='Published event')
        for _ in range(_APPEND_ATTEMPTS):
            logged = await self._query(
                task_id,
                items.event_sk(version),
                items.extra_event_sk(version, 999_999),
                live=False,
            )
            for item in logged:
                stored = self._body(item)
                key = self._key(task_id, item[items.SK]['S'])
                if unpack(stored[0], compressed=stored[1], key=key) == data:
                    self._remember(task_id, version, digest)
                    return
            extras = [i for i in logged if i[items.SK]['S'] != items.event_sk(version)]
            n = len(extras) + 1
            if await self._append(
                task_id, items.extra_event_sk(version, n), body, compressed
            ):
                await self.notify(task_id, version)
                return
        raise ConcurrentTaskModificationError(task_id)

    async def _append(
        self, task_id: str, sk: str, body: bytes, compressed: bool
    ) -> bool:
        item: dict[str, Any] = {
            items.PK: {'S': items.task_pk(task_id)},
            items.SK: {'S': sk},
            'b': {'B': body},
            items.TTL_ATTRIBUTE: {'N': str(int(self._clock()) + self._retention)},
        }
        if compressed:
            item['z'] = {'BOOL': True}
        try:
            await self._db.put_item(
                TableName=self.table_name,
                Item=item,
                ConditionExpression=f'attribute_not_exists({items.PK})',
            )
        except Exception as e:
            if error_code(e) == 'ConditionalCheckFailedException':
                return False
            raise
        return True

    def _remember(self, task_id: str, version: int, digest: bytes) -> None:
        self._recent[(task_id, version)] = digest
        self._recent.move_to_end((task_id, version))
        while len(self._recent) > _RECENT_SAVES:
            self._recent.popitem(last=False)

    async def notify(
        self, task_id: str, version: int, data: bytes | None = None
    ) -> None:
        """Rings the doorbell of `task_id` after its `version` was logged.

        Local subscribers are woken at once; other replicas through SNS.

        Args:
            task_id: The task.
            version: The version whose event was logged.
            data: The event's bytes, when this replica saved it: a publish
                of the same event is then recognised without a call.
        """
        if data is not None:
            self._remember(task_id, version, _digest(data))
        feed = self._feeds.get(task_id)
        if feed is not None:
            self._kick(feed)
        if self.topic_arn is None:
            return
        await self._sns.publish(
            TopicArn=self.topic_arn, Message=doorbell(task_id, version)
        )

    def subscriber_count(self, task_id: str | None = None) -> int:
        """This replica's live subscriptions (to one task, or to all)."""
        if task_id is not None:
            feed = self._feeds.get(task_id)
            return len(feed.cursors) if feed is not None else 0
        return sum(len(feed.cursors) for feed in self._feeds.values())

    async def destroy(self, task_id: str) -> None:
        """No-op: the log expires by TTL; subscribers stop on their own."""
        del task_id

    # -- subscribing --------------------------------------------------------

    async def subscribe(
        self, task_id: str, *, after: TaskVersion
    ) -> AsyncGenerator[VersionedEvent, None]:
        """Yields the events of `task_id` after `after`, then live ones."""
        cursor = items.after_version(version_int(after))
        feed = self._feeds.get(task_id)
        if feed is None:
            feed = self._feeds[task_id] = _Feed(task_id)
        sid = next(self._ids)
        feed.cursors[sid] = cursor
        try:
            self._kick(feed)
            while True:
                changed = feed.changed
                if feed.floor is not None and feed.floor <= cursor:
                    start = bisect.bisect_right(feed.keys, cursor)
                    batch = list(
                        zip(feed.keys[start:], feed.bodies[start:], strict=True)
                    )
                    for sk, body in batch:
                        event = self._decode(task_id, sk, body)
                        cursor = feed.cursors[sid] = sk
                        yield VersionedEvent(
                            event=event,
                            version=TaskVersion(items.version_of_event_sk(sk)),
                        )
                    if batch:
                        continue
                # Not asyncio.wait_for: on Python 3.11 it swallows a cancel
                # that races with the event being set, and the generator
                # would then never stop. asyncio.timeout lets it through.
                try:
                    async with asyncio.timeout(self._resync):
                        await changed.wait()
                except TimeoutError:
                    self._kick(feed)
        finally:
            feed.cursors.pop(sid, None)
            if not feed.cursors and self._feeds.get(task_id) is feed:
                del self._feeds[task_id]
                if feed.fetching is not None:
                    feed.fetching.cancel()

    def _key(self, task_id: str, sk: str) -> str:
        return f'{self.table_name}/{items.task_pk(task_id)}/{sk}'

    @staticmethod
    def _body(item: dict[str, Any]) -> tuple[bytes, bool]:
        return item['b']['B'], 'z' in item and item['z']['BOOL']

    def _decode(self, task_id: str, sk: str, body: tuple[bytes, bool]) -> Any:
        key = self._key(task_id, sk)
        return codec.decode_event(unpack(body[0], compressed=body[1], key=key), key=key)

    async def _query(
        self, task_id: str, low: str, high: str, *, live: bool = True
    ) -> list[dict[str, Any]]:
        """The event items of `task_id` with keys in ``[low, high]``.

        DynamoDB deletes expired items only eventually (moto never does), so
        expired ones are dropped unless `live` is false.
        """
        kwargs: dict[str, Any] = {
            'TableName': self.table_name,
            'KeyConditionExpression': 'pk = :pk AND sk BETWEEN :lo AND :hi',
            'ExpressionAttributeValues': {
                ':pk': {'S': items.task_pk(task_id)},
                ':lo': {'S': low},
                ':hi': {'S': high},
            },
            'ConsistentRead': True,
        }
        found: list[dict[str, Any]] = []
        now = self._clock()
        while True:
            page = await self._db.query(**kwargs)
            found.extend(
                item
                for item in page.get('Items', [])
                if not live
                or items.TTL_ATTRIBUTE not in item
                or int(item[items.TTL_ATTRIBUTE]['N']) > now
            )
            if 'LastEvaluatedKey' not in page:
                return found
            kwargs['ExclusiveStartKey'] = page['LastEvaluatedKey']

    def _kick(self, feed: _Feed) -> None:
        """Reads the log of `feed` now, or again after the read in flight."""
        if feed.fetching is not None and not feed.fetching.done():
            feed.dirty = True
            return
        feed.fetching = asyncio.create_task(
            self._fetch_loop(feed), name=f'a2a-scale-fetch-{feed.task_id[:40]}'
        )

    async def _fetch_loop(self, feed: _Feed) -> None:
        while feed.cursors:
            feed.dirty = False
            try:
                await self._fetch(feed)
            except Exception as e:
                if self._stopped:
                    return  # the clients are closing: nothing to retry on
                logger.warning(
                    'Reading the event log of task %s failed (%s); retrying',
                    feed.task_id,
                    error_code(e) or type(e).__name__,
                )
                await asyncio.sleep(_RETRY_DELAY_S)
                feed.dirty = True
            if not feed.dirty:
                return

    async def _fetch(self, feed: _Feed) -> None:
        lowest = min(feed.cursors.values())
        if feed.floor is None or lowest < feed.floor:
            feed.floor = feed.head = lowest
            feed.keys.clear()
            feed.bodies.clear()
        logged = await self._query(
            feed.task_id, items.successor(feed.head), items.EVENT_END
        )
        for item in logged:
            sk = item[items.SK]['S']
            if sk > feed.head:
                feed.keys.append(sk)
                feed.bodies.append(self._body(item))
                feed.head = sk
        if feed.cursors:
            floor = min(*feed.cursors.values(), feed.head)
            if floor > feed.floor:
                drop = bisect.bisect_right(feed.keys, floor)
                del feed.keys[:drop]
                del feed.bodies[:drop]
                feed.floor = floor
        feed.pulse()

    # -- the receive loop -----------------------------------------------------

    @property
    def queue_url(self) -> str | None:
        """The queue this replica reads, once started."""
        return self._queue_url

    def start(self, queue_url: str) -> None:
        """Starts the receive loop on this replica's queue."""
        self._queue_url = queue_url
        self._stopped = False
        self.queue_lost = False
        if self._receiver is None or self._receiver.done():
            self._receiver = asyncio.create_task(
                self._receive_loop(), name='a2a-scale-sqs-receive'
            )

    async def stop(self) -> None:
        """Stops the receive loop and deletes what it has received."""
        self._stopped = True
        receiver, self._receiver = self._receiver, None
        if receiver is not None:
            receiver.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await receiver
        flush, self._delete_flush = self._delete_flush, None
        if flush is not None:
            flush.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await flush
        await self._flush_deletes()

    async def _receive_loop(self) -> None:
        while True:
            try:
                response = await self._sqs.receive_message(
                    QueueUrl=self._queue_url,
                    MaxNumberOfMessages=_BATCH,
                    WaitTimeSeconds=self._wait,
                )
            except asyncio.CancelledError:
                raise
            except Exception as e:
                code = error_code(e)
                if code in (
                    'AWS.SimpleQueueService.NonExistentQueue',
                    'QueueDoesNotExist',
                ):
                    self.queue_lost = True
                logger.warning(
                    'Receiving doorbells failed (%s); retrying',
                    code or type(e).__name__,
                )
                await asyncio.sleep(_RETRY_DELAY_S)
                continue
            messages = response.get('Messages', [])
            self.on_messages(messages)
            if 0 < len(messages) < _BATCH and self._linger > 0:
                await asyncio.sleep(self._linger)

    def on_messages(self, messages: list[dict[str, Any]]) -> None:
        """Handles received doorbells: wakes local feeds, queues deletes."""
        for message in messages:
            parsed = parse_doorbell(message.get('Body', ''))
            if parsed is None:
                logger.warning('Dropped a message that is not a doorbell')
            else:
                feed = self._feeds.get(parsed[0])
                if feed is not None:
                    self._kick(feed)
            if 'ReceiptHandle' in message:
                self._deletes.append(message['ReceiptHandle'])
        if len(self._deletes) >= _BATCH:
            asyncio.create_task(self._flush_deletes())  # noqa: RUF006
        elif self._deletes and (
            self._delete_flush is None or self._delete_flush.done()
        ):
            self._delete_flush = asyncio.create_task(self._flush_later())

    async def _flush_later(self) -> None:
        await asyncio.sleep(_DELETE_DELAY_S)
        await self._flush_deletes()

    async def _flush_deletes(self) -> None:
        while self._deletes and self._queue_url is not None:
            handles, self._deletes = self._deletes[:_BATCH], self._deletes[_BATCH:]
            try:
                await self._sqs.delete_message_batch(
                    QueueUrl=self._queue_url,
                    Entries=[
                        {'Id': str(i), 'ReceiptHandle': h}
                        for i, h in enumerate(handles)
                    ],
                )
            except Exception as e:
                logger.debug('Deleting doorbells failed (%s)', error_code(e) or e)
                return
