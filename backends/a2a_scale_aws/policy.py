"""Policy documents: the queue policy and the application's IAM policy.

Both are built as dicts from validated ARNs and serialized with `json.dumps`;
no value is ever pasted into a JSON string by hand.
"""

from __future__ import annotations

import json
from typing import Any

from a2a_scale import ConfigurationError
from a2a_scale_aws.names import Arn, ResourceNames, parse_arn

POLICY_VERSION = '2012-10-17'

# TransactWriteItems needs no action of its own: it is authorized as the
# PutItem calls it holds.
DYNAMODB_RUNTIME_ACTIONS = (
    'dynamodb:BatchGetItem',
    'dynamodb:BatchWriteItem',
    'dynamodb:DeleteItem',
    'dynamodb:DescribeTable',
    'dynamodb:GetItem',
    'dynamodb:PutItem',
    'dynamodb:Query',
    'dynamodb:UpdateItem',
)
SNS_RUNTIME_ACTIONS = (
    'sns:GetTopicAttributes',
    'sns:ListSubscriptionsByTopic',
    'sns:Publish',
    'sns:Subscribe',
    'sns:Unsubscribe',
)
# DeleteMessageBatch is authorized as sqs:DeleteMessage; creating a tagged
# queue with a policy needs TagQueue and SetQueueAttributes.
SQS_RUNTIME_ACTIONS = (
    'sqs:CreateQueue',
    'sqs:DeleteMessage',
    'sqs:DeleteQueue',
    'sqs:GetQueueAttributes',
    'sqs:ListQueueTags',
    'sqs:ReceiveMessage',
    'sqs:SetQueueAttributes',
    'sqs:TagQueue',
)
# Tags given at creation need the TagResource actions too; UpdateTable adds
# the indexes a table made by an older version lacks.
PROVISION_ACTIONS = (
    'dynamodb:CreateTable',
    'dynamodb:DescribeTimeToLive',
    'dynamodb:TagResource',
    'dynamodb:UpdateTable',
    'dynamodb:UpdateTimeToLive',
    'sns:CreateTopic',
    'sns:TagResource',
)


def queue_policy(*, queue_arn: str, topic_arn: str) -> dict[str, Any]:
    """The policy of a replica queue: only our topic may send to it.

    It allows one action, ``sqs:SendMessage``, to one principal,
    ``sns.amazonaws.com``, on one queue, when the message comes from one
    topic (``aws:SourceArn``).

    Raises:
        ConfigurationError: If an ARN is malformed or crafted, or if the topic
            and queue are not in the same partition, region and account.
    """
    queue = parse_arn(queue_arn, service='sqs')
    topic = parse_arn(topic_arn, service='sns')
    if (queue.partition, queue.region, queue.account) != (
        topic.partition,
        topic.region,
        topic.account,
    ):
        raise ConfigurationError(
            f'Queue {queue_arn!r} and topic {topic_arn!r} must share the '
            'partition, region and account.'
        )
    return {
        'Version': POLICY_VERSION,
        'Id': f'{queue}/a2a-scale',
        'Statement': [
            {
                'Sid': 'AllowNamespaceTopicToSend',
                'Effect': 'Allow',
                'Principal': {'Service': 'sns.amazonaws.com'},
                'Action': 'sqs:SendMessage',
                'Resource': str(queue),
                'Condition': {'ArnEquals': {'aws:SourceArn': str(topic)}},
            }
        ],
    }


def queue_policy_json(*, queue_arn: str, topic_arn: str) -> str:
    """`queue_policy` serialized for ``SetQueueAttributes``."""
    return json.dumps(
        queue_policy(queue_arn=queue_arn, topic_arn=topic_arn), sort_keys=True
    )


def application_policy(
    names: ResourceNames,
    *,
    region: str,
    account: str,
    provision: bool = False,
) -> dict[str, Any]:
    """The least-privilege IAM policy the application's role needs.

    Args:
        names: The namespace's resource names.
        region: The AWS region.
        account: The 12-digit account id.
        provision: Also allow creating the table, its TTL and the topic.

    Raises:
        ConfigurationError: If `region` or `account` is malformed.
    """
    topic: Arn = names.topic_arn(region=region, account=account)
    partition = topic.partition
    queue_pattern = f'arn:{partition}:sqs:{region}:{account}:{names.queue_prefix}*'
    table = f'arn:{partition}:dynamodb:{region}:{account}:table/{names.table}'
    statements: list[dict[str, Any]] = [
        {
            'Sid': 'TasksEventsPushConfigsReplicas',
            'Effect': 'Allow',
            'Action': list(DYNAMODB_RUNTIME_ACTIONS),
            'Resource': [table, f'{table}/index/*'],
        },
        {
            'Sid': 'DoorbellTopic',
            'Effect': 'Allow',
            'Action': list(SNS_RUNTIME_ACTIONS),
            'Resource': str(topic),
        },
        {
            'Sid': 'ReplicaQueues',
            'Effect': 'Allow',
            'Action': list(SQS_RUNTIME_ACTIONS),
            'Resource': queue_pattern,
        },
        {
            'Sid': 'FindReplicaQueues',
            'Effect': 'Allow',
            'Action': 'sqs:ListQueues',
            'Resource': '*',
        },
    ]
    if provision:
        statements.append(
            {
                'Sid': 'Provision',
                'Effect': 'Allow',
                'Action': list(PROVISION_ACTIONS),
                'Resource': [table, str(topic)],
            }
        )
    return {'Version': POLICY_VERSION, 'Statement': statements}


def application_policy_json(
    names: ResourceNames, *, region: str, account: str, provision: bool = False
) -> str:
    """`application_policy`, pretty-printed."""
    return json.dumps(
        application_policy(names, region=region, account=account, provision=provision),
        indent=2,
    )
