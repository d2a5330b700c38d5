import json

import pytest

from a2a_scale import ConfigurationError
from a2a_scale_aws.names import MAX_QUEUE_NAME, ResourceNames, parse_arn
from a2a_scale_aws.policy import (
    application_policy,
    application_policy_json,
    queue_policy,
    queue_policy_json,
)

QUEUE = 'arn:aws:sqs:eu-west-1:123456789012:app-a2a-replica-pod-1'
TOPIC = 'arn:aws:sns:eu-west-1:123456789012:app-a2a-scale-events'


def test_queue_policy_is_exact() -> None:
    assert queue_policy(queue_arn=QUEUE, topic_arn=TOPIC) == {
        'Version': '2012-10-17',
        'Id': f'{QUEUE}/a2a-scale',
        'Statement': [
            {
                'Sid': 'AllowNamespaceTopicToSend',
                'Effect': 'Allow',
                'Principal': {'Service': 'sns.amazonaws.com'},
                'Action': 'sqs:SendMessage',
                'Resource': QUEUE,
                'Condition': {'ArnEquals': {'aws:SourceArn': TOPIC}},
            }
        ],
    }


def test_queue_policy_json_round_trips() -> None:
    text = queue_policy_json(queue_arn=QUEUE, topic_arn=TOPIC)
    assert json.loads(text) == queue_policy(queue_arn=QUEUE, topic_arn=TOPIC)


@pytest.mark.parametrize(
    'topic',
    [
        '*',
        'arn:aws:sns:*:*:*',
        'arn:aws:sns:eu-west-1:123456789012:*',
        'arn:aws:sns:eu-west-1:123456789012:t"},"Principal":"*',
        'arn:aws:sns:eu-west-1:123456789012:topic\n',
        'arn:aws:sns:eu-west-1:12345678901:topic',
        'arn:aws:sqs:eu-west-1:123456789012:topic',
        'arn:aws:sns:eu-west-1:123456789012:topic/extra',
        'arn:evil:sns:eu-west-1:123456789012:topic',
        ' arn:aws:sns:eu-west-1:123456789012:topic',
        '',
    ],
)
def test_crafted_topic_arn_is_rejected(topic: str) -> None:
    with pytest.raises(ConfigurationError, match='SNS ARN'):
        queue_policy(queue_arn=QUEUE, topic_arn=topic)


@pytest.mark.parametrize(
    'queue',
    [
        'arn:aws:sqs:eu-west-1:123456789012:*',
        'arn:aws:sqs:eu-west-1:123456789012:q","Effect":"Allow',
        'arn:aws:sns:eu-west-1:123456789012:q',
        'arn:aws:sqs:eu-west-1:123456789012:q?x',
    ],
)
def test_crafted_queue_arn_is_rejected(queue: str) -> None:
    with pytest.raises(ConfigurationError, match='SQS ARN'):
        queue_policy(queue_arn=queue, topic_arn=TOPIC)


@pytest.mark.parametrize(
    'topic',
    [
        'arn:aws:sns:eu-west-1:999999999999:app-a2a-scale-events',
        'arn:aws:sns:us-east-1:123456789012:app-a2a-scale-events',
        'arn:aws-cn:sns:eu-west-1:123456789012:app-a2a-scale-events',
    ],
)
def test_topic_in_another_account_or_region_is_rejected(topic: str) -> None:
    with pytest.raises(ConfigurationError, match='share'):
        queue_policy(queue_arn=QUEUE, topic_arn=topic)


def test_parse_arn_fields() -> None:
    arn = parse_arn(TOPIC, service='sns')
    assert (arn.partition, arn.region, arn.account, arn.name) == (
        'aws',
        'eu-west-1',
        '123456789012',
        'app-a2a-scale-events',
    )
    assert str(arn) == TOPIC


def test_names_derive_from_namespace() -> None:
    names = ResourceNames('app')
    assert names.table == 'app-a2a-scale'
    assert names.topic == 'app-a2a-scale-events'
    assert names.queue('pod-1') == 'app-a2a-replica-pod-1'


def test_long_instance_id_gives_a_distinct_short_queue_name() -> None:
    names = ResourceNames('n' * 40)
    a = names.queue('i' * 63 + 'a')
    b = names.queue('i' * 63 + 'b')
    assert len(a) <= MAX_QUEUE_NAME
    assert len(b) <= MAX_QUEUE_NAME
    assert a != b
    assert a.startswith(names.queue_prefix)


@pytest.mark.parametrize('bad', ['', 'a/b', 'x' * 41, '-lead', 'a*'])
def test_bad_namespace_is_rejected(bad: str) -> None:
    with pytest.raises(ConfigurationError, match='namespace'):
        ResourceNames(bad)


@pytest.mark.parametrize('bad', ['', 'a b', 'a/b', 'i' * 65, 'x*'])
def test_bad_instance_id_is_rejected(bad: str) -> None:
    with pytest.raises(ConfigurationError, match='instance id'):
        ResourceNames('app').queue(bad)


def test_application_policy_is_least_privilege() -> None:
    policy = application_policy(
        ResourceNames('app'), region='eu-west-1', account='123456789012'
    )
    table = 'arn:aws:dynamodb:eu-west-1:123456789012:table/app-a2a-scale'
    by_sid = {s['Sid']: s for s in policy['Statement']}
    assert set(by_sid) == {
        'TasksEventsPushConfigsReplicas',
        'DoorbellTopic',
        'ReplicaQueues',
        'FindReplicaQueues',
    }
    assert by_sid['TasksEventsPushConfigsReplicas']['Resource'] == [
        table,
        f'{table}/index/*',
    ]
    assert by_sid['DoorbellTopic']['Resource'] == TOPIC
    assert by_sid['ReplicaQueues']['Resource'] == (
        'arn:aws:sqs:eu-west-1:123456789012:app-a2a-replica-*'
    )
    assert by_sid['FindReplicaQueues'] == {
        'Sid': 'FindReplicaQueues',
        'Effect': 'Allow',
        'Action': 'sqs:ListQueues',
        'Resource': '*',
    }
    # Exactly the calls the backend makes (TransactWriteItems is authorized
    # as PutItem, DeleteMessageBatch as DeleteMessage), and no wildcard.
    assert by_sid['TasksEventsPushConfigsReplicas']['Action'] == [
        'dynamodb:BatchGetItem',
        'dynamodb:BatchWriteItem',
        'dynamodb:DeleteItem',
        'dynamodb:DescribeTable',
        'dynamodb:GetItem',
        'dynamodb:PutItem',
        'dynamodb:Query',
        'dynamodb:UpdateItem',
    ]
    assert by_sid['DoorbellTopic']['Action'] == [
        'sns:GetTopicAttributes',
        'sns:ListSubscriptionsByTopic',
        'sns:Publish',
        'sns:Subscribe',
        'sns:Unsubscribe',
    ]
    assert by_sid['ReplicaQueues']['Action'] == [
        'sqs:CreateQueue',
        'sqs:DeleteMessage',
        'sqs:DeleteQueue',
        'sqs:GetQueueAttributes',
        'sqs:ListQueueTags',
        'sqs:ReceiveMessage',
        'sqs:SetQueueAttributes',
        'sqs:TagQueue',
    ]
    assert all(s['Effect'] == 'Allow' for s in policy['Statement'])
    assert policy['Version'] == '2012-10-17'


def test_application_policy_with_provisioning() -> None:
    text = application_policy_json(
        ResourceNames('app'),
        region='cn-north-1',
        account='123456789012',
        provision=True,
    )
    policy = json.loads(text)
    provision = policy['Statement'][-1]
    assert provision['Sid'] == 'Provision'
    assert provision['Action'] == [
        'dynamodb:CreateTable',
        'dynamodb:DescribeTimeToLive',
        'dynamodb:TagResource',
        'dynamodb:UpdateTable',
        'dynamodb:UpdateTimeToLive',
        'sns:CreateTopic',
        'sns:TagResource',
    ]
    assert provision['Resource'][0] == (
        'arn:aws-cn:dynamodb:cn-north-1:123456789012:table/app-a2a-scale'
    )
    assert provision['Resource'][1] == (
        'arn:aws-cn:sns:cn-north-1:123456789012:app-a2a-scale-events'
    )


@pytest.mark.parametrize(
    ('region', 'account'),
    [('eu-west-1', '*'), ('*', '123456789012'), ('eu-west-1', '1234')],
)
def test_application_policy_rejects_bad_account_or_region(
    region: str, account: str
) -> None:
    with pytest.raises(ConfigurationError):
        application_policy(ResourceNames('app'), region=region, account=account)
