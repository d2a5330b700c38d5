"""`SqsQueueLifecycle`: this replica's queue, its heartbeat, and the reaper."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from a2a_scale import QueueLifecycle, telemetry
from a2a_scale_aws import items
from a2a_scale_aws.clients import AWSClients
from a2a_scale_aws.errors import AWSBackendError, error_code
from a2a_scale_aws.names import TAG_INSTANCE, TAG_NAMESPACE, ResourceNames, parse_arn
from a2a_scale_aws.policy import queue_policy_json
from a2a_scale_aws.stream import SnsSqsEventStream

logger = logging.getLogger(__name__)

_GONE = frozenset(
    {
        'AWS.SimpleQueueService.NonExistentQueue',
        'QueueDoesNotExist',
        'NotFound',
        'NotFoundException',
        'ResourceNotFoundException',
    }
)
# Doorbells are useless after a few minutes: keep queues small.
_QUEUE_ATTRIBUTES = {'MessageRetentionPeriod': '300', 'VisibilityTimeout': '30'}
_BATCH_GET = 100


def heartbeat_value(now: float) -> str:
    """A heartbeat time as stored: seconds, to the millisecond."""
    return f'{now:.3f}'


def _ignore_gone(error: Exception) -> None:
    if error_code(error) not in _GONE:
        raise error


class SqsQueueLifecycle(QueueLifecycle):
    """Creates, keeps alive and removes the SQS queue of each replica.

    At start the replica records a heartbeat, creates its tagged queue with a
    policy that lets only the namespace's topic send to it, subscribes it to
    the topic (raw delivery) and starts the stream's receive loop. At stop it
    unsubscribes first, then deletes the queue. Any live replica reaps the
    queues of replicas whose heartbeat is older than ``older_than``.
    """

    def __init__(
        self,
        clients: AWSClients,
        names: ResourceNames,
        *,
        instance_id: str,
        topic_arn: str,
        stream: SnsSqsEventStream,
        heartbeat_ttl: float = 3600.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Initializes the lifecycle; no I/O until `provision`."""
        self._clients = clients
        self._names = names
        self._instance_id = instance_id
        self.topic_arn = parse_arn(topic_arn, service='sns')
        self._stream = stream
        self._ttl = heartbeat_ttl
        self._clock = clock
        self.queue_name = names.queue(instance_id)
        self.queue_url: str | None = None
        self.queue_arn: str | None = None
        self.subscription_arn: str | None = None
        self._tags: dict[str, dict[str, str]] = {}

    @property
    def instance_id(self) -> str:
        """The id of this replica."""
        return self._instance_id

    def _replica_key(self, instance_id: str) -> dict[str, Any]:
        return {
            items.PK: {'S': items.replica_pk(instance_id)},
            items.SK: {'S': items.REPLICA_SK},
        }

    async def _record(self, **extra: str) -> None:
        now = self._clock()
        item: dict[str, Any] = {
            **self._replica_key(self._instance_id),
            'hb': {'N': heartbeat_value(now)},
            'q': {'S': self.queue_name},
            items.TTL_ATTRIBUTE: {'N': str(int(now + self._ttl))},
        }
        for name, value in extra.items():
            item[name] = {'S': value}
        await self._clients.dynamodb.put_item(TableName=self._names.table, Item=item)

    async def provision(self) -> None:
        """Creates, secures and subscribes this replica's queue; idempotent."""
        await self._record()
        topic = self.topic_arn
        arn = parse_arn(
            f'arn:{topic.partition}:sqs:{topic.region}:{topic.account}:'
            f'{self.queue_name}',
            service='sqs',
        )
        created = await self._clients.sqs.create_queue(
            QueueName=self.queue_name,
            Attributes={
                **_QUEUE_ATTRIBUTES,
                'Policy': queue_policy_json(
                    queue_arn=str(arn), topic_arn=str(self.topic_arn)
                ),
            },
            tags={
                TAG_NAMESPACE: self._names.namespace,
                TAG_INSTANCE: self._instance_id,
            },
        )
        self.queue_url = str(created['QueueUrl'])
        attributes = await self._clients.sqs.get_queue_attributes(
            QueueUrl=self.queue_url, AttributeNames=['QueueArn']
        )
        self.queue_arn = str(attributes['Attributes']['QueueArn'])
        if self.queue_arn != str(arn):
            raise AWSBackendError(
                f'Queue {self.queue_name!r} has ARN {self.queue_arn!r}, expected '
                f'{str(arn)!r}: the topic and queue must share region and account.'
            )
        subscribed = await self._clients.sns.subscribe(
            TopicArn=str(self.topic_arn),
            Protocol='sqs',
            Endpoint=self.queue_arn,
            Attributes={'RawMessageDelivery': 'true'},
            ReturnSubscriptionArn=True,
        )
        self.subscription_arn = str(subscribed['SubscriptionArn'])
        await self._record(
            url=self.queue_url, arn=self.queue_arn, sub=self.subscription_arn
        )
        self._stream.start(self.queue_url)
        logger.info(
            'Replica %s listens on queue %s', self._instance_id, self.queue_name
        )

    async def heartbeat(self) -> None:
        """Records liveness; re-creates the queue if it was reaped."""
        if self._stream.queue_lost:
            logger.warning(
                'Queue %s of replica %s is gone; creating it again',
                self.queue_name,
                self._instance_id,
            )
            await self.provision()
            return
        await self._clients.dynamodb.update_item(
            TableName=self._names.table,
            Key=self._replica_key(self._instance_id),
            UpdateExpression='SET hb = :now, #exp = :exp',
            ExpressionAttributeNames={'#exp': items.TTL_ATTRIBUTE},
            ExpressionAttributeValues={
                ':now': {'N': heartbeat_value(self._clock())},
                ':exp': {'N': str(int(self._clock() + self._ttl))},
            },
        )
        if self.queue_url is not None and telemetry.metrics_on():
            await self._observe_queue(self.queue_url)

    async def _observe_queue(self, url: str) -> None:
        """Sets the queue-depth gauge (one call per heartbeat, metrics on only)."""
        try:
            found = await self._clients.sqs.get_queue_attributes(
                QueueUrl=url, AttributeNames=['ApproximateNumberOfMessages']
            )
            depth = float(found['Attributes']['ApproximateNumberOfMessages'])
        except Exception as e:
            logger.debug('Reading the depth of queue %s failed (%s)', url, e)
            return
        telemetry.set_gauge(
            'a2a_scale.backend.queue_depth',
            depth,
            backend='aws',
            replica=self._instance_id,
        )

    async def teardown(self) -> None:
        """Stops receiving, unsubscribes, then deletes the queue; idempotent."""
        await self._stream.stop()
        await self._release(
            self._instance_id, self.queue_url, self.subscription_arn, self.queue_arn
        )
        self.queue_url = self.queue_arn = self.subscription_arn = None

    async def _release(
        self,
        instance_id: str,
        queue_url: str | None,
        subscription_arn: str | None,
        queue_arn: str | None,
    ) -> None:
        subscriptions = [subscription_arn] if subscription_arn else []
        if queue_arn and not subscriptions:
            subscriptions = await self._subscriptions_of(queue_arn)
        for arn in subscriptions:
            try:
                await self._clients.sns.unsubscribe(SubscriptionArn=arn)
            except Exception as e:
                _ignore_gone(e)
        if queue_url:
            try:
                await self._clients.sqs.delete_queue(QueueUrl=queue_url)
            except Exception as e:
                _ignore_gone(e)
        await self._clients.dynamodb.delete_item(
            TableName=self._names.table, Key=self._replica_key(instance_id)
        )

    async def _subscriptions_of(self, queue_arn: str) -> list[str]:
        found: list[str] = []
        kwargs: dict[str, Any] = {'TopicArn': str(self.topic_arn)}
        while True:
            page = await self._clients.sns.list_subscriptions_by_topic(**kwargs)
            found.extend(
                s['SubscriptionArn']
                for s in page.get('Subscriptions', [])
                if s.get('Endpoint') == queue_arn
                and s.get('SubscriptionArn', '').startswith('arn:')
            )
            if not page.get('NextToken'):
                return found
            kwargs['NextToken'] = page['NextToken']

    # -- reaping --------------------------------------------------------------

    async def _namespace_queues(self) -> dict[str, str]:
        """Maps the instance id of every queue of the namespace to its URL."""
        urls: list[str] = []
        kwargs: dict[str, Any] = {
            'QueueNamePrefix': self._names.queue_prefix,
            'MaxResults': 1000,
        }
        while True:
            page = await self._clients.sqs.list_queues(**kwargs)
            urls.extend(page.get('QueueUrls', []))
            if not page.get('NextToken'):
                break
            kwargs['NextToken'] = page['NextToken']
        found: dict[str, str] = {}
        for url in urls:
            tags = self._tags.get(url)
            if tags is None:
                try:
                    response = await self._clients.sqs.list_queue_tags(QueueUrl=url)
                except Exception as e:
                    _ignore_gone(e)
                    continue
                tags = self._tags[url] = response.get('Tags', {})
            if tags.get(TAG_NAMESPACE) == self._names.namespace and tags.get(
                TAG_INSTANCE
            ):
                found[tags[TAG_INSTANCE]] = url
        return found

    async def _heartbeats(self, instance_ids: list[str]) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        for start in range(0, len(instance_ids), _BATCH_GET):
            keys = [
                self._replica_key(i) for i in instance_ids[start : start + _BATCH_GET]
            ]
            request: dict[str, Any] = {
                self._names.table: {'Keys': keys, 'ConsistentRead': True}
            }
            while request:
                response = await self._clients.dynamodb.batch_get_item(
                    RequestItems=request
                )
                for item in response.get('Responses', {}).get(self._names.table, []):
                    found[item[items.PK]['S'][len('r#') :]] = item
                request = response.get('UnprocessedKeys') or {}
        return found

    async def live_instances(self, *, within: float) -> list[str]:
        """The replicas of the namespace with a heartbeat in the last `within` s."""
        queues = await self._namespace_queues()
        beats = await self._heartbeats(list(queues))
        now = self._clock()
        return sorted(
            instance_id
            for instance_id, item in beats.items()
            if now - float(item['hb']['N']) < within
        )

    async def reap(self, *, older_than: float) -> list[str]:
        """Unsubscribes, then deletes, the queues of dead replicas."""
        queues = await self._namespace_queues()
        queues.pop(self._instance_id, None)
        if not queues:
            return []
        beats = await self._heartbeats(list(queues))
        now = self._clock()
        reaped: list[str] = []
        for instance_id, url in sorted(queues.items()):
            item = beats.get(instance_id)
            if item is not None and now - float(item['hb']['N']) < older_than:
                continue
            try:
                attributes = await self._clients.sqs.get_queue_attributes(
                    QueueUrl=url, AttributeNames=['QueueArn', 'CreatedTimestamp']
                )
            except Exception as e:
                _ignore_gone(e)
                continue
            values = attributes.get('Attributes', {})
            if (
                item is None
                and now - int(values.get('CreatedTimestamp', now)) < older_than
            ):
                continue  # a replica that is starting up
            subscription = item.get('sub', {}).get('S') if item else None
            await self._release(instance_id, url, subscription, values.get('QueueArn'))
            self._tags.pop(url, None)
            reaped.append(instance_id)
            logger.info('Reaped the queue of dead replica %s', instance_id)
        return reaped
