import json

import boto3
import pytest
from typer.testing import CliRunner

from a2a_scale.cli import build_app
from a2a_scale_aws import items
from a2a_scale_aws.names import TAG_INSTANCE, TAG_NAMESPACE, ResourceNames

pytestmark = pytest.mark.aws

runner = CliRunner()


@pytest.fixture
def env(aws_env: dict[str, str], namespace: str) -> dict[str, str]:
    return {**aws_env, 'A2A_SCALE_NAMESPACE': namespace, 'COLUMNS': '200'}


def test_provision_is_idempotent(env: dict[str, str], namespace: str) -> None:
    cli = build_app()
    first = runner.invoke(cli, ['aws', 'provision'], env=env)
    assert first.exit_code == 0, first.output
    assert f'created  table {namespace}-a2a-scale' in first.output
    second = runner.invoke(cli, ['aws', 'provision'], env=env)
    assert second.exit_code == 0, second.output
    assert f'exists   table {namespace}-a2a-scale' in second.output
    assert 'exists   TTL' in second.output
    dynamodb = boto3.client('dynamodb', region_name='us-east-1')
    table = dynamodb.describe_table(TableName=f'{namespace}-a2a-scale')['Table']
    assert {i['IndexName'] for i in table['GlobalSecondaryIndexes']} == {
        items.BY_OWNER,
        items.BY_CONTEXT,
    }
    ttl = dynamodb.describe_time_to_live(TableName=f'{namespace}-a2a-scale')
    assert ttl['TimeToLiveDescription']['AttributeName'] == items.TTL_ATTRIBUTE


def test_policy_uses_the_caller_account(env: dict[str, str], namespace: str) -> None:
    result = runner.invoke(build_app(), ['aws', 'policy'], env=env)
    assert result.exit_code == 0, result.output
    policy = json.loads(result.output)
    topic = policy['Statement'][1]['Resource']
    assert topic == f'arn:aws:sns:us-east-1:123456789012:{namespace}-a2a-scale-events'


def test_reap_removes_a_dead_replica_queue(env: dict[str, str], namespace: str) -> None:
    cli = build_app()
    assert runner.invoke(cli, ['aws', 'provision'], env=env).exit_code == 0
    names = ResourceNames(namespace)
    sqs = boto3.client('sqs', region_name='us-east-1')
    sns = boto3.client('sns', region_name='us-east-1')
    dynamodb = boto3.client('dynamodb', region_name='us-east-1')
    url = sqs.create_queue(
        QueueName=names.queue('ghost'),
        tags={TAG_NAMESPACE: namespace, TAG_INSTANCE: 'ghost'},
    )['QueueUrl']
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=['QueueArn'])[
        'Attributes'
    ]['QueueArn']
    topic = f'arn:aws:sns:us-east-1:123456789012:{names.topic}'
    sns.subscribe(TopicArn=topic, Protocol='sqs', Endpoint=arn)
    dynamodb.put_item(
        TableName=names.table,
        Item={
            'pk': {'S': items.replica_pk('ghost')},
            'sk': {'S': items.REPLICA_SK},
            'hb': {'N': '1000'},
        },
    )
    result = runner.invoke(cli, ['aws', 'reap', '--older-than', '60'], env=env)
    assert result.exit_code == 0, result.output
    assert 'reaped   ghost' in result.output
    assert url not in sqs.list_queues(QueueNamePrefix=names.queue_prefix).get(
        'QueueUrls', []
    )
    endpoints = [
        s['Endpoint']
        for s in sns.list_subscriptions_by_topic(TopicArn=topic)['Subscriptions']
    ]
    assert arn not in endpoints


def test_missing_topic_is_a_clear_error(env: dict[str, str]) -> None:
    result = runner.invoke(build_app(), ['aws', 'reap'], env=env)
    assert result.exit_code == 1
    assert 'a2a-scale aws provision' in result.output
    assert 'Traceback' not in result.output
