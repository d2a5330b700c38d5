"""Idempotent creation of the table, its indexes, TTL and the topic."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from a2a_scale_aws import items
from a2a_scale_aws.clients import AWSClients
from a2a_scale_aws.errors import ResourceMissingError, error_code
from a2a_scale_aws.names import TAG_NAMESPACE, ResourceNames

logger = logging.getLogger(__name__)

_ACTIVE_TIMEOUT_S = 120.0
_GONE = ('AWS.SimpleQueueService.NonExistentQueue', 'QueueDoesNotExist')


def _index(name: str, pk: str, sk: str) -> dict[str, Any]:
    return {
        'IndexName': name,
        'KeySchema': [
            {'AttributeName': pk, 'KeyType': 'HASH'},
            {'AttributeName': sk, 'KeyType': 'RANGE'},
        ],
        'Projection': {'ProjectionType': 'ALL'},
    }


def table_definition(table_name: str) -> dict[str, Any]:
    """The ``CreateTable`` arguments of the namespace's table (on demand)."""
    attributes = (
        items.PK,
        items.SK,
        items.GSI1_PK,
        items.GSI1_SK,
        items.GSI2_PK,
        items.GSI2_SK,
        items.GSI3_PK,
        items.GSI3_SK,
    )
    return {
        'TableName': table_name,
        'BillingMode': 'PAY_PER_REQUEST',
        'AttributeDefinitions': [
            {'AttributeName': a, 'AttributeType': 'S'} for a in attributes
        ],
        'KeySchema': [
            {'AttributeName': items.PK, 'KeyType': 'HASH'},
            {'AttributeName': items.SK, 'KeyType': 'RANGE'},
        ],
        'GlobalSecondaryIndexes': [
            _index(items.BY_OWNER, items.GSI1_PK, items.GSI1_SK),
            _index(items.BY_CONTEXT, items.GSI2_PK, items.GSI2_SK),
            _index(items.BY_REPLICA, items.GSI3_PK, items.GSI3_SK),
        ],
        'Tags': [{'Key': 'a2a-scale:table', 'Value': 'tasks'}],
    }


@dataclass
class ProvisionReport:
    """What `provision` created and what already existed."""

    created: list[str] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)
    topic_arn: str = ''


async def _wait_active(clients: AWSClients, table: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + _ACTIVE_TIMEOUT_S
    while True:
        described = await clients.dynamodb.describe_table(TableName=table)
        status = described['Table'].get('TableStatus')
        indexes = described['Table'].get('GlobalSecondaryIndexes', [])
        if status == 'ACTIVE' and all(
            i.get('IndexStatus', 'ACTIVE') == 'ACTIVE' for i in indexes
        ):
            return
        if loop.time() > deadline:
            raise ResourceMissingError(
                f'Table {table!r} is not ACTIVE after {_ACTIVE_TIMEOUT_S:.0f} s '
                f'(status {status})'
            )
        await asyncio.sleep(1.0)


async def _ensure_indexes(
    clients: AWSClients, table: str, report: ProvisionReport
) -> None:
    """Adds the indexes an existing table lacks (made by an older version)."""
    described = await clients.dynamodb.describe_table(TableName=table)
    present = described['Table'].get('GlobalSecondaryIndexes', [])
    names = {i['IndexName'] for i in present}
    keys = {items.PK, items.SK} | {
        k['AttributeName'] for i in present for k in i['KeySchema']
    }
    for index in table_definition(table)['GlobalSecondaryIndexes']:
        if index['IndexName'] in names:
            continue
        keys |= {k['AttributeName'] for k in index['KeySchema']}
        # One index per call; DynamoDB then backfills it (ACTIVE when done).
        await clients.dynamodb.update_table(
            TableName=table,
            AttributeDefinitions=[
                {'AttributeName': k, 'AttributeType': 'S'} for k in sorted(keys)
            ],
            GlobalSecondaryIndexUpdates=[{'Create': index}],
        )
        report.created.append(f'index {table}.{index["IndexName"]}')
        await _wait_active(clients, table)


async def ensure_table(
    clients: AWSClients, table: str, report: ProvisionReport
) -> None:
    """Creates the table and its indexes unless they exist; waits until ACTIVE."""
    try:
        await clients.dynamodb.create_table(**table_definition(table))
        report.created.append(f'table {table}')
    except Exception as e:
        if error_code(e) != 'ResourceInUseException':
            raise
        report.existing.append(f'table {table}')
        await _wait_active(clients, table)
        await _ensure_indexes(clients, table, report)
    else:
        await _wait_active(clients, table)
    ttl = await clients.dynamodb.describe_time_to_live(TableName=table)
    status = ttl.get('TimeToLiveDescription', {}).get('TimeToLiveStatus')
    if status in ('ENABLED', 'ENABLING'):
        report.existing.append(f'TTL on {table}.{items.TTL_ATTRIBUTE}')
        return
    await clients.dynamodb.update_time_to_live(
        TableName=table,
        TimeToLiveSpecification={
            'Enabled': True,
            'AttributeName': items.TTL_ATTRIBUTE,
        },
    )
    report.created.append(f'TTL on {table}.{items.TTL_ATTRIBUTE}')


async def ensure_topic(clients: AWSClients, topic: str, report: ProvisionReport) -> str:
    """Creates the topic (``CreateTopic`` is idempotent); returns its ARN."""
    response = await clients.sns.create_topic(
        Name=topic, Tags=[{'Key': 'a2a-scale:topic', 'Value': 'events'}]
    )
    report.created.append(f'topic {topic}')
    return str(response['TopicArn'])


async def provision(clients: AWSClients, names: ResourceNames) -> ProvisionReport:
    """Creates whatever of the table, indexes, TTL and topic is missing."""
    report = ProvisionReport()
    await ensure_table(clients, names.table, report)
    report.topic_arn = await ensure_topic(clients, names.topic, report)
    logger.info('Provisioned namespace %r: %s', names.namespace, report.created)
    return report


async def check_table(clients: AWSClients, table: str) -> None:
    """Raises `ResourceMissingError` if the table or one of its indexes is missing."""
    fix = 'run "a2a-scale aws provision" or set A2A_SCALE_AWS_CREATE_RESOURCES=true'
    try:
        described = await clients.dynamodb.describe_table(TableName=table)
    except Exception as e:
        if error_code(e) == 'ResourceNotFoundException':
            raise ResourceMissingError(
                f'DynamoDB table {table!r} does not exist: {fix}'
            ) from None
        raise
    present = {
        i['IndexName'] for i in described['Table'].get('GlobalSecondaryIndexes', [])
    }
    for index in table_definition(table)['GlobalSecondaryIndexes']:
        if index['IndexName'] not in present:
            raise ResourceMissingError(
                f'DynamoDB table {table!r} has no index {index["IndexName"]!r} '
                f'(added by a newer a2a-scale): {fix}'
            )


async def deprovision(
    clients: AWSClients, names: ResourceNames, topic_arn: str
) -> list[str]:
    """Deletes the namespace's leftover replica queues, its topic and its table.

    Every task, event and push config of the namespace goes with the table.
    Returns one line per deleted resource; resources already gone are skipped.
    """
    deleted: list[str] = []
    pages = await clients.sqs.list_queues(QueueNamePrefix=names.queue_prefix)
    for url in pages.get('QueueUrls', []):
        try:
            tags = (await clients.sqs.list_queue_tags(QueueUrl=url)).get('Tags', {})
            if tags.get(TAG_NAMESPACE) != names.namespace:
                continue  # another namespace whose name extends this one
            await clients.sqs.delete_queue(QueueUrl=url)
            deleted.append(f'queue {url.rsplit("/", 1)[-1]}')
        except Exception as e:
            if error_code(e) not in _GONE:
                raise
    subscriptions = await clients.sns.list_subscriptions_by_topic(TopicArn=topic_arn)
    for subscription in subscriptions.get('Subscriptions', []):
        await clients.sns.unsubscribe(SubscriptionArn=subscription['SubscriptionArn'])
    await clients.sns.delete_topic(TopicArn=topic_arn)
    deleted.append(f'topic {names.topic}')
    try:
        await clients.dynamodb.delete_table(TableName=names.table)
        deleted.append(f'table {names.table}')
    except Exception as e:
        if error_code(e) != 'ResourceNotFoundException':
            raise
    logger.info('Deleted the resources of namespace %r: %s', names.namespace, deleted)
    return deleted


@dataclass(frozen=True)
class TaskCount:
    """How many tasks a table holds, and whether the count finished in time."""

    count: int
    complete: bool


async def count_tasks(clients: AWSClients, table: str, *, budget: float) -> TaskCount:
    """Counts the task items of `table`, scanning for at most `budget` s.

    A scan reads the whole table: this serves ``a2a-scale check``, never a
    request path.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + budget
    count = 0
    kwargs: dict[str, Any] = {
        'TableName': table,
        'Select': 'COUNT',
        'FilterExpression': '#sk = :task',
        'ExpressionAttributeNames': {'#sk': items.SK},
        'ExpressionAttributeValues': {':task': {'S': items.TASK_SK}},
    }
    while True:
        page = await clients.dynamodb.scan(**kwargs)
        count += int(page.get('Count', 0))
        if 'LastEvaluatedKey' not in page:
            return TaskCount(count, complete=True)
        if loop.time() > deadline:
            return TaskCount(count, complete=False)
        kwargs['ExclusiveStartKey'] = page['LastEvaluatedKey']
