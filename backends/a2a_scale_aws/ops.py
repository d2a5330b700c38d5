"""`AWSClusterView`: an operator's view of a namespace on DynamoDB, SNS and SQS."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, cast

from a2a_scale import codec
from a2a_scale.ops import ClusterView, FeedEvent, OperatorTask
from a2a_scale_aws import items
from a2a_scale_aws.errors import error_code
from a2a_scale_aws.feeds import parse_doorbell
from a2a_scale_aws.lifecycle import SqsQueueLifecycle
from a2a_scale_aws.payloads import unpack

if TYPE_CHECKING:
    from a2a_scale_aws.backend import AWSBackend
    from a2a_scale_aws.clients import AWSClients
    from a2a_scale_aws.stream import SnsSqsEventStream

logger = logging.getLogger(__name__)

TAIL_PREFIX = 'tail-'
"""The instance ids of the temporary replicas ``a2a-scale tail`` registers."""

_KNOWN_TASKS = 10_000
_BATCH = 10


class AWSClusterView(ClusterView):
    """Every task, replica and event of a namespace on AWS.

    Listing and the replica registry are ``Scan``s of the namespace table.
    Following events registers a temporary replica (``tail-<hex>``) with a
    doorbell queue of its own, subscribed to the namespace topic like any
    replica's: each doorbell names a task and version, whose events are then
    read from the DynamoDB log. The queue is deleted when the iteration
    ends; if the process dies, live replicas reap it like any dead one's.

    Args:
        backend: The connected backend (its clients, names and topic).
    """

    feed_source = 'the DynamoDB log, through a temporary doorbell queue'

    def __init__(self, backend: AWSBackend) -> None:
        super().__init__('aws', backend.settings.namespace)
        self._backend = backend

    @property
    def _clients(self) -> AWSClients:
        clients = self._backend.clients
        if clients is None:
            raise RuntimeError('the aws backend is not connected')
        return clients

    @property
    def _table(self) -> str:
        return self._backend.names.table

    async def _scan(self, sk: str) -> list[dict[str, Any]]:
        kwargs: dict[str, Any] = {
            'TableName': self._table,
            'FilterExpression': 'sk = :sk',
            'ExpressionAttributeValues': {':sk': {'S': sk}},
            'ConsistentRead': True,
        }
        found: list[dict[str, Any]] = []
        now = time.time()
        while True:
            page = await self._clients.dynamodb.scan(**kwargs)
            found += [i for i in page.get('Items', []) if not _expired(i, now)]
            if 'LastEvaluatedKey' not in page:
                return found
            kwargs['ExclusiveStartKey'] = page['LastEvaluatedKey']

    def _task(self, item: dict[str, Any]) -> OperatorTask:
        key = f'{self._table}/{item[items.PK]["S"]}/{item[items.SK]["S"]}'
        data = unpack(item['b']['B'], compressed=_compressed(item), key=key)
        return OperatorTask(
            codec.decode_task(data, key=key), item['o']['S'], int(item['v']['N'])
        )

    async def all_tasks(self) -> list[OperatorTask]:
        """Every stored task of the namespace (scans the table)."""
        return [self._task(i) for i in await self._scan(items.TASK_SK)]

    async def find_task(self, task_id: str) -> OperatorTask | None:
        """The task with `task_id`, whoever owns it, or `None`."""
        reply = await self._clients.dynamodb.get_item(
            TableName=self._table,
            Key={
                items.PK: {'S': items.task_pk(task_id)},
                items.SK: {'S': items.TASK_SK},
            },
            ConsistentRead=True,
        )
        item = reply.get('Item')
        if item is None or _expired(item, time.time()):
            return None
        return self._task(item)

    async def heartbeats(self) -> dict[str, float]:
        """Each registered replica's last heartbeat (its registry item)."""
        return {
            i[items.PK]['S'][len('r#') :]: float(i['hb']['N'])
            for i in await self._scan(items.REPLICA_SK)
            if 'hb' in i
        }

    async def events(self) -> AsyncIterator[FeedEvent]:
        """Yields every event saved in the namespace from now on."""
        backend = self._backend
        reader = _DoorbellReader(self._clients)
        lifecycle = SqsQueueLifecycle(
            self._clients,
            backend.names,
            instance_id=f'{TAIL_PREFIX}{uuid.uuid4().hex[:12]}',
            topic_arn=str(backend.event_stream.topic_arn),
            stream=cast('SnsSqsEventStream', reader),
            heartbeat_ttl=max(3600.0, 10 * backend.settings.reap_after),
        )
        beat = asyncio.create_task(
            self._beat(lifecycle), name='a2a-scale-tail-heartbeat'
        )
        last: OrderedDict[str, str] = OrderedDict()
        try:
            await lifecycle.provision()
            while True:
                task_id, version, sent_at = await reader.queue.get()
                for event in await self._read(task_id, version, sent_at, last):
                    yield event
        finally:
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beat
            await lifecycle.teardown()

    async def _beat(self, lifecycle: SqsQueueLifecycle) -> None:
        while True:
            await asyncio.sleep(self._backend.settings.heartbeat_interval)
            try:
                await lifecycle.heartbeat()
            except Exception as e:
                logger.warning('Tail heartbeat failed (%s)', error_code(e) or e)

    async def _read(
        self, task_id: str, version: int, sent_at: float | None, last: dict[str, str]
    ) -> list[FeedEvent]:
        """The events of `task_id` after the last one seen (from `version`)."""
        seen = last.get(task_id)
        low = items.successor(seen) if seen else items.after_version(version - 1)
        kwargs: dict[str, Any] = {
            'TableName': self._table,
            'KeyConditionExpression': 'pk = :pk AND sk BETWEEN :lo AND :hi',
            'ExpressionAttributeValues': {
                ':pk': {'S': items.task_pk(task_id)},
                ':lo': {'S': low},
                ':hi': {'S': items.EVENT_END},
            },
            'ConsistentRead': True,
        }
        found: list[FeedEvent] = []
        while True:
            page = await self._clients.dynamodb.query(**kwargs)
            for item in page.get('Items', []):
                sk = item[items.SK]['S']
                key = f'{self._table}/{items.task_pk(task_id)}/{sk}'
                data = unpack(item['b']['B'], compressed=_compressed(item), key=key)
                found.append(
                    FeedEvent(
                        task_id,
                        items.version_of_event_sk(sk),
                        codec.decode_event(data, key=key),
                        sent_at,
                    )
                )
                last[task_id] = sk
            if 'LastEvaluatedKey' not in page:
                break
            kwargs['ExclusiveStartKey'] = page['LastEvaluatedKey']
        if isinstance(last, OrderedDict) and task_id in last:
            last.move_to_end(task_id)
            while len(last) > _KNOWN_TASKS:
                last.popitem(last=False)
        return found


class _DoorbellReader:
    """Reads a temporary queue's doorbells; the stream side of its lifecycle."""

    def __init__(self, clients: AWSClients) -> None:
        self._sqs = clients.sqs
        self.queue: asyncio.Queue[tuple[str, int, float | None]] = asyncio.Queue()
        self.queue_lost = False
        self._url: str | None = None
        self._loop: asyncio.Task[None] | None = None

    def start(self, queue_url: str) -> None:
        """Starts receiving from `queue_url`."""
        self._url = queue_url
        self.queue_lost = False
        if self._loop is None or self._loop.done():
            self._loop = asyncio.create_task(self._receive(), name='a2a-scale-tail')

    async def stop(self) -> None:
        """Stops receiving."""
        loop, self._loop = self._loop, None
        if loop is not None:
            loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loop

    async def _receive(self) -> None:
        while True:
            try:
                reply = await self._sqs.receive_message(
                    QueueUrl=self._url,
                    MaxNumberOfMessages=_BATCH,
                    WaitTimeSeconds=10,
                    AttributeNames=['SentTimestamp'],
                )
                messages = reply.get('Messages', [])
                for message in messages:
                    parsed = parse_doorbell(message.get('Body', ''))
                    sent = message.get('Attributes', {}).get('SentTimestamp')
                    if parsed is not None:
                        at = int(sent) / 1000 if sent else None
                        self.queue.put_nowait((parsed[0], parsed[1], at))
                if messages:
                    await self._sqs.delete_message_batch(
                        QueueUrl=self._url,
                        Entries=[
                            {'Id': str(i), 'ReceiptHandle': m['ReceiptHandle']}
                            for i, m in enumerate(messages)
                        ],
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
                logger.warning('Receiving doorbells failed (%s)', code or e)
                await asyncio.sleep(1.0)


def _expired(item: dict[str, Any], now: float) -> bool:
    exp = item.get(items.TTL_ATTRIBUTE)
    return exp is not None and int(exp['N']) <= now


def _compressed(item: dict[str, Any]) -> bool:
    return 'z' in item and bool(item['z']['BOOL'])
