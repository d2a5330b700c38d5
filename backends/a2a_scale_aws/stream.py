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
import itertools
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncGenerator, Callable
from typing import Any

from a2a.server.cluster import (
    ConcurrentTaskModificationError,
    TaskEventStream,
    TaskVersion,
    VersionedEvent,
)

from a2a_scale import EventGapError, codec, telemetry
from a2a_scale.tasks import version_int
from a2a_scale_aws import items
from a2a_scale_aws.errors import error_code
from a2a_scale_aws.feeds import Feed, doorbell, parse_doorbell
from a2a_scale_aws.feeds import digest as event_digest
from a2a_scale_aws.payloads import check_payload, check_task_id, pack, unpack
from a2a_scale_aws.receiver import SqsDoorbellReceiver

logger = logging.getLogger(__name__)

_RETRY_DELAY_S = 1.0
_RECENT_SAVES = 4096
_APPEND_ATTEMPTS = 8


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
        self.table_name = table_name
        self.topic_arn = topic_arn
        self._resync = resync_interval
        self._retention = retention_seconds
        self._threshold = compress_threshold
        self._clock = clock
        self._recent: OrderedDict[tuple[str, int], bytes] = OrderedDict()
        self._feeds: dict[str, Feed] = {}
        self._ids = itertools.count(1)
        self._doorbells = SqsDoorbellReceiver(
            sqs,
            self._on_batch,
            wait_seconds=receive_wait_seconds,
            linger=receive_linger,
        )

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
        digest = event_digest(data)
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
            self._remember(task_id, version, event_digest(data))
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
            feed = self._feeds[task_id] = Feed(task_id)
        sid = next(self._ids)
        feed.cursors[sid] = cursor
        generation = feed.generation
        position = version_int(after)
        try:
            self._kick(feed)
            while True:
                changed = feed.changed
                if feed.generation != generation:
                    raise EventGapError(
                        task_id,
                        position=position,
                        reason='the task was deleted and its id reused',
                    )
                if feed.floor is not None and feed.floor <= cursor:
                    start = bisect.bisect_right(feed.keys, cursor)
                    batch = list(
                        zip(feed.keys[start:], feed.bodies[start:], strict=True)
                    )
                    for sk, body in batch:
                        event = self._decode(task_id, sk, body)
                        cursor = feed.cursors[sid] = sk
                        position = items.version_of_event_sk(sk)
                        yield VersionedEvent(event=event, version=TaskVersion(position))
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

    def _kick(self, feed: Feed) -> None:
        """Reads the log of `feed` now, or again after the read in flight."""
        if feed.fetching is not None and not feed.fetching.done():
            feed.dirty = True
            return
        feed.fetching = asyncio.create_task(
            self._fetch_loop(feed), name=f'a2a-scale-fetch-{feed.task_id[:40]}'
        )

    async def _fetch_loop(self, feed: Feed) -> None:
        while feed.cursors:
            feed.dirty = False
            try:
                await self._fetch(feed)
            except Exception as e:
                if self._doorbells.stopped:
                    return  # the clients are closing: nothing to retry on
                logger.warning(
                    'Reading the event log of task %s failed (%s); retrying',
                    feed.task_id,
                    error_code(e) or type(e).__name__,
                )
                telemetry.count_retry('aws', 'stream')
                await asyncio.sleep(_RETRY_DELAY_S)
                feed.dirty = True
            if not feed.dirty:
                return

    async def _fetch(self, feed: Feed) -> None:
        lowest = min(feed.cursors.values())
        if feed.floor is None or lowest < feed.floor:
            feed.floor = feed.head = lowest
            feed.keys.clear()
            feed.bodies.clear()
        # Read from the newest item already held, inclusive: if it is gone,
        # or a new task under the same id wrote another item at its key, the
        # log was deleted under the feed (one item more per read, no extra
        # call).
        check = feed.last_item is not None and feed.last_item == feed.head
        low = feed.head if check else items.successor(feed.head)
        logged = await self._query(feed.task_id, low, items.EVENT_END)
        if check:
            if (
                not logged
                or logged[0][items.SK]['S'] != feed.head
                or self._body(logged[0]) != feed.last_body
            ):
                self._reset(feed)
                return
            logged = logged[1:]
        for item in logged:
            sk = item[items.SK]['S']
            if sk > feed.head:
                feed.keys.append(sk)
                feed.bodies.append(self._body(item))
                feed.head = feed.last_item = sk
                feed.last_body = feed.bodies[-1]
        if feed.cursors:
            floor = min(*feed.cursors.values(), feed.head)
            if floor > feed.floor:
                drop = bisect.bisect_right(feed.keys, floor)
                del feed.keys[:drop]
                del feed.bodies[:drop]
                feed.floor = floor
        feed.pulse()

    @staticmethod
    def _reset(feed: Feed) -> None:
        """Forgets a deleted log: its subscribers get `EventGapError`."""
        logger.info(
            'The event log of task %s was deleted under its subscribers',
            feed.task_id,
        )
        feed.generation += 1
        feed.floor, feed.head, feed.last_item = None, items.EVENT_PREFIX, None
        feed.last_body = None
        feed.keys.clear()
        feed.bodies.clear()
        feed.dirty = True
        feed.pulse()

    # -- the receive loop -----------------------------------------------------

    def use_clients(self, dynamodb: Any, sns: Any, sqs: Any) -> None:
        """Switches to newly opened clients (before `start`)."""
        self._db, self._sns = dynamodb, sns
        self._doorbells.sqs = sqs

    @property
    def queue_url(self) -> str | None:
        """The queue this replica reads, once started."""
        return self._doorbells.queue_url

    @property
    def queue_lost(self) -> bool:
        """Whether SQS said this replica's queue no longer exists."""
        return self._doorbells.queue_lost

    def start(self, queue_url: str) -> None:
        """Starts the receive loop on this replica's queue."""
        self._doorbells.start(queue_url)

    async def stop(self) -> None:
        """Stops the receive loop and deletes what it has received."""
        await self._doorbells.stop()

    def _on_batch(self, messages: list[dict[str, Any]]) -> None:
        # Late-bound, so a test can wrap `on_messages` on the instance.
        self.on_messages(messages)

    def on_messages(self, messages: list[dict[str, Any]]) -> None:
        """Handles received doorbells: wakes local feeds, queues deletes."""
        handles = []
        for message in messages:
            parsed = parse_doorbell(message.get('Body', ''))
            if parsed is None:
                logger.warning('Dropped a message that is not a doorbell')
            else:
                feed = self._feeds.get(parsed[0])
                if feed is not None:
                    self._kick(feed)
            if 'ReceiptHandle' in message:
                handles.append(message['ReceiptHandle'])
        self._doorbells.delete(handles)
