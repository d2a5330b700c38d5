import json

import boto3
import pytest
from typer.testing import CliRunner

from a2a_scale.cli import build_app
from a2a_scale.health import COMPONENTS
from a2a_scale_aws import items
from a2a_scale_aws.names import TAG_INSTANCE, TAG_NAMESPACE, ResourceNames
from cli_support import assert_one_line_error, run_cli

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
        items.BY_REPLICA,
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


def test_demo_without_its_resources_is_one_line_naming_them(
    aws_env: dict[str, str],
) -> None:
    run = run_cli('demo', env={**aws_env, 'A2A_SCALE_BACKEND': 'aws'})
    assert_one_line_error(
        run, 1, 'DynamoDB table', 'does not exist', 'A2A_SCALE_AWS_CREATE_RESOURCES'
    )


def test_check_reports_the_four_components_with_counts(env: dict[str, str]) -> None:
    cli = build_app()
    assert runner.invoke(cli, ['aws', 'provision'], env=env).exit_code == 0
    result = runner.invoke(cli, ['check', '--backend', 'aws'], env=env)
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert lines[0].startswith(f'backend aws at {env["AWS_ENDPOINT_URL"]}')
    assert [line.split()[0] for line in lines[1:]] == list(COMPONENTS)
    assert all(line.split()[1] == 'ok' for line in lines[1:])
    assert 'tasks=0' in lines[1]
    assert 'subscriptions=0' in lines[2]
    assert 'live=1' in lines[4]


@pytest.mark.slow
@pytest.mark.parametrize('keep', [False, True])
def test_demo_deletes_its_table_and_topic_unless_kept(
    aws_env: dict[str, str], keep: bool
) -> None:
    env = {
        **aws_env,
        'A2A_SCALE_BACKEND': 'aws',
        'A2A_SCALE_AWS_CREATE_RESOURCES': 'true',
        'A2A_SCALE_AWS_RECEIVE_WAIT_SECONDS': '1',
    }
    args = ['demo', '--quiet', '--replicas', '2'] + (['--keep'] if keep else [])
    run = run_cli(*args, env=env, timeout=300)
    assert run.code == 0, (run.stdout, run.stderr)
    assert 'Traceback' not in run.stderr
    names = ResourceNames(run.demo_namespace())
    tables = boto3.client('dynamodb', region_name='us-east-1').list_tables()
    topics = boto3.client('sns', region_name='us-east-1').list_topics()['Topics']
    queues = boto3.client('sqs', region_name='us-east-1').list_queues(
        QueueNamePrefix=names.queue_prefix
    )
    topic_names = {t['TopicArn'].rsplit(':', 1)[1] for t in topics}
    assert not queues.get('QueueUrls')  # replicas remove their own queues
    if keep:
        assert f"kept namespace '{names.namespace}'" in run.stdout
        assert names.table in tables['TableNames']
        assert names.topic in topic_names
    else:
        assert f'topic {names.topic}, table {names.table}' in run.stdout
        assert names.table not in tables['TableNames']
        assert names.topic not in topic_names
