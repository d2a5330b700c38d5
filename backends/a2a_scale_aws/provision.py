"""Idempotent creation of the table, its indexes, TTL and the topic."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from a2a_scale_aws import items
from a2a_scale_aws.clients import AWSClients
from a2a_scale_aws.errors import ResourceMissingError, error_code
from a2a_scale_aws.names import ResourceNames

logger = logging.getLogger(__name__)

_ACTIVE_TIMEOUT_S = 120.0


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


async def ensure_table(
    clients: AWSClients, table: str, report: ProvisionReport
) -> None:
    """Creates the table and its indexes unless it exists; waits until ACTIVE."""
    try:
        await clients.dynamodb.create_table(**table_definition(table))
        report.created.append(f'table {table}')
    except Exception as e:
        if error_code(e) != 'ResourceInUseException':
            raise
        report.existing.append(f'table {table}')
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
    """Raises `ResourceMissingError` naming the table if it does not exist."""
    try:
        await clients.dynamodb.describe_table(TableName=table)
    except Exception as e:
        if error_code(e) == 'ResourceNotFoundException':
            raise ResourceMissingError(
                f'DynamoDB table {table!r} does not exist: run '
                '"a2a-scale aws provision" or set A2A_SCALE_AWS_CREATE_RESOURCES=true'
            ) from None
        raise
